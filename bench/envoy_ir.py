#!/usr/bin/env python3
"""Envoy instructions per request, counted by callgrind: the whole cost of a
filter (Envoy, V8 and its JIT code, the wasm module, the kernel boundary
excluded) as a number that does not move with machine load.

Each scenario's Envoy (run.py's configurations) runs under
`valgrind --tool=callgrind` with instrumentation off while it starts and
warms up (V8 tiers the module up to optimised code), then counts the
instructions of a fixed number of requests sent one connection at a time
(h2load, keep-alive / one HTTP/2 connection). The report is instructions per
request and the ratio `empty ÷ scenario`: the throughput a CPU-bound Envoy
would have relative to the empty wasm filter.

    python3 bench/envoy_ir.py                       # h1 + h2: none, empty, drop444 10 / 1,000
    python3 bench/envoy_ir.py --scenarios empty,drop444:1000,wasm:target/x.wasm:1000 --proto h2
    python3 bench/envoy_ir.py --requests 4000 --warmup 4000

`wasm:PATH:N` is another drop444 build with the N-rule set (as in cpu.py).
`raw:FEATURES` is bench/empty-raw built with those features (`+`-separated:
create, delete, pairs, values, peer), e.g. `raw:`, `raw:create+delete+pairs`: the
floor of a filter with its own exports, one piece of cost at a time.
`headers:N` is drop444 with the N-rule set without its `client_ip` rule: no
`source.address` read, only the header map.
IR_STREAMS=16 sends that many concurrent streams on the one connection
(h2load `-m`; default 1), to check that concurrency changes nothing per request.
Slow: valgrind runs Envoy ~50x slower; each scenario takes tens of seconds.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu  # noqa: E402
import rules  # noqa: E402
import run  # noqa: E402


class CallgrindEnvoy(run.Envoy):
    """run.Envoy, started under callgrind with instrumentation off."""

    def __init__(self, binary: str, config: dict, workdir: Path, name: str):
        self.out = workdir / name / "callgrind.out"
        vg = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--smc-check=all-non-file",
              f"--callgrind-out-file={self.out}.%p"]
        super().__init__(binary, config, workdir, name, wrapper=tuple(vg), timeout=300.0)

    def control(self, *args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(self.proc.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    def count(self, send) -> int:
        """Instructions of everything Envoy did while `send()` ran."""
        self.control("--instr=on")
        self.control("--zero")
        send()
        for old in self.out.parent.glob(self.out.name + ".*"):
            old.unlink()
        self.control("--dump")
        self.control("--instr=off")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for f in self.out.parent.glob(self.out.name + ".*"):
                m = re.search(r"^(?:summary|totals): (\d+)", f.read_text(errors="replace"), re.M)
                if m:
                    return int(m.group(1))
            time.sleep(0.2)
        raise run.Broken("callgrind dump not found")


def h2load(sc: run.Scenario, port: int, n: int) -> None:
    h = run.request_headers(sc)
    cmd = ["h2load", "-n", str(n), "-c", "1", "-m", os.environ.get("IR_STREAMS", "1")]
    if sc.proto == "h1":
        cmd.append("--h1")
    for k, v in h.items():
        if k != ":path":
            cmd += ["-H", f"{k}: {v}"]
    cmd.append(f"http://127.0.0.1:{port}{h[':path']}")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded", out)
    if not m or int(m.group(3)) != n:
        raise run.Broken(f"h2load did not finish {n} requests: {out[-300:]}")


def measure(proto: str, spec: str, n: int, warmup: int, workdir: Path) -> float:
    name, _, size = spec.partition(":")
    if name == "raw":
        sc = run.Scenario(proto, "empty", 0)
        filters = [run.wasm_filter("raw", run.raw_filter(size), ""),
                   {"name": "envoy.filters.http.router",
                    "typed_config": run.typed("envoy.extensions.filters.http.router.v3.Router")}]
        config = run.envoy_config(filters, run.DIRECT, [])
    elif name == "headers":
        sc = run.Scenario(proto, "drop444", int(size))
        rs = rules.rule_set(int(size))
        rs.cidrs = []
        filters = [run.wasm_filter("drop444", run.DROP444_WASM, rules.drop444_config(rs)),
                   {"name": "envoy.filters.http.router",
                    "typed_config": run.typed("envoy.extensions.filters.http.router.v3.Router")}]
        config = run.envoy_config(filters, run.DIRECT, [])
    elif name == "wasm":
        sc = run.Scenario(proto, "drop444", int(spec.rsplit(":", 1)[1]))
        config = run.envoy_config(cpu.filters(spec), run.DIRECT, [])
    else:
        sc = run.Scenario(proto, name, int(size or 0))
        config = run.proxy_config(sc, None)
    env = CallgrindEnvoy(run.envoy_bin(), config, workdir, f"{proto}-{name}-{time.monotonic_ns()}")
    try:
        h2load(sc, env.port, warmup)
        base = env.count(lambda: None)
        total = env.count(lambda: h2load(sc, env.port, n))
        return (total - base) / n
    finally:
        env.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", default="none,empty,drop444:10,drop444:1000")
    ap.add_argument("--proto", default="h1,h2")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=3000)
    args = ap.parse_args()
    (run.ROOT / "target/bench").mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="ir-", dir=run.ROOT / "target/bench"))
    run.build()  # the empty wasm filter (and engine-bench), as run.py builds them
    rows = []
    for proto in args.proto.split(","):
        base = None
        for spec in args.scenarios.split(","):
            ir = measure(proto, spec, args.requests, args.warmup, workdir)
            if spec == "empty":
                base = ir
            rows.append((proto, spec, ir, base))
            print(f"{proto} {spec:<36} {ir:>12,.0f} instructions/request", flush=True)
    print("\n| proto | scenario | Envoy instructions / request | empty ÷ scenario |\n|---|---|---|---|")
    for proto, spec, ir, base in rows:
        ratio = f"{base / ir:.2f}" if base else "—"
        print(f"| {proto} | {spec} | {ir:,.0f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
