//! A hostile host: every proxy-wasm import drop444 uses, one at a time (and
//! all at once), answers a status the filter does not expect. The Rust SDK's
//! wrappers panic on such a status, and a panic aborts the VM for every later
//! request on the worker; drop444 makes its calls through its own imports
//! (`src/wasm/hostcall.rs`), so the module must never trap, and must fail as
//! docs/hosts.md says: a plugin whose configuration or identity cannot be
//! read is refused; otherwise a dropped request is never passed on, a passed
//! one passes.

use crate::harness::{Action, Call, HostOptions, Plugin, Request, Status};

/// Every `env` import of the module: drop444's own (`src/wasm/hostcall.rs`)
/// and those the SDK's dispatcher links.
fn imports() -> Vec<String> {
    let mut imports = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(crate::harness::wasm_bytes()) {
        if let wasmparser::Payload::ImportSection(section) = payload.unwrap() {
            for import in section.into_imports() {
                let import = import.unwrap();
                if import.module == "env" {
                    imports.push(import.name.to_string());
                }
            }
        }
    }
    imports
}

/// Statuses the SDK does not expect from most calls: a bad argument, an
/// internal failure, and a code that is no status at all.
const HOSTILE: [Status; 3] = [
    Status::BadArgument,
    Status::InternalFailure,
    Status::Unknown,
];

/// Imports without which the plugin cannot know its rules or which plugin it
/// is: refusing it (`proxy_on_configure` false) is failing closed.
const REFUSED_WITHOUT: [&str; 2] = ["proxy_get_buffer_bytes", "proxy_get_property"];

/// A drop rule, a tarpit rule and a rate limit (shared data on every request).
const HTTP_CONFIG: &str = r#"{"rules": [
    {"name": "probe", "header": "x-probe", "exact": "evil"},
    {"name": "slow", "header": "x-slow", "exact": "yes", "tarpit": "1s"},
    {"name": "rl", "rate_limit": {"key": ["host"], "rate": 1000, "per": "second", "burst": 1000}}
]}"#;

const L4_CONFIG: &str = r#"{"malformed": "close"}"#;

fn hostile(import: &str, status: Status) -> HostOptions {
    HostOptions {
        hostile: vec![(import.to_string(), status)],
        ..HostOptions::default()
    }
}

fn l4(mut options: HostOptions) -> HostOptions {
    options
        .properties
        .push(("plugin_root_id".into(), b"drop444-l4".to_vec()));
    options
}

/// The HTTP plugin's lifecycle on this host: configure, a passed request, a
/// dropped one, a tarpitted one, ticks. `Err` names the first failure.
fn http_lifecycle(options: HostOptions, refused: bool) -> Result<(), String> {
    let mut plugin = match Plugin::try_start(HTTP_CONFIG, options) {
        Ok(plugin) if !refused => plugin,
        Ok(_) => return Err("configured, but should have been refused".into()),
        Err(rejected) if refused && rejected.reason == "proxy_on_configure returned false" => {
            return Ok(())
        }
        Err(rejected) => return Err(format!("refused: {}", rejected.reason)),
    };
    let passed = plugin.request(&Request::get("example.com"));
    if passed.trap.is_some() || passed.action != Some(Action::Continue) {
        return Err(format!(
            "passed request: {:?} {:?}",
            passed.action, passed.trap
        ));
    }
    for header in ["x-probe", "x-slow"] {
        let value = if header == "x-probe" { "evil" } else { "yes" };
        let dropped = plugin.request(&Request::get("example.com").header(header, value));
        if dropped.trap.is_some() || dropped.action != Some(Action::Pause) {
            return Err(format!(
                "{header} request not held: {:?} {:?}",
                dropped.action, dropped.trap
            ));
        }
    }
    // Ticks: the tarpit's (its request is gone) and the counters' flush.
    for _ in 0..2 {
        plugin.try_tick().map_err(|e| format!("tick: {e}"))?;
    }
    Ok(())
}

/// The L4 plugin on this host: a malformed head is closed (or, if the host
/// refuses the close, held: `Pause`), never passed.
fn l4_lifecycle(options: HostOptions, refused: bool) -> Result<(), String> {
    let mut plugin = match Plugin::try_start(L4_CONFIG, l4(options)) {
        Ok(plugin) if !refused => plugin,
        Ok(_) => return Err("configured, but should have been refused".into()),
        Err(rejected) if refused && rejected.reason == "proxy_on_configure returned false" => {
            return Ok(())
        }
        Err(rejected) => return Err(format!("refused: {}", rejected.reason)),
    };
    let connection = plugin.connection(b"BLAH\r\n\r\n");
    if let Some(trap) = connection.trap {
        return Err(format!("connection trapped: {trap}"));
    }
    let data = connection
        .actions
        .iter()
        .find(|(export, _)| *export == "proxy_on_downstream_data");
    if data != Some(&("proxy_on_downstream_data", Some(1))) {
        return Err(format!("malformed head not held: {:?}", connection.actions));
    }
    plugin.try_tick().map_err(|e| format!("tick: {e}"))?;
    Ok(())
}

#[test]
fn the_imports_played_hostile_include_every_call_drop444_makes() {
    let imports = imports();
    for import in [
        "proxy_log",
        "proxy_get_buffer_bytes",
        "proxy_get_header_map_pairs",
        "proxy_get_property",
        "proxy_close_stream",
        "proxy_define_metric",
        "proxy_get_shared_data",
        "proxy_set_effective_context",
    ] {
        assert!(imports.iter().any(|i| i == import), "{import}: {imports:?}");
    }
}

#[test]
fn the_module_never_traps_whatever_status_a_host_call_returns() {
    let mut failures = Vec::new();
    for import in imports() {
        for status in HOSTILE {
            let refused = REFUSED_WITHOUT.contains(&import.as_str());
            if let Err(e) = http_lifecycle(hostile(&import, status), refused) {
                failures.push(format!("HTTP, {import} -> {status:?}: {e}"));
            }
            if let Err(e) = l4_lifecycle(hostile(&import, status), refused) {
                failures.push(format!("L4, {import} -> {status:?}: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn a_host_that_fails_every_call_gets_a_refused_plugin_not_a_crash() {
    let all = |status: Status| HostOptions {
        hostile: imports().into_iter().map(|i| (i, status)).collect(),
        ..HostOptions::default()
    };
    for status in HOSTILE {
        http_lifecycle(all(status), true).unwrap();
        l4_lifecycle(all(status), true).unwrap();
    }
}

/// What the filter does on each failure, beyond not trapping.
#[test]
fn failures_fail_as_documented() {
    // No header map: the drop is still found, through the per-header reads.
    let mut plugin = Plugin::start(
        HTTP_CONFIG,
        hostile("proxy_get_header_map_pairs", Status::InternalFailure),
    );
    let dropped = plugin.request(&Request::get("example.com").header("x-probe", "evil"));
    assert_eq!(dropped.action, Some(Action::Pause));
    assert_eq!(
        dropped.count("proxy_close_stream"),
        1,
        "{:#?}",
        dropped.calls
    );

    // No close: the fallback response, never the request passed on.
    let mut plugin = Plugin::start(HTTP_CONFIG, hostile("proxy_close_stream", Status::Unknown));
    let dropped = plugin.request(&Request::get("example.com").header("x-probe", "evil"));
    assert_eq!(dropped.action, Some(Action::Pause));
    assert_eq!(dropped.count("proxy_send_local_response"), 1);

    // Shared data refused: the rate limit lets the request through (fails
    // open, counted nowhere as over the limit), the other rules still apply.
    let mut plugin = Plugin::start(
        HTTP_CONFIG,
        hostile("proxy_get_shared_data", Status::BadArgument),
    );
    let passed = plugin.request(&Request::get("example.com"));
    assert_eq!(passed.action, Some(Action::Continue));
    assert_eq!(passed.count("proxy_set_shared_data"), 0);

    // The L4 plugin closes a malformed head with `proxy_close_stream(Downstream)`.
    let mut plugin = Plugin::start(L4_CONFIG, l4(HostOptions::default()));
    let connection = plugin.connection(b"BLAH\r\n\r\n");
    assert!(connection.trap.is_none(), "{connection:?}");
    assert!(
        connection
            .calls
            .iter()
            .any(|r| r.call == Call::CloseStream { stream: 2 }),
        "{connection:#?}"
    );
}
