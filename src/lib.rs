//! drop444: nginx's `return 444` for Envoy.
//!
//! - [`engine`]: the pure rule engine (configuration → compiled rules →
//!   decision). No proxy-wasm code; built and tested natively.
//! - `wasm` (wasm32 only): the proxy-wasm host side (entry point, raw ABI,
//!   the HTTP and L4 adapters), the one place that talks to the host.
//!
//! See `docs/DESIGN.md` for why it is cut this way.

pub mod engine;
pub mod http1;
pub mod l4core;
pub mod limiter;

// proxy-wasm is only a dependency on wasm32, so the engine cannot use it by
// accident. The test build leaves the adapter out so that the engine's tests
// run on wasm32 under a plain WASI runtime, without proxy-wasm imports.
#[cfg(all(target_arch = "wasm32", not(test)))]
mod wasm;
