//! Named lists on the host: fetched through an Envoy cluster from the root
//! context, once per Envoy (not per worker), and shared with every worker
//! through proxy-wasm shared data.
//!
//! Per list, three shared-data keys (`<prefix>.list.<name>.<config hash>.*`;
//! the hash of URL, format and pin keeps a changed declaration from reading
//! an old copy):
//!
//! - `lease`: when the next fetch is due (8 bytes, ns). On its tick, each
//!   worker whose list is due tries to move it forward with a
//!   compare-and-swap; the one that wins makes the call, the others see the
//!   new time and wait. So one fetch per refresh, whatever the concurrency.
//! - `data`: the last good body, after a version (8 bytes).
//! - `meta`: that version and when a fetch last succeeded (16 bytes).
//!
//! Each worker reads `meta` on every tick (16 bytes) and, when the version
//! moved, reads `data` and parses its own immutable snapshot. A failed or
//! malformed fetch changes neither: the last good list stays, the failure is
//! counted (`list.<name>.fetch_failed`) and logged (at most every
//! [`FAIL_LOG_EVERY`]), and the next attempt comes sooner ([`RETRY`]).

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Duration;

use super::hostcall;
use log::{info, warn};

use super::abi::{self, Counter, Gauge};
use crate::engine::lists::{self, ListDecl, ListSet};
use crate::limiter::key_hash;

/// A failed fetch is retried after at most this long.
const RETRY: Duration = Duration::from_secs(10);
/// At most one failure log line per list this often.
const FAIL_LOG_EVERY: u64 = 60_000_000_000;
const NS_PER_MS: u64 = 1_000_000;

struct List {
    decl: ListDecl,
    key: String,
    /// Version of the snapshot this worker holds (0: none).
    version: Cell<u64>,
    /// The call this worker has in flight, and when it was made.
    in_flight: Cell<Option<(u32, u64)>>,
    last_fail_log: Cell<u64>,
    failed_since_log: Cell<u64>,
    fetch_ok: Counter,
    fetch_failed: Counter,
    entries: Gauge,
    version_gauge: Gauge,
    age: Gauge,
}

/// Every list of one plugin on one worker.
pub struct Lists {
    lists: Vec<List>,
    current: RefCell<ListSet>,
}

impl Lists {
    pub fn new(prefix: &str, decls: &[ListDecl]) -> Self {
        let lists: Vec<List> = decls
            .iter()
            .map(|decl| {
                let stat = |s: &str| format!("{prefix}.list.{}.{s}", decl.name);
                let identity = format!(
                    "{}|{}|{:?}|{:?}|{}",
                    decl.url, decl.cluster, decl.format, decl.sha256, decl.case_insensitive
                );
                List {
                    key: format!(
                        "{prefix}.list.{}.{:016x}",
                        decl.name,
                        key_hash(identity.as_bytes())
                    ),
                    decl: decl.clone(),
                    version: Cell::new(0),
                    in_flight: Cell::new(None),
                    last_fail_log: Cell::new(0),
                    failed_since_log: Cell::new(0),
                    fetch_ok: Counter::define(&stat("fetch_ok")),
                    fetch_failed: Counter::define(&stat("fetch_failed")),
                    entries: Gauge::define(&stat("entries")),
                    version_gauge: Gauge::define(&stat("version")),
                    age: Gauge::define(&stat("age_seconds")),
                }
            })
            .collect();
        // Create each lease (due at once) so that the first tick's
        // compare-and-swap has a version to compare: without it every worker
        // would win the first fetch.
        for list in &lists {
            let lease = format!("{}.lease", list.key);
            if let Ok((None, _)) = hostcall::get_shared_data(&lease) {
                let _ = hostcall::set_shared_data(&lease, Some(&0u64.to_le_bytes()), None);
            }
        }
        Lists {
            lists,
            current: RefCell::new(ListSet::new(decls.len())),
        }
    }

    /// List `id`'s snapshot on this worker.
    pub fn get(&self, id: u32) -> Option<Arc<lists::ListData>> {
        self.current.try_borrow().ok()?.get(id).cloned()
    }

    /// On every tick: pick up new versions, start due fetches.
    pub fn tick(&self) {
        if self.lists.is_empty() {
            return;
        }
        let now = abi::now_ns();
        for (id, list) in self.lists.iter().enumerate() {
            let id = u32::try_from(id).unwrap_or(u32::MAX);
            self.sync(id, list, now);
            self.maybe_fetch(list, now);
        }
    }

    /// Loads the shared copy when its version differs from this worker's.
    fn sync(&self, id: u32, list: &List, now: u64) {
        let Some((version, ok_at)) = read_meta(&list.key) else {
            return;
        };
        list.age.set(now.saturating_sub(ok_at) / 1_000_000_000);
        if version == list.version.get() {
            return;
        }
        let Ok((Some(data), _)) = hostcall::get_shared_data(&format!("{}.data", list.key)) else {
            return;
        };
        let (head, body) = data.split_at(data.len().min(8));
        if read_u64(head) != Some(version) {
            // Written between our two reads; the next tick sees both.
            return;
        }
        match lists::load(&list.decl, body) {
            Ok(parsed) => self.install(id, list, version, Arc::new(parsed)),
            Err(err) => {
                // Not retried until the next version (no log line per tick).
                list.version.set(version);
                warn!(
                    "list {}: shared copy version {version} unreadable here, last good copy kept: {err}",
                    list.decl.name
                );
            }
        }
    }

    fn install(&self, id: u32, list: &List, version: u64, data: Arc<lists::ListData>) {
        list.entries
            .set(u64::try_from(data.entries()).unwrap_or(u64::MAX));
        list.version_gauge.set(version);
        list.version.set(version);
        if let Ok(mut current) = self.current.try_borrow_mut() {
            current.set(id, data);
        }
    }

    fn maybe_fetch(&self, list: &List, now: u64) {
        if let Some((_, since)) = list.in_flight.get() {
            let limit = list.decl.timeout_ms.saturating_mul(2 * NS_PER_MS);
            if now.saturating_sub(since) < limit {
                return;
            }
            list.in_flight.set(None);
        }
        let lease = format!("{}.lease", list.key);
        let Ok((data, cas)) = hostcall::get_shared_data(&lease) else {
            return;
        };
        let Some(due) = data.as_deref().and_then(read_u64) else {
            let _ = hostcall::set_shared_data(&lease, Some(&0u64.to_le_bytes()), None);
            return;
        };
        if now < due {
            return;
        }
        let next = now.saturating_add(list.decl.refresh_ms.saturating_mul(NS_PER_MS));
        // Compare-and-swap: only the worker whose write lands fetches.
        if hostcall::set_shared_data(&lease, Some(&next.to_le_bytes()), cas).is_err() {
            return;
        }
        let headers = [
            (":method", "GET"),
            (":path", list.decl.path.as_str()),
            (":authority", list.decl.authority.as_str()),
            ("user-agent", "drop444-list-fetch"),
            ("accept", "*/*"),
        ];
        let timeout = Duration::from_millis(list.decl.timeout_ms);
        match abi::http_call(&list.decl.cluster, &headers, timeout) {
            Ok(token) => list.in_flight.set(Some((token, now))),
            Err(status) => self.failed(
                list,
                now,
                &format!("cannot call cluster `{}` ({status:?})", list.decl.cluster),
            ),
        }
    }

    /// An HTTP call's answer; false if the call is not one of these lists'.
    pub fn on_response(&self, token: u32, body_size: usize) -> bool {
        let Some((id, list)) = self
            .lists
            .iter()
            .enumerate()
            .find(|(_, l)| l.in_flight.get().is_some_and(|(t, _)| t == token))
        else {
            return false;
        };
        list.in_flight.set(None);
        let now = abi::now_ns();
        let status = abi::http_call_header(":status");
        let body = if status.as_deref() != Some(b"200") {
            Err(match status {
                Some(s) => format!("status {}", String::from_utf8_lossy(&s)),
                None => "no response (timeout, reset or no healthy host)".to_string(),
            })
        } else if u64::try_from(body_size).unwrap_or(u64::MAX) > list.decl.max_bytes {
            Err(format!(
                "body of {body_size} bytes exceeds max_bytes {}",
                list.decl.max_bytes
            ))
        } else {
            abi::http_call_body(body_size).ok_or_else(|| "host gave no body".to_string())
        };
        let id = u32::try_from(id).unwrap_or(u32::MAX);
        let result = body.and_then(|b| lists::load(&list.decl, &b).map(|d| (b, d)));
        match result {
            Ok((body, data)) => self.publish(id, list, now, &body, data),
            Err(err) => self.failed(list, now, &err),
        }
        true
    }

    /// A good body: shared with every worker (a new version only if it
    /// changed), installed here at once.
    fn publish(&self, id: u32, list: &List, now: u64, body: &[u8], data: lists::ListData) {
        list.fetch_ok.bump();
        let data_key = format!("{}.data", list.key);
        let (old_version, _) = read_meta(&list.key).unwrap_or((0, 0));
        let unchanged = matches!(
            hostcall::get_shared_data(&data_key),
            Ok((Some(old), _)) if old.get(8..) == Some(body)
        );
        let version = if unchanged {
            old_version
        } else {
            let version = old_version.saturating_add(1);
            let mut stored = Vec::with_capacity(body.len().saturating_add(8));
            stored.extend_from_slice(&version.to_le_bytes());
            stored.extend_from_slice(body);
            if let Err(status) = hostcall::set_shared_data(&data_key, Some(&stored), None) {
                self.failed(list, now, &format!("cannot share the list ({status:?})"));
                return;
            }
            info!(
                "list {}: version {version}, {} entries",
                list.decl.name,
                data.entries()
            );
            version
        };
        let mut meta = [0u8; 16];
        let (v, t) = meta.split_at_mut(8);
        v.copy_from_slice(&version.to_le_bytes());
        t.copy_from_slice(&now.to_le_bytes());
        let _ = hostcall::set_shared_data(&format!("{}.meta", list.key), Some(&meta), None);
        list.age.set(0);
        if version != list.version.get() {
            self.install(id, list, version, Arc::new(data));
        }
    }

    fn failed(&self, list: &List, now: u64, err: &str) {
        list.fetch_failed.bump();
        // Try again sooner than a full refresh: the last good copy (if any)
        // stays in use meanwhile.
        let retry = Duration::from_millis(list.decl.refresh_ms).min(RETRY);
        let next = now.saturating_add(u64::try_from(retry.as_nanos()).unwrap_or(u64::MAX));
        let _ = hostcall::set_shared_data(
            &format!("{}.lease", list.key),
            Some(&next.to_le_bytes()),
            None,
        );
        let suppressed = list.failed_since_log.get();
        if now.saturating_sub(list.last_fail_log.get()) >= FAIL_LOG_EVERY {
            list.last_fail_log.set(now);
            list.failed_since_log.set(0);
            let kept = if list.version.get() == 0 {
                "not loaded yet; its rules do what on_missing says"
            } else {
                "last good copy kept"
            };
            warn!(
                "list {}: fetch from {} failed: {err} ({kept}; {suppressed} more failures not logged)",
                list.decl.name, list.decl.url
            );
        } else {
            list.failed_since_log.set(suppressed.saturating_add(1));
        }
    }
}

fn read_u64(bytes: &[u8]) -> Option<u64> {
    let head: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(head))
}

/// (version, last successful fetch in ns) of the shared copy.
fn read_meta(key: &str) -> Option<(u64, u64)> {
    let (data, _) = hostcall::get_shared_data(&format!("{key}.meta")).ok()?;
    let data = data?;
    Some((read_u64(&data)?, read_u64(data.get(8..)?)?))
}
