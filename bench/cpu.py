#!/usr/bin/env python3
"""Envoy CPU time per request: a steadier measure than throughput on a busy
machine. Each scenario's Envoy (the same configurations as run.py) gets a
fixed-time load; the CPU time the Envoy process used (utime + stime from
/proc) divided by the requests answered is its cost per request. Rounds are
interleaved like run.py's; the ratio `empty ÷ scenario` of each round is the
throughput a CPU-bound Envoy would have relative to the empty wasm filter.

    python3 bench/cpu.py                                   # h1 + h2, empty and drop444 10 / 1,000
    python3 bench/cpu.py --scenarios empty,floor,drop444:1000,wasm:target/x.wasm:1000
    python3 bench/cpu.py --perf                            # also a perf profile per scenario (round 1)

`wasm:PATH:N` is another drop444 build (e.g. a throwaway variant) with the
N-rule set. `--perf` writes `perf record -e cpu-clock` files (software clock:
works without hardware counters) and prints the split by DSO: Envoy, the
wasm JIT code, the kernel.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rules  # noqa: E402
import run  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def filters(spec: str) -> list[dict]:
    """`wasm:PATH:N`: another drop444 build; anything else goes to run.py."""
    _, path, n = spec.split(":")
    return [run.wasm_filter("drop444", Path(path).resolve(), rules.drop444_config(rules.rule_set(int(n)))),
            {"name": "envoy.filters.http.router",
             "typed_config": run.typed("envoy.extensions.filters.http.router.v3.Router")}]


def measure(proto: str, spec: str, seconds: int, workdir: Path, perf: Path | None) -> tuple[float, float]:
    """(Envoy CPU µs per request, requests/s) for one scenario."""
    name, _, n = spec.partition(":")
    if name == "wasm":
        sc = run.Scenario(proto, "drop444", int(spec.rsplit(":", 1)[1]))
        config = {**run.envoy_config(filters(spec), run.DIRECT, [])}
    else:
        sc = run.Scenario(proto, name, int(n or 0))
        config = run.proxy_config(sc, None)
    env = run.Envoy(run.envoy_bin(), config, workdir, f"{proto}-{name}-{time.monotonic_ns()}")
    try:
        run.probe(sc, env.port)
        h = run.request_headers(sc)
        url = f"http://127.0.0.1:{env.port}{h[':path']}"
        if proto == "h1":
            cmd = ["wrk", "-t1", f"-c{run.H1_CONNECTIONS}", "-H", f"Host: {h[':authority']}",
                   "-H", f"User-Agent: {h['user-agent']}", f"-d{seconds}s", url]
        else:
            cmd = ["h2load", "-t1", f"-c{run.H2_CONNECTIONS}", f"-m{run.H2_STREAMS}",
                   "-H", f":authority: {h[':authority']}", "-H", f"user-agent: {h['user-agent']}",
                   f"-D{seconds}", url]
        cmd = ["taskset", "-c", run.LOAD_CPU] + cmd
        run.run_tool(cmd, sc, seconds)  # warm-up
        recorder = None
        if perf:
            recorder = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000",
                                         "-o", str(perf), "-p", str(env.proc.pid)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        cpu0, t0 = cpu_seconds(env.proc.pid), time.monotonic()
        out = run.run_tool(cmd, sc, seconds)
        cpu1, t1 = cpu_seconds(env.proc.pid), time.monotonic()
        if recorder:
            recorder.send_signal(2)
            recorder.wait(30)
        m = re.search(r"(\d+) requests in", out) or re.search(r"(\d+) succeeded", out)
        if not m or "Non-2xx" in out:
            raise run.Broken(f"{proto} {spec}: unexpected load output {out[-300:]!r}")
        requests = int(m.group(1))
        return (cpu1 - cpu0) / requests * 1e6, requests / (t1 - t0)
    finally:
        env.stop()


def by_dso(perf: Path) -> str:
    out = subprocess.run(["perf", "report", "-i", str(perf), "--sort", "dso", "--stdio"],
                         capture_output=True, text=True).stdout
    rows = [l.split() for l in out.splitlines() if l.strip() and not l.startswith("#")]
    return ", ".join(f"{r[1]} {r[0]}" for r in rows[:4] if len(r) >= 2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", default="empty,drop444:10,drop444:1000")
    ap.add_argument("--proto", default="h1,h2")
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--perf", action="store_true")
    args = ap.parse_args()
    specs = args.scenarios.split(",")
    if "empty" not in specs:
        specs.insert(0, "empty")
    workdir = Path(tempfile.mkdtemp(prefix="cpu-", dir=run.ROOT / "target/bench"))
    results: dict[tuple[str, str], list[float]] = {}
    perf_files: dict[tuple[str, str], Path] = {}
    try:
        run.build()
        for rnd in range(args.rounds):
            for proto in args.proto.split(","):
                for spec in specs:
                    perf = None
                    if args.perf and rnd == 0:
                        perf = workdir / f"{proto}-{re.sub(r'[^A-Za-z0-9]+', '_', spec)}.data"
                        perf_files[(proto, spec)] = perf
                    us, rps = measure(proto, spec, args.seconds, workdir, perf)
                    results.setdefault((proto, spec), []).append(us)
                    run.log(f"round {rnd + 1} {proto} {spec:28} {us:7.2f} µs CPU/request ({rps:,.0f}/s)")
    except run.Broken as e:
        run.log(f"BENCH BROKEN: {e}")
        return 1
    print("\n| proto | scenario | Envoy CPU µs / request, median [min–max] | empty ÷ scenario, median [min–max] |"
          + (" perf by DSO |" if args.perf else ""))
    print("|---|---|---|---|" + ("---|" if args.perf else ""))
    for (proto, spec), values in results.items():
        ratios = [e / v for e, v in zip(results[(proto, "empty")], values)]
        row = (f"| {proto} | {spec} | {statistics.median(values):.2f} [{min(values):.2f}–{max(values):.2f}] "
               f"| {statistics.median(ratios):.2f} [{min(ratios):.2f}–{max(ratios):.2f}] |")
        if args.perf:
            row += f" {by_dso(perf_files[(proto, spec)])} |"
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
