//! "One request, one view" (issue 14): an allow verdict means the allow
//! condition holds on every reading of the path; a drop rule whose condition
//! holds on some reading drops the request. See `fuzz/src/views.rs`.
#![no_main]

use drop444_fuzz::{views, ViewsInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = ViewsInput::from_bytes(data) else {
        return;
    };
    if let Err(violation) = views::check(&input.rules, &input.target) {
        panic!("{violation}");
    }
});
