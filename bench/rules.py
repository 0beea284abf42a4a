#!/usr/bin/env python3
"""Equivalent rule sets for drop444, Envoy RBAC and an Envoy Lua filter.

One abstract rule set per size N (a realistic mix: a host allowlist, scanner
and bad-bot user-agent tokens, exploit-probe path prefixes and a CIDR list) is
rendered three ways:

- drop444: the JSON plugin configuration  -> ``drop444_config()``
- RBAC:    an Envoy RBAC filter config (DENY policy, answers 403)
- Lua:     an Envoy Lua script doing the same checks by hand (answers 403)

plus the request headers that match no rule ("allowed": the whole rule set is
scanned) and one that matches the very last rule ("dropped").

Only ``drop444_config()`` knows drop444's configuration language, so that is
the one function to change when the language grows (path matchers, CIDR,
presets). Until drop444 matches source addresses (``DROP444_HAS_CIDR``), the
CIDR list is left out of *all three* rule sets so they stay equivalent.

Stdlib only. ``python3 bench/rules.py N`` prints the three renderings' sizes
and the requests, for a look.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

# drop444's configuration language today (docs/configuration.md) has no
# source-address matcher. Flip when it does; drop444_config() must then emit it.
DROP444_HAS_CIDR = True

# Realistic seeds. Variants are made unique by suffixes to reach N.
SCANNER_UA = [
    "sqlmap", "nikto", "nmap scripting engine", "masscan", "zgrab", "nuclei",
    "wpscan", "dirbuster", "gobuster", "feroxbuster", "acunetix", "nessus",
    "openvas", "w3af", "havij", "jorgee", "zmeu", "morfeus", "censysinspect",
    "expanse", "l9explore", "internetmeasurement", "httpx", "fuzz faster u fool",
]
BAD_BOT_UA = [
    "mj12bot", "ahrefsbot", "semrushbot", "dotbot", "blexbot", "petalbot",
    "megaindex", "seekport", "dataforseobot", "serpstatbot", "barkrowler",
    "bytespider", "claudebot", "gptbot", "ccbot", "amazonbot", "imagesiftbot",
    "python-requests", "go-http-client", "libwww-perl", "scrapy", "httrack",
    "curl/", "wget/", "java/1.", "okhttp", "aiohttp", "node-fetch",
]
PROBE_PATHS = [
    "/wp-login.php", "/xmlrpc.php", "/wp-admin/", "/.env", "/.git/config",
    "/.aws/credentials", "/phpmyadmin/", "/pma/", "/cgi-bin/", "/boaform/",
    "/HNAP1", "/actuator/env", "/vendor/phpunit/", "/solr/admin/",
    "/console/", "/manager/html", "/owa/auth/", "/autodiscover/",
    "/server-status", "/config.json", "/.DS_Store", "/backup.sql",
    "/shell.php", "/setup.cgi", "/GponForm/", "/api/jsonws/invoke",
]
PROBE_DIRS = ["", "/blog", "/wordpress", "/wp", "/old", "/new", "/site", "/test", "/dev", "/cms"]
HOST_SEEDS = ["example.com", "www.example.com", "api.example.com", "static.example.com"]

# The "allowed" request: a browser on a listed host, a page path.
ALLOWED = {
    ":authority": "www.example.com",
    ":path": "/products/4711?ref=home",
    "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
                  "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
}


@dataclass
class RuleSet:
    """The abstract rule set: what all three renderings check."""
    n: int
    hosts: list[str] = field(default_factory=list)      # allowlist, exact
    ua: list[str] = field(default_factory=list)         # contains, case-insensitive (lower case)
    paths: list[str] = field(default_factory=list)      # :path prefix, case-sensitive
    cidrs: list[str] = field(default_factory=list)      # source address (IPv4)

    def count(self) -> int:
        return len(self.hosts) + len(self.ua) + len(self.paths) + len(self.cidrs)


def _variants(seeds: list[str], k: int, make) -> list[str]:
    """k unique strings: the seeds, then numbered variants of them."""
    out: list[str] = []
    seen: set[str] = set()
    i = 0
    while len(out) < k:
        seed = seeds[i % len(seeds)]
        value = seed if i < len(seeds) else make(seed, i // len(seeds))
        if value not in seen:
            seen.add(value)
            out.append(value)
        i += 1
    return out


def rule_set(n: int) -> RuleSet:
    """N rules: ~10 % hosts, ~55 % user-agent tokens, ~30 % paths, ~5 % CIDRs
    (CIDRs only when every rendering supports them; otherwise their share
    goes to user-agent tokens)."""
    if n < 4:
        raise ValueError("need at least 4 rules")
    n_hosts = max(1, n // 10)
    n_cidr = max(1, n // 20) if DROP444_HAS_CIDR else 0
    n_paths = max(1, n * 3 // 10)
    n_ua = n - n_hosts - n_cidr - n_paths
    rs = RuleSet(n=n)
    rs.hosts = _variants(HOST_SEEDS, n_hosts, lambda s, j: f"svc{j}.{s}")
    rs.ua = _variants(SCANNER_UA + BAD_BOT_UA, n_ua, lambda s, j: f"{s}/{j}.{j % 7}")
    path_seeds = [d + p for d in PROBE_DIRS for p in PROBE_PATHS]
    rs.paths = _variants(path_seeds, n_paths, lambda s, j: f"/x{j}{s}")
    rs.cidrs = [f"{10 + j // 65536}.{(j // 256) % 256}.{j % 256}.0/24" for j in range(n_cidr)]
    if ALLOWED[":authority"] not in rs.hosts:
        rs.hosts[-1] = ALLOWED[":authority"]
    assert rs.count() == n, (rs.count(), n)
    return rs


def requests(rs: RuleSet) -> dict[str, dict[str, str]]:
    """Request headers: `allowed` matches no rule; `dropped` matches only the
    last path rule, which every rendering checks last (full scan, then a match)."""
    allowed = dict(ALLOWED)
    dropped = dict(ALLOWED, **{":path": rs.paths[-1] + "?id=1"})
    assert not matches(rs, allowed), "the allowed request matches a rule"
    assert matches(rs, dropped) == ["path"], "the dropped request must match exactly one rule"
    return {"allowed": allowed, "dropped": dropped}


def matches(rs: RuleSet, req: dict[str, str]) -> list[str]:
    """Reference semantics, used to check the requests."""
    hits = []
    if req[":authority"].lower() not in rs.hosts:
        hits.append("host")
    ua = req["user-agent"].lower()
    hits += ["ua" for t in rs.ua if t in ua]
    hits += ["path" for p in rs.paths if req[":path"].startswith(p)]
    return hits


# ---------------------------------------------------------------- drop444


def drop444_config(rs: RuleSet, rate_limited: bool = False) -> str:
    """drop444's JSON plugin configuration (docs/configuration.md).

    THE place to change when the configuration language grows. One rule per
    user-agent token (`contains`, case-insensitive) and per probe path
    (`prefix` on the normalised path), and the CIDRs as one `client_ip` rule
    with an `in` list, as an operator would write them.
    """
    rules = []
    for i, token in enumerate(rs.ua):
        rules.append({"name": f"ua-{i}", "header": "user-agent", "contains": token,
                      "case_insensitive": True})
    for i, path in enumerate(rs.paths):
        rules.append({"name": f"path-{i}", "field": "path", "prefix": path})
    if rs.cidrs:
        rules.append({"name": "bad-nets", "field": "client_ip", "in": rs.cidrs})
    if rate_limited:
        # First, so every request reaches it; a budget no load generator
        # exhausts: the bucket is read and compare-and-swapped every time.
        rules.insert(0, {"name": "per-client", "rate_limit": {
            "key": ["client_ip"], "rate": 1_000_000_000, "burst": 1_000_000_000}})
    return json.dumps({"host": {"allow": rs.hosts}, "rules": rules}, separators=(",", ":"))


def drop444_floor_config() -> str:
    """drop444 reading the same three headers as the rule sets (`:authority`,
    `user-agent`, `:path`) with next to no matching work: the host-call floor,
    separating the cost of fetching headers from the cost of the rules. The
    allowed request passes it."""
    return json.dumps({"rules": [
        {"name": "no-ua", "header": "user-agent", "absent": True},
        {"name": "no-path", "header": ":path", "absent": True},
    ]}, separators=(",", ":"))


# ---------------------------------------------------------------- RBAC


def rbac_config(rs: RuleSet) -> dict:
    """typed_config of envoy.filters.http.rbac: one DENY policy whose
    principals are OR'ed: host not in the allowlist, any UA token, any path
    prefix, any source CIDR."""
    def sm(**kw):
        return kw
    principals = [{"not_id": {"or_ids": {"ids": [
        {"header": {"name": ":authority", "string_match": sm(exact=h, ignore_case=True)}}
        for h in rs.hosts]}}}]
    principals += [{"header": {"name": "user-agent", "string_match": sm(contains=t, ignore_case=True)}}
                   for t in rs.ua]
    principals += [{"url_path": {"path": sm(prefix=p)}} for p in rs.paths]
    for cidr in rs.cidrs:
        prefix, length = cidr.split("/")
        principals.append({"direct_remote_ip": {"address_prefix": prefix, "prefix_len": int(length)}})
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
        "rules": {"action": "DENY", "policies": {"drop": {
            "permissions": [{"any": True}], "principals": principals}}},
    }


# ---------------------------------------------------------------- Lua


def _lua_str(s: str) -> str:
    return json.dumps(s)  # a JSON string of printable ASCII is a valid Lua string


def lua_script(rs: RuleSet) -> str:
    """What a user writes by hand: a table lookup for the host, loops of
    string.find(..., 1, true) for the tokens and path prefixes."""
    hosts = ",\n".join(f"  [{_lua_str(h)}] = true" for h in rs.hosts)
    ua = ",\n".join(f"  {_lua_str(t)}" for t in rs.ua)
    paths = ",\n".join(f"  {_lua_str(p)}" for p in rs.paths)
    cidrs = ",\n".join(f"  {{{_cidr_lua(c)}}}" for c in rs.cidrs)
    return f"""-- generated by bench/rules.py: {rs.count()} rules
local hosts = {{
{hosts}
}}
local ua_tokens = {{
{ua}
}}
local path_prefixes = {{
{paths}
}}
local cidrs = {{
{cidrs}
}}
local find, lower, band = string.find, string.lower, bit.band

local function deny(h)
  h:respond({{[":status"] = "403"}}, "")
end

local function ipv4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)")
  if not a then return nil end
  return ((tonumber(a) * 256 + tonumber(b)) * 256 + tonumber(c)) * 256 + tonumber(d)
end

function envoy_on_request(h)
  local headers = h:headers()
  local host = headers:get(":authority")
  if host == nil or not hosts[lower(host):gsub(":%d+$", "")] then return deny(h) end
  local ua = headers:get("user-agent")
  if ua ~= nil then
    ua = lower(ua)
    for i = 1, #ua_tokens do
      if find(ua, ua_tokens[i], 1, true) then return deny(h) end
    end
  end
  local path = headers:get(":path") or ""
  for i = 1, #path_prefixes do
    if find(path, path_prefixes[i], 1, true) == 1 then return deny(h) end
  end
  if #cidrs > 0 then
    local ip = ipv4(h:streamInfo():downstreamDirectRemoteAddress())
    if ip then
      for i = 1, #cidrs do
        local c = cidrs[i]
        if band(ip, c[2]) == c[1] then return deny(h) end
      end
    end
  end
end
"""


def _cidr_lua(cidr: str) -> str:
    prefix, length = cidr.split("/")
    mask = (0xFFFFFFFF << (32 - int(length))) & 0xFFFFFFFF
    a, b, c, d = (int(x) for x in prefix.split("."))
    net = (a << 24) | (b << 16) | (c << 8) | d
    # bit.band returns a signed 32-bit number in LuaJIT.
    signed = lambda v: v - (1 << 32) if v >= 1 << 31 else v  # noqa: E731
    return f"{signed(net & mask)}, {signed(mask)}"


def notes() -> list[str]:
    """What the renderings leave out, for the results file."""
    if DROP444_HAS_CIDR:
        return []
    return ["CIDR rules are left out of all three rule sets: drop444's configuration "
            "language has no source-address matcher yet (bench/rules.py DROP444_HAS_CIDR)."]


if __name__ == "__main__":
    for n in [int(a) for a in sys.argv[1:]] or [10]:
        rs = rule_set(n)
        print(f"N={n}: hosts={len(rs.hosts)} ua={len(rs.ua)} paths={len(rs.paths)} cidrs={len(rs.cidrs)}")
        print(f"  drop444 config {len(drop444_config(rs))} bytes, "
              f"rbac {len(json.dumps(rbac_config(rs)))} bytes, lua {len(lua_script(rs))} bytes")
        for kind, req in requests(rs).items():
            print(f"  {kind}: {req}")
    for note in notes():
        print("note:", note)
