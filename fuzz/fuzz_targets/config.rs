//! Configuration parsing and compilation must never panic, whatever the
//! bytes. Half the inputs are raw bytes (JSON errors, odd encodings), half a
//! structured configuration so that validation and compilation are reached.
//! A configuration that compiles must then decide a few fixed requests
//! without breaking any verdict invariant.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use drop444::engine::{Engine, HeaderList};
use drop444_fuzz::{check_verdict, GenConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mode, rest) = data.split_first().unwrap_or((&0, &[]));
    let engine = if mode & 1 == 0 {
        Engine::from_json(rest)
    } else {
        let mut u = Unstructured::new(rest);
        let Ok(GenConfig(config)) = GenConfig::arbitrary(&mut u) else {
            return;
        };
        let text = serde_json::to_vec(&config).expect("serialise generated config");
        Engine::from_json(&text)
    };
    match engine {
        Ok(engine) => {
            let requests = [
                HeaderList::new(),
                HeaderList::new()
                    .with(":authority", "example.com")
                    .with(":path", "/a/../admin?id=1")
                    .with(":method", "GET")
                    .with("user-agent", "sqlmap/1.0")
                    .peer("10.0.0.1:1")
                    .protocol("HTTP/1.1"),
                HeaderList::new()
                    .with(":authority", "127.0.0.1")
                    .with("x-probe", b"a\xff\x00,evil")
                    .with("x-probe", "b"),
            ];
            for request in &requests {
                check_verdict(&engine, request);
            }
        }
        Err(err) => {
            // A rejection explains itself.
            assert!(!err.message().is_empty(), "empty error message");
            assert!(!err.to_string().is_empty());
        }
    }
});
