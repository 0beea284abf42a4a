//! The proxy-wasm adapter: the only code that talks to the host.
//!
//! Per request it hands the engine a [`HeaderSource`] that fetches single
//! headers from the host on demand (never the whole header map, which costs
//! 10-20 % throughput), and on a drop it resets the stream: Envoy then closes
//! an HTTP/1 connection without writing a byte, or sends RST_STREAM on HTTP/2.
//! It never sends a local response: that would put a real status on the wire.

use std::rc::Rc;

use log::{debug, error, info};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

use crate::engine::{Decision, Engine, RequestSource};

/// Filter-state key the rule name is stored under; Envoy exposes it as
/// `%FILTER_STATE(wasm.drop444:PLAIN)%` in access logs.
const DROP_PROPERTY: &str = "drop444";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Plugin { engine: Rc::new(Engine::builtin()) })
    });
}}

/// One per plugin and worker: owns the compiled configuration.
struct Plugin {
    engine: Rc<Engine>,
}

impl Context for Plugin {}

impl RootContext for Plugin {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        match Engine::from_json(&config) {
            Ok(engine) => {
                info!(
                    "configuration loaded; headers read per request: {:?}",
                    engine.header_names()
                );
                self.engine = Rc::new(engine);
                true
            }
            Err(err) => {
                // Returning false makes Envoy reject the plugin: fail closed.
                error!("invalid configuration, plugin not loaded: {err}");
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            engine: Rc::clone(&self.engine),
        }))
    }
}

/// One per HTTP request (stream).
struct Request {
    engine: Rc<Engine>,
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let verdict = self.engine.decide(&mut HostRequest);
        for rule in &verdict.logged {
            info!("log rule {rule} matched (request passed on)");
        }
        match verdict.decision {
            Decision::Pass | Decision::Allow { .. } => Action::Continue,
            Decision::DryRun { rule } => {
                info!("dry-run: rule {rule} would drop this request");
                Action::Continue
            }
            Decision::Drop { rule } => drop_request(rule),
        }
    }
}

fn drop_request(rule: &str) -> Action {
    // Filter state first: the access log line is written after the reset.
    if let Err(status) = hostcalls::set_property(vec![DROP_PROPERTY], Some(rule.as_bytes())) {
        debug!("could not record rule in filter state: {status:?}");
    }
    debug!("dropping request, rule {rule}");
    if let Err(status) = hostcalls::reset_http_request() {
        error!("host cannot reset the stream ({status:?}); request held, not passed");
    }
    Action::Pause
}

/// The request, read from the host one item at a time.
///
/// Measured on Envoy 1.40: `proxy_get_header_map_value` returns only the
/// *first* field line of a repeated non-inline header (`X-A: 1` + `X-A: 2`
/// gives `1`), which would let a client hide a value in a second line. The
/// attribute `request.headers.<name>` returns all lines joined with `,`, so it
/// is read first; the header map is asked only when the attribute has no
/// value, for hosts without that attribute (and then it is the only source).
struct HostRequest;

impl RequestSource for HostRequest {
    fn header(&mut self, name: &str) -> Option<Vec<u8>> {
        match hostcalls::get_property(vec!["request", "headers", name]) {
            Ok(Some(value)) => Some(value),
            _ => hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
                .ok()
                .flatten(),
        }
    }

    fn peer_address(&mut self) -> Option<Vec<u8>> {
        hostcalls::get_property(vec!["source", "address"])
            .ok()
            .flatten()
    }

    fn protocol(&mut self) -> Option<Vec<u8>> {
        hostcalls::get_property(vec!["request", "protocol"])
            .ok()
            .flatten()
    }
}
