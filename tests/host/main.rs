//! A second proxy-wasm host for drop444: the built `drop444.wasm` run on
//! wasmtime by a small host written here (`harness.rs`), so the filter is
//! checked outside Envoy's V8 and every host call it makes is visible.
//!
//! - `decisions`: the shared table `tests/cases/decisions.json` (also run
//!   against real Envoy by `tests/e2e/decisions.rs`), with the exact host
//!   calls of each pass and drop.
//! - `behaviour`: host variations (no attributes, Envoy's first-line quirk,
//!   failing close-stream), lifecycle and memory.
//! - `cost`: the host calls and VM re-entries (allocations) of a passed and
//!   a dropped request, pinned.
//! - `abi`: the module's imports and exports against `docs/abi.md`.
//! - `hostile`: every import answering a status the filter does not
//!   expect (one at a time and all at once): the module never traps.
//! - `harness_self_test`: the host's own semantics (maps, CAS, metrics).
//!
//! Run with `make test-host` (it builds the module first).

// Test harness code: panicking with a message is how it reports a failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

#[path = "../cases/mod.rs"]
mod cases;

mod abi;
mod behaviour;
mod cost;
mod decisions;
mod harness;
mod harness_self_test;
mod hostile;
