//! `drop444 check` and `explain --list NAME=FILE` with named lists. Runs the
//! real binary.

// Test code: panicking with a message is how it reports a failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn drop444(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_drop444"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run drop444");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().expect("wait")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch(name: &str, body: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("drop444-cli-lists-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

const CONFIG: &str = r#"{"lists": {
    "googlebot": {"url": "https://developers.google.com/static/search/apis/ipranges/googlebot.json", "cluster": "google", "format": "google-json", "refresh": "6h"},
    "blocked": {"url": "http://lists.internal/drop.txt", "cluster": "lists", "format": "cidr", "on_missing": "drop"}},
  "rules": [
    {"name": "blocked-ip", "field": "client_ip", "in_list": "blocked"},
    {"name": "fake-googlebot", "all": [
      {"header": "user-agent", "contains": "Googlebot"},
      {"not": {"field": "client_ip", "in_list": "googlebot"}}]}]}"#;

#[test]
fn check_validates_and_describes_lists() {
    let out = drop444(&["check", "-"], CONFIG.as_bytes());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("list blocked: Cidr from http://lists.internal/drop.txt via cluster lists"),
        "{stdout}"
    );
    assert!(
        stdout.contains("on_missing Drop; read by blocked-ip"),
        "{stdout}"
    );
    assert!(stdout.contains("list googlebot: GoogleJson"), "{stdout}");

    let bad = CONFIG.replace("\"refresh\": \"6h\"", "\"refresh\": \"6 hours\"");
    let out = drop444(&["check", "-"], bad.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("lists.googlebot.refresh: `6 hours` is not a duration"),
        "{}",
        text(&out.stderr)
    );
    let bad = CONFIG.replace("\"in_list\": \"blocked\"", "\"in_list\": \"blokced\"");
    let out = drop444(&["check", "-"], bad.as_bytes());
    assert!(
        text(&out.stderr).contains("rules[0].in_list: no list `blokced`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn explain_uses_local_copies_of_lists() {
    let config = scratch("config.json", CONFIG.as_bytes());
    let google = scratch(
        "googlebot.json",
        br#"{"prefixes":[{"ipv4Prefix":"66.249.64.0/19"}]}"#,
    );
    let blocked = scratch(
        "drop.txt",
        b"; Spamhaus DROP style\n203.0.113.0/24 ; SBL1\n",
    );
    let config = config.to_str().unwrap();
    let g = format!("googlebot={}", google.display());
    let b = format!("blocked={}", blocked.display());
    let ua = "User-Agent: Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    let run = |ip: &str, extra: &[&str]| {
        let mut args = vec![
            "explain",
            config,
            "--host",
            "example.com",
            "--client-ip",
            ip,
            "--header",
            ua,
        ];
        args.extend_from_slice(extra);
        drop444(&args, b"")
    };
    let out = run("66.249.66.1", &["--list", &g, "--list", &b]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("list googlebot: 1 entries"),
        "{}",
        text(&out.stdout)
    );
    let out = run("198.51.100.1", &["--list", &g, "--list", &b]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stdout).contains("DROP: rule `fake-googlebot`"),
        "{}",
        text(&out.stdout)
    );
    let out = run("203.0.113.7", &["--list", &g, "--list", &b]);
    assert!(
        text(&out.stdout).contains("DROP: rule `blocked-ip`"),
        "{}",
        text(&out.stdout)
    );
    // `blocked` not given: not loaded, on_missing drop decides.
    let out = run("66.249.66.1", &["--list", &g]);
    assert!(
        text(&out.stdout).contains("list blocked: not given"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains("DROP: rule `blocked-ip`"),
        "{}",
        text(&out.stdout)
    );
    // A bad copy is an error naming the line.
    let broken = scratch("broken.txt", b"203.0.113.0/24\nnope\n");
    let out = run(
        "66.249.66.1",
        &["--list", &format!("blocked={}", broken.display())],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("line 2"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_warns_when_a_drop_rule_catches_a_real_crawler_and_strict_fails() {
    let broad = r#"{"host": {"allow": ["*.shop.example"]}, "rules": [
        {"name": "no-bots", "header": "user-agent", "contains": "bot", "case_insensitive": true},
        {"name": "scanners", "preset": "scanners"}]}"#;
    let out = drop444(&["check", "-"], broad.as_bytes());
    assert!(out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "warning: rule `no-bots` drops real search-engine crawlers: Googlebot (GET /)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("Bingbot (GET /)"), "{stderr}");
    assert!(!stderr.contains("`scanners`"), "{stderr}");
    let out = drop444(&["check", "-", "--strict"], broad.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("error: rule `no-bots`"));

    // Every shipped preset (verified-crawlers with its lists not loaded) is
    // clean: no preset catches a search-engine crawler.
    let presets = r#"{"lists": {"googlebot": {"cluster": "g"}, "bingbot": {"cluster": "b"},
        "applebot": {"cluster": "a"}, "duckduckbot": {"cluster": "d"}},
      "rules": [{"preset": "scanners"}, {"preset": "exploit-paths"}, {"preset": "bad-bots"},
        {"preset": "ai-crawlers"}, {"preset": "verified-crawlers"}]}"#;
    let out = drop444(&["check", "-", "--strict"], presets.as_bytes());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
}
