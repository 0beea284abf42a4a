//! The `drop444` command line: `check` like `nginx -t`, `explain` for one
//! request. Runs the real binary.

// Test code: panicking with a message is how it reports a failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn drop444(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_drop444"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run drop444");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const CONFIG: &str = r#"{"host": {"allow": ["example.com"]}, "client_ip": {"xff_trusted_hops": 1},
  "rules": [
    {"name": "ok-monitor", "action": "allow", "header": "x-monitor", "exact": "yes"},
    {"name": "watch", "action": "log", "header": "user-agent", "prefix": "curl/"},
    {"name": "admin", "field": "path", "prefix": "/admin"},
    {"name": "net", "field": "client_ip", "in": ["203.0.113.0/24"]},
    {"name": "scanners", "preset": "scanners"}]}"#;

#[test]
fn check_accepts_a_good_config_and_names_the_field_of_a_bad_one() {
    let out = drop444(&["check", "-"], CONFIG.as_bytes());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("is ok: 9 rules (7 drop, 1 allow, 1 log)"),
        "{}",
        text(&out.stdout)
    );

    let bad = [
        (
            r#"{"rules": [{"header": "ua", "contians": "x"}]}"#,
            "rules[0].contians: unknown field `contians`",
        ),
        (
            r#"{"rules": [{"header": "ua", "regex": "a("}]}"#,
            "rules[0].regex: invalid regex",
        ),
        (
            r#"{"rules": [{"field": "client_ip", "in": ["300.0.0.0/8"]}]}"#,
            "rules[0].in[0]: `300.0.0.0/8` is not an IP address or CIDR",
        ),
        (
            r#"{"rules": [{"name": "x"}]}"#,
            "rules[0]: a condition needs exactly one of",
        ),
        (
            r#"{"rules": [{"preset": "nope"}]}"#,
            "rules[0].preset: unknown preset `nope`",
        ),
        ("{", "configuration: invalid JSON"),
    ];
    for (config, message) in bad {
        let out = drop444(&["check", "-"], config.as_bytes());
        assert_eq!(out.status.code(), Some(1), "{config}");
        let err = text(&out.stderr);
        assert!(err.contains(message), "{config}: {err}");
        assert!(err.contains("test failed"), "{err}");
    }
}

#[test]
fn explain_says_which_rule_drops_and_why() {
    let dir = std::env::temp_dir().join(format!("drop444-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("config.json");
    std::fs::write(&path, CONFIG).expect("write");
    let config = path.to_str().expect("utf-8 path");

    // (args, exit code, phrases in stdout)
    let cases: &[(&[&str], i32, &[&str])] = &[
        (
            &["--host", "example.com", "--path", "/x/../%61dmin"],
            2,
            &[
                "DROP: rule `admin`",
                "path        /admin (normalised from \"/x/../%61dmin\")",
                r#""prefix":"/admin""#,
            ],
        ),
        (&["--host", "example.com"], 0, &["PASS: no rule matched"]),
        (
            &["--host", "10.0.0.1"],
            2,
            &["DROP: rule `host-ip-literal`", "IP literal 10.0.0.1"],
        ),
        (
            &[
                "--host",
                "example.com",
                "--header",
                "X-Monitor: yes",
                "--path",
                "/admin",
            ],
            0,
            &["PASS: allowed by rule `ok-monitor`"],
        ),
        (
            &[
                "--host",
                "example.com",
                "--header",
                "User-Agent: curl/8 sqlmap",
            ],
            2,
            &["DROP: rule `scanners`", "LOG: rule `watch`"],
        ),
        (
            &[
                "--host",
                "example.com",
                "--client-ip",
                "10.0.0.1:5",
                "--header",
                "X-Forwarded-For: 1.1.1.1, 203.0.113.4",
            ],
            2,
            &["DROP: rule `net`", "client ip   203.0.113.4"],
        ),
        (
            &[
                "--host",
                "example.com",
                "--client-ip",
                "10.0.0.1:5",
                "--header",
                "X-Forwarded-For: 203.0.113.4, 1.1.1.1",
            ],
            0,
            &["PASS"],
        ),
    ];
    for (args, code, phrases) in cases {
        let mut all = vec!["explain", config];
        all.extend_from_slice(args);
        let out = drop444(&all, b"");
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(*code),
            "{args:?}\n{stdout}{}",
            text(&out.stderr)
        );
        for phrase in *phrases {
            assert!(
                stdout.contains(phrase),
                "{args:?}: missing {phrase:?} in\n{stdout}"
            );
        }
    }

    // A raw request on stdin.
    let raw = b"GET /index.php HTTP/1.1\r\nHost: EXAMPLE.com.\r\nUser-Agent: Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)\r\n\r\n";
    let out = drop444(&["explain", config, "--raw"], raw);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("DROP: rule `scanners`"),
        "{}",
        text(&out.stdout)
    );

    // Raw requests are read the way Envoy's HTTP/1 codec presents them to
    // the filter (tests/e2e/codec.rs checks this against Envoy itself).
    // (request, exit code, phrases in stdout)
    let raw_cases: &[(&[u8], i32, &[&str])] = &[
        // Two Host lines: Envoy joins them, an invalid host.
        (
            b"GET / HTTP/1.1\r\nHost: example.com\r\nHost: example.com\r\n\r\n",
            2,
            &["\"example.com,example.com\" -> invalid", "DROP: rule `host-invalid`"],
        ),
        // Absolute form: the target's authority, not the Host line.
        (
            b"GET http://evil.test/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
            2,
            &["\"evil.test\" -> name evil.test", "DROP: rule `host-not-allowed`"],
        ),
        (
            b"GET HTTP://example.com/admin HTTP/1.1\r\n\r\n",
            2,
            &["path        /admin", "DROP: rule `admin`"],
        ),
        // obs-fold joins the lines; bytes that are not UTF-8 are kept.
        (
            b"GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8\r\n  sqlmap\r\nX-Bin: \xff\xfe\r\n\r\n",
            2,
            &[
                "user-agent: curl/8  sqlmap",
                "x-bin: \\xff\\xfe",
                "DROP: rule `scanners`",
            ],
        ),
        // Envoy removes a header the Connection header nominates.
        (
            b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: x-monitor\r\nX-Monitor: yes\r\n\r\n",
            0,
            &["PASS: no rule matched"],
        ),
        // Envoy answers these itself: no verdict, exit 3.
        (
            b"GET / HTTP/1.1\r\nHost: Host: localhost\r\n\r\n",
            3,
            &["ENVOY 400: Envoy answers 400 itself", "`http.invalid_authority`", "the filter never runs"],
        ),
        (
            b"GET / HTTP/1.0\r\nHost: example.com\r\n\r\n",
            3,
            &["ENVOY 426", "`low_version`"],
        ),
        (
            b"POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: gzip\r\n\r\n",
            3,
            &["ENVOY 501", "`http1.invalid_transfer_encoding`"],
        ),
        // A head typed without its final empty line is completed.
        (b"GET /admin HTTP/1.1\nHost: example.com\n", 2, &["DROP: rule `admin`"]),
    ];
    for (raw, code, phrases) in raw_cases {
        let out = drop444(&["explain", config, "--raw"], raw);
        let stdout = text(&out.stdout);
        let shown = String::from_utf8_lossy(raw);
        assert_eq!(
            out.status.code(),
            Some(*code),
            "{shown:?}\n{stdout}{}",
            text(&out.stderr)
        );
        for phrase in *phrases {
            assert!(
                stdout.contains(phrase),
                "{shown:?}: missing {phrase:?} in\n{stdout}"
            );
        }
    }
    let out = drop444(
        &["explain", config, "--raw"],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("HTTP/2 preface"),
        "{}",
        text(&out.stderr)
    );

    let out = drop444(&["explain", config, "--bogus"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("unknown option --bogus"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn presets_are_listed_with_what_they_may_catch() {
    let out = drop444(&["presets"], b"");
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    for name in [
        "scanners (version",
        "exploit-paths (version",
        "bad-bots (version",
        "may catch:",
    ] {
        assert!(stdout.contains(name), "{stdout}");
    }
}

/// `explain` lists every distinct path reading and what each alone decides,
/// and applies the HCM path settings given as flags (as `--raw` does).
#[test]
fn explain_lists_the_readings_and_applies_path_settings() {
    let dir = std::env::temp_dir().join(format!("drop444-cli-readings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("c.json");
    std::fs::write(
        &config,
        r#"{"rules": [{"name": "admin", "field": "path", "prefix": "/admin"},
                      {"name": "h", "action": "allow", "field": "path", "exact": "/healthz"}]}"#,
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let out = drop444(
        &["explain", config, "--host", "a", "--path", "/x/..;/admin"],
        b"",
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("; parameters stripped")
            && stdout.contains("/admin  -> drop rule `admin` matches"),
        "{stdout}"
    );
    let out = drop444(
        &[
            "explain",
            config,
            "--host",
            "a",
            "--path",
            "/admin/..%2fhealthz",
        ],
        b"",
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("/healthz  -> allow rule `h` matches"),
        "{stdout}"
    );
    assert!(stdout.contains("as Envoy forwards it"), "{stdout}");
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    // The shipped HCM settings: Envoy answers %2F itself; normalize_path keeps
    // empty segments for `..` to remove.
    let flags = [
        "--normalize-path",
        "--merge-slashes",
        "--escaped-slashes",
        "REJECT_REQUEST",
    ];
    let raw = b"GET /admin/..%2fhealthz HTTP/1.1\r\nHost: a\r\n\r\n";
    let out = drop444(&[&["explain", config, "--raw"][..], &flags].concat(), raw);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("path_normalization_failed"));
    let raw = b"GET /x//..;/healthz HTTP/1.1\r\nHost: a\r\n\r\n";
    let out = drop444(&[&["explain", config, "--raw"][..], &flags].concat(), raw);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    // `..` removes the empty segment before it (Envoy 1.40 measured).
    assert!(
        text(&out.stdout).contains("path        /x/healthz "),
        "{}",
        text(&out.stdout)
    );
    let out = drop444(&["explain", config, "--escaped-slashes", "REJECT"], b"");
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn explain_shows_the_tarpit() {
    let config =
        r#"{"rules": [{"name": "slow", "header": "x-slow", "present": true, "tarpit": "10s"}]}"#;
    let out = drop444(
        &[
            "explain",
            "-",
            "--host",
            "localhost",
            "--header",
            "X-Slow: 1",
        ],
        config.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(2));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("DROP (tarpit 10s): rule `slow` matched: the request is held 10s"),
        "{stdout}"
    );
}
