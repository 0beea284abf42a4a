//! Refuse at accept: the L4 plugin applies the HTTP plugin's
//! connection-scope `client_ip` rules when a connection opens, and closes a
//! refused connection before a byte of it is read (no HTTP parsing, no HTTP
//! filter call).
//!
//! The rules are not configured twice: the L4 plugin names the HTTP plugin
//! (`"refuse_at_accept": "<HTTP plugin name>"` in its configuration), and
//! uses that plugin's compiled engine, found in a per-worker registry: both
//! plugins run in the same VM instance on each worker (same `vm_id` and
//! `vm_config`, as `scope: connection` already needs). Each HTTP plugin
//! registers itself under its name when it is configured, replacing an older
//! configuration of the same name. The engine decides
//! ([`Engine::decide_at_accept`](crate::engine::Engine::decide_at_accept)),
//! its counters count (`refused_at_accept` and the rule's own counter, in
//! the HTTP plugin's stats) and its log budget limits the log lines.
//!
//! Rules on a named list (`client_ip` `in_list`) read the HTTP plugin's
//! list snapshots on this worker (its root context fetches and refreshes
//! them), so the L4 plugin declares no list of its own.
//!
//! Only an enforced drop acts at accept. In `dry-run` mode, and for `log`
//! rules, the connection goes on and the HTTP filter reports each request
//! as usual (reporting at accept too would count the same client twice).

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use super::hostcall;
use log::{debug, warn};

use super::abi;
use super::http::Plugin;
use crate::engine::counters::Total;
use crate::engine::{Decision, LogLevel};

thread_local! {
    /// HTTP plugins of this worker's VM instance, by plugin name.
    static HTTP_PLUGINS: RefCell<Vec<(Vec<u8>, Weak<Plugin>)>> = const { RefCell::new(Vec::new()) };
}

/// Registers a configured HTTP plugin under its name (`plugin_name`).
pub fn register(plugin: &Rc<Plugin>) {
    let Some(name) = hostcall::get_property(vec!["plugin_name"]).ok().flatten() else {
        return;
    };
    HTTP_PLUGINS.with(|plugins| {
        let mut plugins = plugins.borrow_mut();
        plugins.retain(|(n, p)| *n != name && p.strong_count() > 0);
        plugins.push((name, Rc::downgrade(plugin)));
    });
}

fn lookup(name: &str) -> Option<Rc<Plugin>> {
    HTTP_PLUGINS.with(|plugins| {
        plugins
            .borrow()
            .iter()
            .rev()
            .find(|(n, _)| n.as_slice() == name.as_bytes())
            .and_then(|(_, p)| p.upgrade())
    })
}

/// Decides a connection that just opened, for the L4 plugin configured with
/// `refuse_at_accept: <name>`. True if it was refused: the connection is
/// being closed and the L4 context must pause.
pub fn refuse(name: &str, warned: &std::cell::Cell<bool>) -> bool {
    let Some(plugin) = lookup(name) else {
        if !warned.replace(true) {
            warn!("refuse_at_accept: no HTTP plugin named {name} in this VM: connections are not checked at accept (said once per worker)");
        }
        return false;
    };
    if plugin.accept_rules.is_empty() {
        return false;
    }
    let Some(peer) = hostcall::get_property(vec!["source", "address"])
        .ok()
        .flatten()
    else {
        debug!("refuse_at_accept: no source address");
        return false;
    };
    // The HTTP plugin's list snapshots on this worker (its root context
    // keeps them current): a `client_ip` `in_list` rule reads the same list
    // here as in the HTTP filter.
    let lists = |id| plugin.lists.get(id);
    let verdict = plugin
        .engine
        .decide_at_accept(&plugin.accept_rules, &peer, &lists);
    let (Decision::Drop { .. }, Some(rule)) = (verdict.decision, verdict.rule) else {
        return false;
    };
    plugin.stats.bump(Total::RefusedAtAccept);
    plugin.stats.bump_rule(rule);
    let settings = plugin.engine.log_settings();
    if settings.level != LogLevel::Off {
        if let Some(suppressed) = plugin.log_budget.take() {
            let line = serde_json::json!({
                "drop444": "refuse",
                "rule": rule.name,
                "client": String::from_utf8_lossy(&peer),
                "suppressed_before": suppressed,
            })
            .to_string();
            match settings.level {
                LogLevel::Trace => log::trace!("{line}"),
                LogLevel::Debug => debug!("{line}"),
                LogLevel::Info => log::info!("{line}"),
                LogLevel::Warn => warn!("{line}"),
                LogLevel::Error => log::error!("{line}"),
                LogLevel::Off => {}
            }
        } else {
            plugin.stats.bump(Total::Suppressed);
        }
    }
    let status = abi::close_downstream();
    if status != abi::OK {
        debug!("refuse_at_accept: close refused (status {status})");
    }
    true
}
