//! The harness's own host semantics, checked without a module: wire formats,
//! shared-data compare-and-swap, metrics. drop444 does not use all of these
//! yet; these tests keep the host honest for when it does.

use crate::harness::{
    deserialize_map, serialize_map, Metrics, SharedData, Status, COUNTER, GAUGE, HISTOGRAM,
};

#[test]
fn header_map_serialisation_matches_the_abi_layout() {
    let pairs = vec![
        (":authority".to_string(), b"a".to_vec()),
        ("x".to_string(), Vec::new()),
    ];
    let bytes = serialize_map(&pairs);
    let mut want = Vec::new();
    want.extend_from_slice(&2u32.to_le_bytes());
    want.extend_from_slice(&10u32.to_le_bytes());
    want.extend_from_slice(&1u32.to_le_bytes());
    want.extend_from_slice(&1u32.to_le_bytes());
    want.extend_from_slice(&0u32.to_le_bytes());
    want.extend_from_slice(b":authority\0a\0x\0\0");
    assert_eq!(bytes, want);
    assert_eq!(deserialize_map(&bytes).unwrap(), pairs);
    assert!(deserialize_map(&bytes[..bytes.len() - 3]).is_err());
}

#[test]
fn shared_data_compare_and_swap() {
    let mut data = SharedData::default();
    assert_eq!(data.get("k"), None);
    assert_eq!(data.set("k", b"1", 0), Status::Ok);
    let (value, cas) = data.get("k").unwrap();
    assert_eq!(value, b"1");
    assert_ne!(cas, 0);
    // A stale CAS loses; the current one wins and changes the CAS.
    assert_eq!(
        data.set("k", b"2", cas.wrapping_add(7)),
        Status::CasMismatch
    );
    assert_eq!(data.set("k", b"2", cas), Status::Ok);
    let (value, cas2) = data.get("k").unwrap();
    assert_eq!(value, b"2");
    assert_ne!(cas2, cas);
    assert_eq!(data.set("k", b"3", cas), Status::CasMismatch);
    // CAS 0 writes unconditionally.
    assert_eq!(data.set("k", b"4", 0), Status::Ok);
    assert_eq!(data.get("k").unwrap().0, b"4");
}

#[test]
fn metrics_by_kind() {
    let mut m = Metrics::default();
    let c = m.define(COUNTER, "drops").unwrap();
    assert_eq!(m.define(COUNTER, "drops"), Ok(c), "same name, same id");
    let g = m.define(GAUGE, "level").unwrap();
    let h = m.define(HISTOGRAM, "sizes").unwrap();
    assert_eq!(m.define(9, "x"), Err(Status::BadArgument));
    assert_eq!(m.increment(c, 2), Status::Ok);
    assert_eq!(m.increment(c, -1), Status::BadArgument);
    assert_eq!(m.record(c, 5), Status::BadArgument);
    assert_eq!(m.get(c), Ok(2));
    assert_eq!(m.increment(g, -3), Status::Ok);
    assert_eq!(m.value("level"), Some(-3));
    assert_eq!(m.record(g, 7), Status::Ok);
    assert_eq!(m.get(g), Ok(7));
    assert_eq!(m.record(h, 5), Status::Ok);
    assert_eq!(m.increment(h, 1), Status::BadArgument);
    assert_eq!(m.get(h), Err(Status::BadArgument));
    assert_eq!(m.increment(99, 1), Status::NotFound);
    assert_eq!(m.get(99), Err(Status::NotFound));
}
