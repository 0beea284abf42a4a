//! `drop444`: the rule engine on the command line.
//!
//! ```text
//! drop444 check CONFIG [--strict]      validate a configuration (like `nginx -t`),
//!                                      warn when a drop rule catches a real crawler
//! drop444 explain CONFIG [REQUEST]     decide one request and say why
//!                 [--list NAME=FILE]   with a local copy of a named list
//! drop444 presets                      list the built-in presets
//! ```
//!
//! CONFIG is a JSON file (the plugin configuration) or `-` for stdin.

use std::io::Read;
use std::process::ExitCode;

use drop444::engine::lists::{self, ListSet};
use drop444::engine::request::{
    client_from_xff, normalize_path, normalize_path_as, parse_address, parse_query_as,
    split_target, PathReading, QueryReading,
};
use drop444::engine::{
    classify_host, presets, Action, Decision, Engine, HeaderList, HostForm, NoLimits,
};
use drop444::http1;
use std::sync::Arc;

const USAGE: &str = "usage:
  drop444 check CONFIG [--strict]   (--strict: a drop rule that catches a real search-engine crawler is an error)
  drop444 explain CONFIG [--method M] [--path TARGET] [--host HOST] [--header 'Name: value']...
                         [--client-ip IP[:PORT]] [--protocol HTTP/1.1] [--scheme http]
  drop444 explain CONFIG --raw < request.txt     (a raw HTTP/1.x request head on stdin)
  drop444 explain CONFIG --list NAME=FILE ...    (a local copy of a named list; others count as not loaded)
  drop444 presets

Envoy's HTTP connection manager path settings (default: off / KEEP_UNCHANGED, as in Envoy),
applied to --path and --raw before the filter sees the path:
  --normalize-path  --merge-slashes
  --escaped-slashes KEEP_UNCHANGED|REJECT_REQUEST|UNESCAPE_AND_FORWARD|UNESCAPE_AND_REDIRECT

CONFIG is the plugin configuration as a JSON file, or - for stdin.
--raw reads the request the way Envoy 1.40's HTTP/1 codec does (the path flags above, else defaults): repeated
Host lines joined, an absolute-form target's authority used, folded lines joined, and the
requests Envoy answers itself (400, 426, 431, ...) reported as such.
Exit status: 0 valid / request passes; 1 invalid configuration or usage; 2 request is dropped;
3 Envoy answers the raw request itself, the filter never runs.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("drop444: {message}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    match args.first().map(String::as_str) {
        Some("check") => check_strict(args.get(1..).unwrap_or_default()),
        Some("explain") => explain(args.get(1).ok_or(USAGE)?, args.get(2..).unwrap_or_default()),
        Some("presets") => {
            for p in presets::catalog() {
                println!(
                    "{} (version {}, {} entries)\n  {}\n  may catch: {}\n",
                    p.name, p.version, p.entries, p.description, p.may_catch
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(USAGE.to_string()),
    }
}

fn read_input(path: &str) -> Result<Vec<u8>, String> {
    if path == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("stdin: {e}"))?;
        remember_stdin(&buf);
        Ok(buf)
    } else {
        std::fs::read(path).map_err(|e| format!("{path}: {e}"))
    }
}

fn load(path: &str) -> Result<Engine, String> {
    let json = read_input(path)?;
    Engine::from_json(&json).map_err(|e| format!("{path}: {e}"))
}

fn check(path: &str) -> Result<ExitCode, String> {
    let engine = match load(path) {
        Ok(engine) => engine,
        Err(message) => {
            eprintln!("drop444: {message}");
            eprintln!("drop444: configuration {path} test failed");
            return Ok(ExitCode::from(1));
        }
    };
    let count = |a: Action| engine.rules().filter(|(_, action)| *action == a).count();
    println!(
        "drop444: configuration {path} is ok: {} rules ({} drop, {} allow, {} log), mode {:?}, reads {:?}",
        engine.rules().count(),
        count(Action::Drop),
        count(Action::Allow),
        count(Action::Log),
        engine.mode(),
        engine.header_names()
    );
    describe_lists(&engine);
    Ok(ExitCode::SUCCESS)
}

/// `check CONFIG [--strict]`: validation, then the crawler lint: a warning
/// (with `--strict`, an error) for each drop rule that drops a real
/// search-engine crawler's request.
fn check_strict(args: &[String]) -> Result<ExitCode, String> {
    let mut path = None;
    let mut strict = false;
    for arg in args {
        match arg.as_str() {
            "--strict" => strict = true,
            other if path.is_none() => path = Some(other),
            other => return Err(format!("unexpected argument {other}\n{USAGE}")),
        }
    }
    let path = path.ok_or(USAGE)?;
    let code = check(path)?;
    if code != ExitCode::SUCCESS {
        return Ok(code);
    }
    let json = read_input_cached(path)?;
    let engine = Engine::from_json(&json).map_err(|e| format!("{path}: {e}"))?;
    let caught = crawler_lint(&engine, &json);
    let mut rules: Vec<&str> = Vec::new();
    for (rule, _, _) in &caught {
        if !rules.contains(&rule.as_str()) {
            rules.push(rule);
        }
    }
    for rule in rules {
        let who: Vec<String> = caught
            .iter()
            .filter(|(r, _, _)| r == rule)
            .map(|(_, crawler, target)| format!("{crawler} (GET {target})"))
            .collect();
        eprintln!(
            "drop444: {}: rule `{rule}` drops real search-engine crawlers: {}. A 444 hides pages from search with no error to report: narrow the rule, or exempt verified crawlers (an allow rule with preset verified-crawlers-real)",
            if strict { "error" } else { "warning" },
            who.join(", ")
        );
    }
    if strict && !caught.is_empty() {
        eprintln!("drop444: configuration {path} test failed (--strict)");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

static STDIN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

fn remember_stdin(buf: &[u8]) {
    let _ = STDIN.set(buf.to_vec());
}

/// The configuration text, read once (stdin cannot be read twice).
fn read_input_cached(path: &str) -> Result<Vec<u8>, String> {
    if path == "-" {
        return STDIN.get().cloned().ok_or("stdin was not read".to_string());
    }
    read_input(path)
}

/// Published User-Agents and addresses of the major search-engine crawlers.
const CRAWLERS: [(&str, &str, &str); 8] = [
    ("Googlebot", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "66.249.66.1"),
    ("Googlebot Smartphone", "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.204 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "66.249.66.2"),
    ("Bingbot", "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/131.0.0.0 Safari/537.36", "157.55.39.1"),
    ("Applebot", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)", "17.241.208.1"),
    ("DuckDuckBot", "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)", "20.191.45.212"),
    ("YandexBot", "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)", "5.255.253.1"),
    ("Baiduspider", "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)", "180.76.15.1"),
    ("PetalBot", "Mozilla/5.0 (Linux; Android 7.0;) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; PetalBot;+https://webmaster.petalsearch.com/site/petalbot)", "114.119.128.1"),
];

/// Paths every crawler asks for.
const CRAWLER_PATHS: [&str; 4] = [
    "/",
    "/robots.txt",
    "/sitemap.xml",
    "/blog/some-article?page=2",
];

/// (rule, crawler, target) for each drop (or dry-run drop) of a crawler's
/// typical request; lists count as not loaded. The host is the first
/// `host.allow` entry (`*.x` read as `www.x`), or `example.com`.
fn crawler_lint(engine: &Engine, json: &[u8]) -> Vec<(String, &'static str, &'static str)> {
    let host = serde_json::from_slice::<serde_json::Value>(json)
        .ok()
        .and_then(|v| {
            v.pointer("/host/allow/0")
                .and_then(|h| h.as_str())
                .map(str::to_string)
        })
        .map(|h| match h.strip_prefix("*.") {
            Some(rest) => format!("www.{rest}"),
            None => h,
        })
        .unwrap_or_else(|| "example.com".into());
    let mut caught: Vec<(String, &str, &str)> = Vec::new();
    for (crawler, user_agent, ip) in CRAWLERS {
        for target in CRAWLER_PATHS {
            let mut request = HeaderList::new()
                .with(":method", "GET")
                .with(":scheme", "https")
                .with(":authority", &host)
                .with(":path", target)
                .with("user-agent", user_agent)
                .with(
                    "accept",
                    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                )
                .with("accept-encoding", "gzip, deflate, br")
                .protocol("HTTP/1.1")
                .peer(&format!("{ip}:40000"));
            let rule = match engine.decide(&mut request, &mut NoLimits).decision {
                Decision::Drop { rule } | Decision::DryRun { rule } => rule.to_string(),
                _ => continue,
            };
            if !caught.iter().any(|(r, c, _)| *r == rule && *c == crawler) {
                caught.push((rule, crawler, target));
            }
        }
    }
    caught
}

/// `check`: one line per named list (validated with the configuration).
fn describe_lists(engine: &Engine) {
    for (id, list) in engine.lists().iter().enumerate() {
        let rules: Vec<&str> = engine
            .rules_reading_list(u32::try_from(id).unwrap_or(u32::MAX))
            .collect();
        println!(
            "  list {}: {:?} from {} via cluster {}, refresh {} s, timeout {} ms, max {} bytes{}, on_missing {:?}; read by {}",
            list.name,
            list.format,
            list.url,
            list.cluster,
            list.refresh_ms / 1000,
            list.timeout_ms,
            list.max_bytes,
            if list.sha256.is_some() { ", sha256 pinned" } else { "" },
            list.on_missing,
            if rules.is_empty() { "no rule (unused)".to_string() } else { rules.join(", ") }
        );
    }
}

/// `explain --list NAME=FILE`: local copies of named lists, checked and
/// parsed exactly as the filter does with a fetched body.
fn load_lists(engine: &Engine, specs: &[String]) -> Result<ListSet, String> {
    let mut set = ListSet::new(engine.lists().len());
    for spec in specs {
        let (name, file) = spec
            .split_once('=')
            .ok_or(format!("--list wants NAME=FILE, got {spec:?}"))?;
        let id = engine
            .lists()
            .iter()
            .position(|d| d.name == name)
            .ok_or(format!(
                "--list {name}: the configuration declares no list `{name}`"
            ))?;
        let decl = engine.lists().get(id).ok_or("list id")?;
        let body = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
        let data = lists::load(decl, &body).map_err(|e| format!("--list {name}={file}: {e}"))?;
        println!("list {name}: {} entries from {file}", data.entries());
        set.set(
            u32::try_from(id).map_err(|e| e.to_string())?,
            Arc::new(data),
        );
    }
    for decl in engine.lists() {
        if !specs
            .iter()
            .any(|s| s.split_once('=').is_some_and(|(n, _)| n == decl.name))
        {
            println!(
                "list {}: not given (--list {}=FILE): treated as not loaded yet (on_missing {:?})",
                decl.name, decl.name, decl.on_missing
            );
        }
    }
    Ok(set)
}

/// The request to explain, as the engine will see it.
#[derive(Default)]
struct Request {
    method: String,
    target: Vec<u8>,
    scheme: String,
    protocol: String,
    host: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    peer: Option<String>,
}

fn explain(config: &str, args: &[String]) -> Result<ExitCode, String> {
    if config == "-" && args.iter().any(|a| a == "--raw") {
        return Err("--raw reads the request from stdin, so CONFIG cannot be - too".into());
    }
    let engine = load(config)?;
    let mut request = Request {
        method: "GET".into(),
        target: "/".into(),
        scheme: "http".into(),
        protocol: "HTTP/1.1".into(),
        ..Request::default()
    };
    let mut paths = http1::PathSettings::default();
    let mut raw = false;
    let mut list_files: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or(format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--method" => request.method = value()?,
            "--path" => request.target = value()?.into_bytes(),
            "--host" => request.host = Some(value()?.into_bytes()),
            "--scheme" => request.scheme = value()?,
            "--protocol" => request.protocol = value()?,
            "--client-ip" => request.peer = Some(value()?),
            "--list" => list_files.push(value()?),
            "--header" => {
                let line = value()?;
                let (name, v) = line
                    .split_once(':')
                    .ok_or(format!("--header wants 'Name: value', got {line:?}"))?;
                request.headers.push((
                    name.trim().to_ascii_lowercase(),
                    v.trim().as_bytes().to_vec(),
                ));
            }
            "--raw" => raw = true,
            "--normalize-path" => paths.normalize_path = true,
            "--merge-slashes" => paths.merge_slashes = true,
            "--escaped-slashes" => {
                let action = value()?;
                paths.escaped_slashes = http1::EscapedSlashes::from_envoy(&action).ok_or(format!(
                    "--escaped-slashes: {action:?} is not a path_with_escaped_slashes_action\n{USAGE}"
                ))?;
            }
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    let envoy_answers = if raw {
        parse_raw(&read_input("-")?, &mut request, paths)?
    } else if request.target.is_empty() {
        None
    } else {
        match http1::apply_path_settings(&request.target, &paths) {
            Ok(path) => {
                request.target = path;
                None
            }
            Err(reply) => Some(reply),
        }
    };
    if let Some(reply) = envoy_answers {
        println!(
            "ENVOY {}: Envoy answers {} itself ({}, response code details `{}`); the filter never runs",
            reply.status, reply.status, reply.why, reply.details
        );
        return Ok(ExitCode::from(3));
    }

    let lists = load_lists(&engine, &list_files)?;
    let build = |target: &[u8]| {
        let mut source = HeaderList::new()
            .with(":method", &request.method)
            .with(":scheme", &request.scheme)
            .protocol(&request.protocol);
        // CONNECT has no :path.
        if !target.is_empty() {
            source = source.with(":path", target);
        }
        if let Some(host) = &request.host {
            source = source.with(":authority", host);
        }
        for (name, value) in &request.headers {
            source = source.with(name, value);
        }
        if let Some(peer) = &request.peer {
            source = source.peer(peer);
        }
        source.lists(lists.clone())
    };
    let verdict = engine.decide(&mut build(&request.target), &mut NoLimits);

    println!("request as drop444 sees it:");
    println!("  method      {}", request.method);
    let (raw_path, query) = split_target(&request.target);
    println!(
        "  path        {} (normalised from {:?})",
        show(&normalize_path(raw_path)),
        show(&request.target)
    );
    if let Some(q) = query {
        println!("  query       {}", show(q));
    }
    // Every distinct reading the engine considers (docs/configuration.md):
    // drop and log conditions match on any, allow conditions on every one.
    let mut readings: Vec<(&str, Vec<u8>)> = vec![
        (PathReading::Decoded.name(), normalize_path(raw_path)),
        ("as Envoy forwards it", raw_path.to_vec()),
    ];
    for reading in PathReading::may_differ(raw_path) {
        readings.push((reading.name(), normalize_path_as(raw_path, reading)));
    }
    let mut seen: Vec<Vec<u8>> = Vec::new();
    println!(
        "  path readings (a drop rule matching any of them drops; an allow rule must match all):"
    );
    for (name, value) in readings {
        if seen.contains(&value) {
            continue;
        }
        // The decision on this reading alone, where it has no further
        // readings of its own (else it cannot be told apart).
        let alone = if PathReading::may_differ(&value).next().is_none()
            && normalize_path(&value) == value
        {
            let mut target = value.clone();
            if let Some(q) = query {
                target.push(b'?');
                target.extend_from_slice(q);
            }
            match engine.decide(&mut build(&target), &mut NoLimits).decision {
                Decision::Drop { rule } | Decision::DryRun { rule } => {
                    format!("drop rule `{rule}` matches")
                }
                Decision::Allow { rule } => format!("allow rule `{rule}` matches"),
                Decision::Pass => "no rule matches".into(),
            }
        } else {
            "(has readings of its own)".into()
        };
        println!("    {:<48} {}  -> {alone}", name, show(&value));
        seen.push(value);
    }
    if let Some(q) = query {
        for (name, reading) in [
            ("query, form-decoded (main)", QueryReading::Form),
            ("query, percent-decoded, + kept", QueryReading::Percent),
            ("query, raw", QueryReading::Raw),
        ] {
            let pairs = parse_query_as(q, reading);
            let shown: Vec<String> = pairs
                .iter()
                .map(|(n, v)| format!("{}={}", show(n), show(v)))
                .collect();
            println!("    {name:<48} {}", shown.join(" & "));
        }
    }
    if request.method.bytes().any(|b| b.is_ascii_lowercase()) {
        println!(
            "  method readings: {} and {} (method rules match either)",
            request.method,
            request.method.to_ascii_uppercase()
        );
    }
    let form = classify_host(request.host.as_deref());
    let kind = match &form {
        HostForm::Missing | HostForm::Empty => "missing".to_string(),
        HostForm::Invalid => "invalid".to_string(),
        HostForm::IpLiteral(ip) => format!(
            "IP literal{}",
            ip.map(|ip| format!(" {ip}")).unwrap_or_default()
        ),
        HostForm::Name(name) => format!("name {name}"),
    };
    println!(
        "  host        {:?} -> {kind}",
        request.host.as_deref().map_or("(none)".into(), show)
    );
    let peer = request
        .peer
        .as_deref()
        .and_then(|p| parse_address(p.as_bytes()));
    let xff = request
        .headers
        .iter()
        .filter(|(n, _)| n == "x-forwarded-for")
        .map(|(_, v)| show(v))
        .collect::<Vec<_>>()
        .join(",");
    let client = client_from_xff(
        (!xff.is_empty()).then_some(xff.as_bytes()),
        engine.xff_trusted_hops(),
        peer,
    );
    println!(
        "  client ip   {} (peer {}, {} trusted X-Forwarded-For hops)",
        client.map(|c| c.to_string()).unwrap_or("(unknown)".into()),
        peer.map(|c| c.to_string()).unwrap_or("(unknown)".into()),
        engine.xff_trusted_hops()
    );
    println!("  protocol    {} {}", request.scheme, request.protocol);
    for (name, value) in &request.headers {
        println!("  {name}: {}", show(value));
    }
    println!();

    let describe = |rule: &str| {
        engine
            .rule_source(rule)
            .map(|s| format!("\n  rule {rule}: {s}"))
            .unwrap_or_default()
    };
    let code = match verdict.decision {
        Decision::Pass => {
            println!("PASS: no rule matched");
            ExitCode::SUCCESS
        }
        Decision::Allow { rule } => {
            println!("PASS: allowed by rule `{rule}` (allow rules exempt a request from every drop rule){}", describe(rule));
            ExitCode::SUCCESS
        }
        Decision::DryRun { rule } => {
            println!(
                "PASS (dry-run): rule `{rule}` would drop it; mode is dry-run{}",
                describe(rule)
            );
            ExitCode::SUCCESS
        }
        Decision::Drop { rule } => {
            match verdict.rule.and_then(|r| engine.tarpit_of(r)) {
                Some(delay) => println!(
                    "DROP (tarpit {delay:?}): rule `{rule}` matched: the request is held {delay:?} without a byte, then closed without a response{}",
                    describe(rule)
                ),
                None => println!(
                    "DROP: rule `{rule}` matched: the connection is closed without a response{}",
                    describe(rule)
                ),
            }
            ExitCode::from(2)
        }
    };
    if let Some(list) = verdict.missing_list {
        println!(
            "NOTE: list `{}` has not loaded, and this request's fate depends on it: its on_missing ({:?}) decided",
            list.name, list.on_missing
        );
    }
    for rule in &verdict.logged {
        println!(
            "LOG: rule `{rule}` matched (action log: reported, request not affected){}",
            describe(rule)
        );
    }
    Ok(code)
}

/// Reads a raw HTTP/1.x request head as Envoy's HTTP/1 codec presents it to
/// the filters (`drop444::http1`). `Some` when Envoy answers it itself.
fn parse_raw(
    raw: &[u8],
    request: &mut Request,
    path: http1::PathSettings,
) -> Result<Option<http1::LocalReply>, String> {
    let limits = http1::Limits {
        path,
        ..http1::Limits::default()
    };
    // A head typed in a shell may lack the final empty line.
    let mut owned;
    let mut input = raw;
    if let http1::Outcome::Incomplete = http1::parse(raw, &limits) {
        owned = raw.to_vec();
        owned.extend_from_slice(if raw.ends_with(b"\n") {
            b"\r\n"
        } else {
            b"\r\n\r\n"
        });
        input = &owned;
    }
    match http1::parse(input, &limits) {
        http1::Outcome::Incomplete => Err("the raw request is not a complete HTTP/1 request head".into()),
        http1::Outcome::Http2 => Err("the raw request starts like the HTTP/2 preface: Envoy would speak HTTP/2; --raw models HTTP/1 only".into()),
        http1::Outcome::Local(reply) => Ok(Some(reply)),
        http1::Outcome::Request(parsed) => {
            request.method = parsed.method;
            request.target = parsed.path.unwrap_or_default();
            request.scheme = parsed.scheme.to_string();
            request.protocol = parsed.protocol.to_string();
            request.host = parsed.authority;
            request.headers = parsed.headers;
            Ok(None)
        }
    }
}

/// Bytes for display: printable ASCII as is, anything else as `\xNN`.
fn show(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_graphic() || b == b' ' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}
