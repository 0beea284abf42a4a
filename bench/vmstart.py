#!/usr/bin/env python3
"""VM start: how long Envoy takes from exec to serving with a wasm filter
loaded (`/ready` LIVE and the listener bound), and the CPU time it used by
then. Most of it is V8 compiling the module (`--no-liftoff`: TurboFan up
front) and drop444 compiling its rules, on the main thread and then on the
worker.

    python3 bench/vmstart.py                  # empty filter, drop444 with 0 and 10,000 rules
    python3 bench/vmstart.py --rounds 9

Rounds are interleaved (empty, drop444 0, drop444 10,000, empty, ...) so a
change in machine load hits every scenario alike; medians [min–max].
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu  # noqa: E402
import rules  # noqa: E402
import run  # noqa: E402

ROUTER = {"name": "envoy.filters.http.router",
          "typed_config": run.typed("envoy.extensions.filters.http.router.v3.Router")}


def scenarios() -> dict[str, list[dict]]:
    return {
        "empty wasm filter": [run.wasm_filter("empty", run.EMPTY_WASM, ""), ROUTER],
        "drop444, empty configuration (built-in host rules)":
            [run.wasm_filter("drop444", run.DROP444_WASM, ""), ROUTER],
        "drop444, 10,000 rules":
            [run.wasm_filter("drop444", run.DROP444_WASM, rules.drop444_config(rules.rule_set(10000))), ROUTER],
    }


def once(filters: list[dict], workdir: Path) -> tuple[float, float]:
    start = time.monotonic()
    env = run.Envoy(run.envoy_bin(), run.envoy_config(filters, run.DIRECT, []), workdir,
                    f"start-{time.monotonic_ns()}", timeout=120.0)
    try:
        return time.monotonic() - start, cpu.cpu_seconds(env.proc.pid)
    finally:
        env.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    run.build()
    (run.ROOT / "target/bench").mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="start-", dir=run.ROOT / "target/bench"))
    found: dict[str, list[tuple[float, float]]] = {name: [] for name in scenarios()}
    for r in range(args.rounds):
        for name, filters in scenarios().items():
            wall, used = once(filters, workdir)
            found[name].append((wall, used))
            print(f"round {r + 1} {name:<52} {wall:6.2f} s wall, {used:6.2f} s CPU", flush=True)

    def cell(xs: list[float]) -> str:
        return f"{statistics.median(xs):.2f} [{min(xs):.2f}–{max(xs):.2f}]"

    print(f"\n| filter | wall (s) | Envoy CPU (s) |\n|---|---|---|")
    for name, samples in found.items():
        print(f"| {name} | {cell([w for w, _ in samples])} | {cell([c for _, c in samples])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
