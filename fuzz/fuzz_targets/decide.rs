//! Deciding a request never panics and keeps its invariants: the verdict's
//! rule exists and has the right action, `log` rules are reported in order
//! and before the decider, every header is read at most once and only if
//! declared, and the same request always gets the same verdict.
#![no_main]

use arbitrary::Arbitrary;
use drop444::engine::Engine;
use drop444_fuzz::{check_verdict, GenConfig, GenRequest};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    config: GenConfig,
    requests: Vec<GenRequest>,
}

fuzz_target!(|input: Input| {
    let text = serde_json::to_vec(&input.config.0).expect("serialise generated config");
    let Ok(engine) = Engine::from_json(&text) else {
        return;
    };
    for request in input.requests.iter().take(8) {
        check_verdict(&engine, &request.0);
    }
});
