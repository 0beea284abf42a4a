//! The host side: the only code that talks to a proxy-wasm host (wasm32 only).
//!
//! - `mod.rs`: the module's entry points (every `proxy_on_*` export) and the
//!   roots: each plugin's root context becomes the HTTP plugin or the L4
//!   plugin once `proxy_on_configure` shows which;
//! - [`hostcall`]: every host call, through drop444's own declarations of
//!   the imports, which never panic whatever the host answers, and the
//!   logger;
//! - [`abi`]: status-code forms of those calls, clock, plugin-configuration read, counters and
//!   the log budget, shared by both plugins;
//! - [`http`]: the HTTP filter (the engine's adapter);
//! - [`l4`]: the network filter (`scope: connection`, `malformed: close`);
//! - [`tarpit`]: requests held by `tarpit` rules, closed on the root's tick;
//! - [`accept`]: refuse at accept, the L4 plugin applying the HTTP plugin's
//!   connection-scope `client_ip` rules when a connection opens.
//!
//! drop444 exports the proxy-wasm callbacks itself instead of linking the
//! Rust SDK's dispatcher (docs/abi.md, "Why not the SDK"). A host calls only
//! the callbacks a module exports, and every call into the VM costs about as
//! much as the rest of a passed request: the SDK exports all of them and
//! keeps a hash map of contexts, so a request cost six VM entries. Here a
//! passed request costs three (`proxy_on_context_create`,
//! `proxy_on_request_headers`, `proxy_on_delete`) plus the allocation of the
//! header map, and no per-request state is kept at all: a stream's plugin is
//! the root named by the `proxy_on_context_create` that immediately precedes
//! its headers.

mod abi;
mod accept;
mod hostcall;
mod http;
mod l4;
mod lists;
mod tarpit;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::engine::Engine;

/// What a stream callback returns (`proxy_on_request_headers`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Action {
    Continue = 0,
    Pause = 1,
}

/// One per plugin and worker. A root starts as the HTTP plugin with the
/// built-in rules and becomes what its configuration says in
/// `proxy_on_configure`: the L4 plugin if its `root_id` is
/// [`l4::L4_ROOT_ID`].
enum Root {
    Http(Rc<http::Plugin>),
    L4(Rc<l4::Plugin>),
}

thread_local! {
    /// The root contexts of this VM instance, by context id: one per plugin
    /// that shares the VM (usually one or two; a configuration update adds
    /// one until the old root is deleted).
    static ROOTS: RefCell<Vec<(u32, Root)>> = const { RefCell::new(Vec::new()) };
    /// The newest stream context and its root (`proxy_on_context_create`).
    /// A host creates a stream's context right before its first callback
    /// (Envoy: in `decodeHeaders` / `onNewConnection`), so this names the
    /// plugin of the stream being called.
    static NEWEST: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
}

/// The plugin of stream `context_id`, of the kind `pick` accepts: its
/// root's, or, for a stream created before another (never seen on Envoy),
/// the newest plugin of that kind.
fn stream_plugin<T>(context_id: u32, pick: impl Fn(&Root) -> Option<&Rc<T>>) -> Option<Rc<T>> {
    let (newest, root_id) = NEWEST.with(Cell::get);
    ROOTS.with(|roots| {
        let roots = roots.try_borrow().ok()?;
        let by_id = (newest == context_id)
            .then(|| roots.iter().find(|(id, _)| *id == root_id))
            .flatten();
        match by_id {
            // A root of another kind: not this stream's plugin.
            Some((_, root)) => pick(root),
            None => roots.iter().rev().find_map(|(_, root)| pick(root)),
        }
        .map(Rc::clone)
    })
}

fn http_of(root: &Root) -> Option<&Rc<http::Plugin>> {
    match root {
        Root::Http(plugin) => Some(plugin),
        Root::L4(_) => None,
    }
}

fn l4_of(root: &Root) -> Option<&Rc<l4::Plugin>> {
    match root {
        Root::L4(plugin) => Some(plugin),
        Root::Http(_) => None,
    }
}

/// The HTTP plugin of root context `root_id`.
fn http_root(root_id: u32) -> Option<Rc<http::Plugin>> {
    ROOTS.with(|roots| {
        let roots = roots.try_borrow().ok()?;
        let (_, root) = roots.iter().find(|(id, _)| *id == root_id)?;
        http_of(root).map(Rc::clone)
    })
}

/// Every HTTP plugin of this VM instance.
fn http_plugins() -> Vec<Rc<http::Plugin>> {
    ROOTS.with(|roots| {
        roots
            .try_borrow()
            .map(|roots| {
                roots
                    .iter()
                    .filter_map(|(_, root)| http_of(root).map(Rc::clone))
                    .collect()
            })
            .unwrap_or_default()
    })
}

fn set_root(root_id: u32, root: Root) {
    ROOTS.with(|roots| {
        if let Ok(mut roots) = roots.try_borrow_mut() {
            match roots.iter_mut().find(|(id, _)| *id == root_id) {
                Some(entry) => entry.1 = root,
                None => roots.push((root_id, root)),
            }
        }
    });
}

// ------------------------------------------------------------------ exports

#[cfg(target_os = "wasi")]
extern "C" {
    fn __wasm_call_ctors();
}

/// The module's start (a WASI reactor): static constructors, then the
/// logger. drop444's logger, not the SDK's (which unwraps `proxy_log`'s
/// status). The drop log's level is chosen per configuration (`log.level`);
/// the host drops lines below its own level.
#[no_mangle]
pub extern "C" fn _initialize() {
    // SAFETY: called once by the host before any other export, as WASI
    // reactors require.
    #[cfg(target_os = "wasi")]
    unsafe {
        __wasm_call_ctors();
    }
    hostcall::init_logging();
}

/// The proxy-wasm ABI version this module speaks.
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Memory for the bytes a host call returns: exactly `size` bytes, taken
/// back by `hostcall::take` as a `Vec` of that length and capacity.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut buffer: Vec<u8> = Vec::with_capacity(size);
    let data = buffer.as_mut_ptr();
    std::mem::forget(buffer);
    data
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, root_context_id: u32) {
    if root_context_id == 0 {
        let exists = ROOTS.with(|roots| {
            roots
                .try_borrow()
                .is_ok_and(|roots| roots.iter().any(|(id, _)| *id == context_id))
        });
        if !exists {
            let plugin = http::Plugin::new(Engine::builtin());
            set_root(context_id, Root::Http(Rc::new(plugin)));
        }
    } else {
        NEWEST.with(|newest| newest.set((context_id, root_context_id)));
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root_context_id: u32, _vm_configuration_size: usize) -> u32 {
    1
}

/// Builds the plugin from its configuration; false (which makes the host
/// refuse the plugin: fail closed) for an invalid one.
#[no_mangle]
pub extern "C" fn proxy_on_configure(root_context_id: u32, _configuration_size: usize) -> u32 {
    u32::from(configure(root_context_id))
}

fn configure(root_id: u32) -> bool {
    // A host that cannot say which plugin this is gets neither: refusing the
    // plugin fails closed.
    let plugin_root_id = match hostcall::get_property(vec!["plugin_root_id"]) {
        Ok(id) => id.unwrap_or_default(),
        Err(status) => {
            log::error!("plugin_root_id unreadable (status {status}): plugin not loaded");
            return false;
        }
    };
    let Some(config) = abi::plugin_configuration() else {
        return false;
    };
    let root = if plugin_root_id == l4::L4_ROOT_ID.as_bytes() {
        l4::Plugin::configure(&config).map(|p| Root::L4(Rc::new(p)))
    } else {
        http::Plugin::configure(&config).map(|p| Root::Http(Rc::new(p)))
    };
    let Some(root) = root else {
        return false;
    };
    if let Root::Http(plugin) = &root {
        accept::register(plugin);
        let status = abi::set_tick_period(http::TICK);
        if status != abi::OK {
            log::warn!("no tick (status {status}): counters reach the host only when the configuration changes");
        }
    }
    set_root(root_id, root);
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(root_context_id: u32) {
    if let Some(plugin) = http_root(root_context_id) {
        plugin.lists.tick();
        plugin.on_tick();
    }
}

/// Answers to the list fetches (`lists`) a root made.
#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    root_context_id: u32,
    token: u32,
    _headers: usize,
    body_size: usize,
    _trailers: usize,
) {
    if let Some(plugin) = http_root(root_context_id) {
        plugin.lists.on_response(token, body_size);
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context_id: u32, _headers: usize, _eos: u32) -> u32 {
    match stream_plugin(context_id, http_of) {
        Some(plugin) => http::on_request_headers(&plugin, context_id) as u32,
        None => Action::Continue as u32,
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(context_id: u32, body_size: usize, _eos: u32) -> u32 {
    held_plugin(context_id).map_or(Action::Continue, |plugin| {
        http::on_held_body(&plugin, context_id, body_size)
    }) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(context_id: u32, _trailers: usize) -> u32 {
    // A held request stays held (a Continue would resume it).
    match held_plugin(context_id) {
        Some(_) => Action::Pause as u32,
        None => Action::Continue as u32,
    }
}

/// The HTTP plugin holding request `context_id` in its tarpit, if any.
fn held_plugin(context_id: u32) -> Option<Rc<http::Plugin>> {
    if !tarpit::any_held() {
        return None;
    }
    http_plugins()
        .into_iter()
        .find(|plugin| plugin.tarpit.holds(context_id))
}

#[no_mangle]
pub extern "C" fn proxy_on_new_connection(context_id: u32) -> u32 {
    match stream_plugin(context_id, l4_of) {
        Some(plugin) => l4::on_new_connection(&plugin, context_id) as u32,
        None => Action::Continue as u32,
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_downstream_data(context_id: u32, size: usize, eos: u32) -> u32 {
    l4::on_downstream_data(context_id, size, eos != 0) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_upstream_data(context_id: u32, _size: usize, _eos: u32) -> u32 {
    l4::on_upstream_data(context_id) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_downstream_connection_close(context_id: u32, _peer: u32) {
    l4::forget(context_id);
}

/// A context's end: a root's plugin is dropped (handing its counts to the
/// host), a held request leaves its tarpit, a connection's state goes.
#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    let root = ROOTS.with(|roots| {
        let mut roots = roots.try_borrow_mut().ok()?;
        let at = roots.iter().position(|(id, _)| *id == context_id)?;
        Some(roots.remove(at))
    });
    if root.is_some() {
        // Dropped here, outside the borrow: the plugin's Drop calls the host.
        drop(root);
        return;
    }
    if let Some(plugin) = held_plugin(context_id) {
        plugin.tarpit.release(context_id);
    }
    l4::forget(context_id);
}
