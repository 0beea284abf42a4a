#!/usr/bin/env python3
"""Instructions per request (callgrind) of a `client_ip` rule on a named list
of 100,000 CIDRs (50,000 IPv4, 50,000 IPv6), next to the same request with no
rule and with an inline 10-CIDR `in`. (Ir at K requests - Ir at 0) / K, as
bench/run.py does, so loading and parsing the list are excluded.

    python3 bench/lists.py            # builds bench/engine-bench (release)
"""

import json
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = ROOT / "bench/engine-bench/target/release/engine-bench"
K = 2000


def ir(cmd):
    p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] + cmd,
                       capture_output=True, text=True, timeout=900)
    m = re.search(r"Collected : (\d+)", p.stderr)
    if p.returncode != 0 or not m:
        sys.exit(f"callgrind failed: {p.stderr[-300:]}")
    return int(m[1])


def main():
    subprocess.run(["cargo", "build", "--release", "--manifest-path", str(ROOT / "bench/engine-bench/Cargo.toml")], check=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="drop444-lists-bench-"))
    lines = []
    for i in range(50_000):
        lines.append(f"{11 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/25")
        lines.append(f"2001:db8:{i:x}::/48")
    (work / "big.txt").write_text("\n".join(lines) + "\n")
    decl = {"url": "http://lists/big.txt", "cluster": "lists", "format": "cidr", "max_bytes": 16777216}
    configs = {
        "no rule": {"rules": []},
        "inline in, 10 CIDRs": {"rules": [{"name": "ips", "field": "client_ip", "in": [f"10.{i}.0.0/16" for i in range(10)]}]},
        "in_list, 100,000 CIDRs": {"lists": {"big": decl}, "rules": [{"name": "big", "field": "client_ip", "in_list": "big"}]},
    }
    headers = {":authority": "example.com", ":path": "/products/1", "user-agent": "Mozilla/5.0"}
    rows = []
    for name, cfg in configs.items():
        path = work / "config.json"
        path.write_text(json.dumps(cfg))
        row = [name]
        for peer in ["198.51.100.77:40000", "11.0.200.5:40000"]:
            hdr = work / "headers.json"
            hdr.write_text(json.dumps(dict(headers, **{"<peer>": peer})))
            extra = [f"big={work / 'big.txt'}"] if "lists" in cfg else []
            counts = [ir([str(BIN), str(path), str(k), str(hdr)] + extra) for k in (0, K)]
            row.append((counts[1] - counts[0]) / K)
        rows.append(row)
    print("| rule | client not listed | client listed (11.0.200.5) |")
    print("|---|---|---|")
    for name, miss, hit in rows:
        print(f"| {name} | {miss:,.0f} | {hit:,.0f} |")


if __name__ == "__main__":
    main()
