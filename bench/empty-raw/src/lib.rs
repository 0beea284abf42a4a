//! An HTTP filter that exports only what a host needs and returns Continue.

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut buffer: Vec<u8> = Vec::with_capacity(size);
    let data = buffer.as_mut_ptr();
    std::mem::forget(buffer);
    data
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_: u32, _: usize) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(_: u32, _: usize) -> u32 {
    1
}

#[cfg(feature = "create")]
#[no_mangle]
pub extern "C" fn proxy_on_context_create(_: u32, _: u32) {}

#[cfg(feature = "delete")]
#[no_mangle]
pub extern "C" fn proxy_on_delete(_: u32) {}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map_type: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key: *const u8,
        key_len: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_len: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
}

/// Takes over a buffer the host allocated with `proxy_on_memory_allocate`.
unsafe fn free(data: *mut u8, size: usize) {
    if !data.is_null() {
        drop(Vec::from_raw_parts(data, size, size));
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_: u32, _: usize, _: u32) -> u32 {
    if cfg!(feature = "pairs") {
        let (mut data, mut size) = (std::ptr::null_mut(), 0);
        // SAFETY: out-pointers valid for the call; the buffer is ours on Ok.
        unsafe {
            if proxy_get_header_map_pairs(0, &mut data, &mut size) == 0 {
                free(data, size);
            }
        }
    }
    if cfg!(feature = "values") {
        for key in [":authority", ":path", "user-agent"] {
            let (mut data, mut size) = (std::ptr::null_mut(), 0);
            // SAFETY: as above.
            unsafe {
                if proxy_get_header_map_value(0, key.as_ptr(), key.len(), &mut data, &mut size) == 0 {
                    free(data, size);
                }
            }
        }
    }
    if cfg!(feature = "peer") {
        let path = b"source\0address";
        let (mut data, mut size) = (std::ptr::null_mut(), 0);
        // SAFETY: as above.
        unsafe {
            if proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) == 0 {
                free(data, size);
            }
        }
    }
    0
}
