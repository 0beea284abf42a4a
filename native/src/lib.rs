//! drop444 as a native Envoy HTTP filter (a "dynamic module"): the same
//! engine and JSON configuration as `drop444.wasm`, without the wasm VM.
//!
//! - [`abi`]: the hand-written declarations of the few ABI functions used;
//! - [`engine_api`]: the only file that names the engine's API;
//! - [`filter`]: configuration, counters, logging and the per-request adapter;
//! - this file: the event hooks Envoy calls. Every hook that runs code runs it
//!   inside `catch_unwind`, so a panic can never unwind into Envoy (and the
//!   release profile unwinds rather than aborts); the others only return a
//!   constant or their argument. A bad configuration is refused (the hook
//!   returns null and Envoy rejects the filter config), never a crash.
//!
//! The filter keeps no per-stream state: `on_http_filter_new` returns the
//! configuration pointer itself, so a request costs no allocation for the
//! filter object and `on_http_filter_destroy` has nothing to free.

mod abi;
mod engine_api;
mod filter;

use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use abi::{ConfigEnvoyPtr, EnvoyBuffer, FilterEnvoyPtr};
use filter::Config;

/// Set once a hook has panicked (logged once; each one is still contained).
static PANICKED: AtomicBool = AtomicBool::new(false);

/// Runs `body`; on a panic logs it (once) and returns `fallback`.
fn guarded<T>(hook: &str, fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(_) => {
            if !PANICKED.swap(true, Ordering::Relaxed) {
                // Logging may itself fail; never let that escape either.
                let _ = catch_unwind(|| {
                    filter::log(
                        abi::level::ERROR,
                        &format!("drop444: panic in {hook} contained; please report it"),
                    )
                });
            }
            fallback
        }
    }
}

/// The configuration behind a module pointer Envoy hands back.
///
/// # Safety
/// `ptr` must be null or a pointer returned by `on_http_filter_config_new`
/// that Envoy has not destroyed yet.
unsafe fn config<'a>(ptr: *const c_void) -> Option<&'a Config> {
    // SAFETY: per the contract, a live `Box<Config>` or null.
    unsafe { ptr.cast::<Config>().as_ref() }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    abi::ABI_VERSION.as_ptr()
}

/// Compiles the filter configuration. Null refuses it: Envoy then rejects the
/// listener / filter chain and logs why; the reason is logged here first,
/// naming the JSON path of the bad field.
///
/// # Safety
/// Called by Envoy with buffers valid for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy_ptr: ConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    guarded("on_http_filter_config_new", std::ptr::null(), || {
        // SAFETY: Envoy keeps both buffers valid during this call.
        let (name, json) = unsafe {
            (
                abi::bytes(name.ptr, name.length),
                abi::bytes(config.ptr, config.length),
            )
        };
        let name = String::from_utf8_lossy(name);
        match Config::new(config_envoy_ptr, json) {
            Ok(config) => {
                filter::log(
                    abi::level::INFO,
                    &format!(
                        "drop444 ({name}): configuration loaded: {}",
                        config.summary()
                    ),
                );
                Box::into_raw(Box::new(config)).cast_const().cast()
            }
            Err(err) => {
                filter::log(
                    abi::level::ERROR,
                    &format!("drop444 ({name}): invalid configuration, filter not loaded: {err}"),
                );
                std::ptr::null()
            }
        }
    })
}

/// # Safety
/// `config_ptr` comes from `on_http_filter_config_new`, destroyed once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    config_ptr: *const c_void,
) {
    guarded("on_http_filter_config_destroy", (), || {
        if !config_ptr.is_null() {
            // SAFETY: created by `Box::into_raw` in config_new; Envoy
            // destroys each configuration once, after its last filter.
            drop(unsafe { Box::from_raw(config_ptr.cast::<Config>().cast_mut()) });
        }
    })
}

/// The per-stream filter is the configuration itself (no per-stream state).
///
/// # Safety
/// `config_ptr` comes from `on_http_filter_config_new`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config_ptr: *const c_void,
    _filter_envoy_ptr: FilterEnvoyPtr,
) -> *const c_void {
    config_ptr
}

/// # Safety
/// Called by Envoy with the pointers it was given for this stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy_ptr: FilterEnvoyPtr,
    filter_module_ptr: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // A panic (a bug) fails closed: the stream is reset, never passed.
    let fallback = || {
        filter::reset_stream(filter_envoy_ptr);
        abi::STOP_ITERATION
    };
    let status = guarded("on_http_filter_request_headers", None, || {
        // SAFETY: the module pointer is a live configuration (see on_http_filter_new).
        let config = unsafe { config(filter_module_ptr) }?;
        Some(config.on_request_headers(filter_envoy_ptr))
    });
    match status {
        Some(status) => status,
        None => catch_unwind(fallback).unwrap_or(abi::STOP_ITERATION),
    }
}

/// The remaining hooks Envoy resolves: drop444 only acts on request headers.
macro_rules! pass_through {
    ($($hook:ident),* $(,)?) => {$(
        /// Not used by drop444: continue.
        #[no_mangle]
        pub extern "C" fn $hook(_: FilterEnvoyPtr, _: *const c_void, _: bool) -> u32 {
            abi::CONTINUE
        }
    )*};
}

pass_through!(
    envoy_dynamic_module_on_http_filter_request_body,
    envoy_dynamic_module_on_http_filter_response_headers,
    envoy_dynamic_module_on_http_filter_response_body,
);

/// Not used by drop444: continue.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _: FilterEnvoyPtr,
    _: *const c_void,
) -> u32 {
    abi::CONTINUE
}

/// Not used by drop444: continue.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _: FilterEnvoyPtr,
    _: *const c_void,
) -> u32 {
    abi::CONTINUE
}

/// Nothing to do: counters and logs are written when the request is decided.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _: FilterEnvoyPtr,
    _: *const c_void,
) {
}

/// Nothing to free: the filter pointer is the configuration's.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(_: *const c_void) {}

/// Hooks Envoy 1.40 requires a module to export (it refuses to load one
/// without them) that drop444 never triggers: it starts no callouts or
/// streams and schedules nothing. Each takes the filter pointers first and
/// returns nothing; the remaining arguments are unused, and in the C calling
/// convention a callee that ignores trailing arguments needs not declare them.
macro_rules! unused_hooks {
    ($($hook:ident),* $(,)?) => {$(
        /// Never triggered by drop444; nothing to do.
        #[no_mangle]
        pub extern "C" fn $hook(_: FilterEnvoyPtr, _: *const c_void) {}
    )*};
}

unused_hooks!(
    envoy_dynamic_module_on_http_filter_http_callout_done,
    envoy_dynamic_module_on_http_filter_http_stream_headers,
    envoy_dynamic_module_on_http_filter_http_stream_data,
    envoy_dynamic_module_on_http_filter_http_stream_trailers,
    envoy_dynamic_module_on_http_filter_http_stream_complete,
    envoy_dynamic_module_on_http_filter_http_stream_reset,
    envoy_dynamic_module_on_http_filter_scheduled,
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark,
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark,
);

/// The hooks without Envoy: the few callbacks they may reach are defined here
/// as recording stubs, so the panic and fail-closed paths run for real.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::undocumented_unsafe_blocks)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    static CALLS: Mutex<Vec<String>> = Mutex::new(Vec::new());

    fn calls() -> Vec<String> {
        std::mem::take(&mut *CALLS.lock().unwrap())
    }

    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_log(level: u32, message: abi::ModuleBuffer) {
        let text = unsafe { abi::bytes(message.ptr, message.length) };
        CALLS
            .lock()
            .unwrap()
            .push(format!("log {level} {}", String::from_utf8_lossy(text)));
    }

    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_reset_stream(
        _filter: FilterEnvoyPtr,
        reason: u32,
        details: abi::ModuleBuffer,
    ) {
        let text = unsafe { abi::bytes(details.ptr, details.length) };
        CALLS
            .lock()
            .unwrap()
            .push(format!("reset {reason} {}", String::from_utf8_lossy(text)));
    }

    /// The request headers the stub host holds (name, value).
    static HEADERS: Mutex<Vec<(&'static str, &'static str)>> = Mutex::new(Vec::new());

    fn record(call: String) {
        CALLS.lock().unwrap().push(call);
    }

    fn text(buffer: abi::ModuleBuffer) -> String {
        String::from_utf8_lossy(unsafe { abi::bytes(buffer.ptr, buffer.length) }).into_owned()
    }

    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_log_enabled(_level: u32) -> bool {
        true
    }

    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        _config: ConfigEnvoyPtr,
        _name: abi::ModuleBuffer,
        _labels: *const abi::ModuleBuffer,
        _labels_length: usize,
        id: *mut usize,
    ) -> u32 {
        unsafe { *id = 1 };
        abi::METRICS_SUCCESS
    }

    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_increment_counter(
        _filter: FilterEnvoyPtr,
        _id: usize,
        _labels: *const abi::ModuleBuffer,
        _labels_length: usize,
        _value: u64,
    ) -> u32 {
        abi::METRICS_SUCCESS
    }

    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_get_headers_size(
        _filter: FilterEnvoyPtr,
        _header_type: u32,
    ) -> usize {
        HEADERS.lock().unwrap().len()
    }

    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_get_headers(
        _filter: FilterEnvoyPtr,
        _header_type: u32,
        result: *mut abi::EnvoyHeader,
    ) -> bool {
        for (i, (name, value)) in HEADERS.lock().unwrap().iter().enumerate() {
            unsafe {
                *result.add(i) = abi::EnvoyHeader {
                    key_ptr: name.as_ptr().cast(),
                    key_length: name.len(),
                    value_ptr: value.as_ptr().cast(),
                    value_length: value.len(),
                }
            };
        }
        true
    }

    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        _filter: FilterEnvoyPtr,
        _id: u32,
        _result: *mut EnvoyBuffer,
    ) -> bool {
        false
    }

    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        _filter: FilterEnvoyPtr,
        key: abi::ModuleBuffer,
        value: abi::ModuleBuffer,
    ) -> bool {
        record(format!("state {}={}", text(key), text(value)));
        true
    }

    #[no_mangle]
    extern "C" fn envoy_dynamic_module_callback_http_filter_send_go_away_and_close(
        _filter: FilterEnvoyPtr,
        graceful: bool,
    ) {
        record(format!("close graceful={graceful}"));
    }

    /// One test, so the shared call record is not interleaved.
    #[test]
    fn panics_are_contained_and_a_failed_decision_fails_closed() {
        assert_eq!(
            unsafe { std::ffi::CStr::from_ptr(envoy_dynamic_module_on_program_init()) },
            c"v0.2.0"
        );

        // A panic inside a hook body: the fallback comes back, logged once.
        let got = guarded("test_hook", 7, || -> i32 { panic!("boom") });
        assert_eq!(got, 7);
        assert_eq!(guarded("test_hook", 8, || -> i32 { panic!("again") }), 8);
        assert_eq!(
            calls(),
            ["log 4 drop444: panic in test_hook contained; please report it"]
        );
        assert_eq!(guarded("test_hook", 0, || 9), 9);

        // No configuration behind the filter: the stream is reset, not passed.
        let status = unsafe {
            envoy_dynamic_module_on_http_filter_request_headers(
                std::ptr::null_mut(),
                std::ptr::null(),
                true,
            )
        };
        assert_eq!(status, abi::STOP_ITERATION);
        assert_eq!(calls(), ["reset 0 drop444_reset"]);

        // A bad configuration is refused (null) and the reason names the field.
        let json = br#"{"rules": [{"header": "a", "contians": "b"}]}"#;
        let name = b"drop444";
        let config = unsafe {
            envoy_dynamic_module_on_http_filter_config_new(
                std::ptr::null_mut(),
                EnvoyBuffer {
                    ptr: name.as_ptr().cast(),
                    length: name.len(),
                },
                EnvoyBuffer {
                    ptr: json.as_ptr().cast(),
                    length: json.len(),
                },
            )
        };
        assert!(config.is_null());
        let logged = calls();
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert!(
            logged[0].starts_with(
                "log 4 drop444 (drop444): invalid configuration, filter not loaded: rules[0].contians"
            ),
            "{logged:?}"
        );
        unsafe { envoy_dynamic_module_on_http_filter_config_destroy(config) };

        // A good one, then requests through the same hooks Envoy calls.
        let json = br#"{"log": {"level": "off"}, "rules": [{"name": "kill", "header": "x-kill", "present": true, "scope": "connection"}, {"name": "probe", "header": "x-probe", "exact": "evil"}]}"#;
        let config = unsafe {
            envoy_dynamic_module_on_http_filter_config_new(
                std::ptr::null_mut(),
                EnvoyBuffer {
                    ptr: name.as_ptr().cast(),
                    length: name.len(),
                },
                EnvoyBuffer {
                    ptr: json.as_ptr().cast(),
                    length: json.len(),
                },
            )
        };
        assert!(!config.is_null());
        calls();
        let filter =
            unsafe { envoy_dynamic_module_on_http_filter_new(config, std::ptr::null_mut()) };
        let request = |headers: Vec<(&'static str, &'static str)>| {
            *HEADERS.lock().unwrap() = headers;
            let status = unsafe {
                envoy_dynamic_module_on_http_filter_request_headers(
                    std::ptr::null_mut(),
                    filter,
                    true,
                )
            };
            (status, calls())
        };
        assert_eq!(
            request(vec![(":authority", "localhost")]),
            (abi::CONTINUE, vec![])
        );
        // A repeated header is seen whole.
        assert_eq!(
            request(vec![
                (":authority", "localhost"),
                ("x-probe", "fine"),
                ("x-probe", "evil")
            ]),
            (
                abi::STOP_ITERATION,
                vec![
                    "state drop444=probe".to_string(),
                    "state drop444_status=444".to_string(),
                    "reset 0 drop444_reset".to_string()
                ]
            )
        );
        assert_eq!(
            request(vec![(":authority", "localhost"), ("x-kill", "1")]),
            (
                abi::STOP_ITERATION,
                vec![
                    "state drop444=kill".to_string(),
                    "state drop444_status=444".to_string(),
                    "close graceful=false".to_string()
                ]
            )
        );
        envoy_dynamic_module_on_http_filter_destroy(filter);
        unsafe { envoy_dynamic_module_on_http_filter_config_destroy(config) };
    }
}
