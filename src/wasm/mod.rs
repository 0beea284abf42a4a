//! The host side: the only code that talks to a proxy-wasm host (wasm32 only).
//!
//! - `mod.rs`: the module's entry point and the root context, which becomes
//!   the HTTP plugin or the L4 plugin once `on_configure` shows which;
//! - [`hostcall`]: every host call, through drop444's own declarations of
//!   the imports (never the SDK's `hostcalls`, which panic on a status they
//!   do not expect), and the logger;
//! - [`abi`]: status-code forms of those calls, clock, plugin-configuration read, counters and
//!   the log budget, shared by both plugins;
//! - [`http`]: the HTTP filter (the engine's adapter);
//! - [`l4`]: the network filter (`scope: connection`, `malformed: close`);
//! - [`tarpit`]: requests held by `tarpit` rules, closed on the root's tick;
//! - [`accept`]: refuse at accept, the L4 plugin applying the HTTP plugin's
//!   connection-scope `client_ip` rules when a connection opens.

mod abi;
mod accept;
mod hostcall;
mod http;
mod l4;
mod lists;
mod tarpit;

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::ContextType;

use crate::engine::Engine;

proxy_wasm::main! {{
    // The drop log's level is chosen per configuration (`log.level`); the
    // host drops lines below its own level. Nothing is logged on the path of
    // a passed request. drop444's logger, not the SDK's (which unwraps
    // `proxy_log`'s status).
    hostcall::init_logging();
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::Http(Rc::new(http::Plugin::new(Engine::builtin())))) });
}}

/// One per plugin and worker. The proxy-wasm SDK has one root factory for
/// every plugin of the module, and the plugin's `root_id` is only known in
/// `on_configure`, so the root starts as the HTTP plugin with the built-in
/// rules and becomes the L4 plugin there if its `root_id` is
/// [`l4::L4_ROOT_ID`].
enum Root {
    Http(Rc<http::Plugin>),
    L4(Rc<l4::Plugin>),
}

impl Context for Root {
    /// Answers to the list fetches (`lists`) this root made.
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Root::Http(plugin) = self {
            plugin.lists.on_response(token_id, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        // A host that cannot say which plugin this is gets neither: as the
        // wrong kind, the SDK's dispatcher would panic on the first
        // connection or request. Refusing the plugin fails closed.
        let root_id = match hostcall::get_property(vec!["plugin_root_id"]) {
            Ok(root_id) => root_id.unwrap_or_default(),
            Err(status) => {
                log::error!("plugin_root_id unreadable (status {status}): plugin not loaded");
                return false;
            }
        };
        let Some(config) = abi::plugin_configuration() else {
            return false;
        };
        let root = if root_id == l4::L4_ROOT_ID.as_bytes() {
            l4::Plugin::configure(&config).map(|p| Root::L4(Rc::new(p)))
        } else {
            http::Plugin::configure(&config).map(|p| Root::Http(Rc::new(p)))
        };
        match root {
            Some(root) => {
                if let Root::Http(plugin) = &root {
                    accept::register(plugin);
                    let status = abi::set_tick_period(http::TICK);
                    if status != abi::OK {
                        log::warn!("no tick (status {status}): counters reach the host only when the configuration changes");
                    }
                }
                *self = root;
                true
            }
            // Returning false makes Envoy reject the plugin: fail closed.
            None => false,
        }
    }

    fn on_tick(&mut self) {
        if let Root::Http(plugin) = self {
            plugin.lists.tick();
            plugin.on_tick();
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(match self {
            Root::Http(_) => ContextType::HttpContext,
            Root::L4(_) => ContextType::StreamContext,
        })
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        match self {
            Root::Http(plugin) => Some(Box::new(http::Request {
                plugin: Rc::clone(plugin),
                context_id,
                held: false,
            })),
            Root::L4(_) => None,
        }
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        match self {
            Root::Http(_) => None,
            Root::L4(plugin) => Some(Box::new(l4::Plugin::connection(plugin))),
        }
    }
}
