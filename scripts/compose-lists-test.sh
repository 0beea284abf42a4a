#!/usr/bin/env bash
# `make compose-lists-test`: envoy/docker-compose.yaml + envoy/docker-compose.lists.yaml
# (a list server as a service, drop444 fetching from it with two workers),
# checked with curl: listed address dropped, other served, fake Googlebot
# dropped, listed Googlebot served, one successful fetch per list counted.
# Always torn down. Environment: ENVOY_IMAGE (make sets the local image),
# READY_TIMEOUT seconds (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
export ENVOY_IMAGE=${ENVOY_IMAGE:?set ENVOY_IMAGE (make compose-lists-test does)}
export DROP444_WASM=$PWD/target/wasm32-wasip1/release/drop444.wasm
[ -f "$DROP444_WASM" ] || { echo "$DROP444_WASM is missing: run make wasm" >&2; exit 1; }
export DROP444_PORT="" DROP444_ADMIN_PORT="" DROP444_LISTS_PORT="" DROP444_LISTS_ADMIN_PORT=""
project=drop444-lists-$$
compose() { docker-compose --project-name "$project" --file envoy/docker-compose.yaml --file envoy/docker-compose.lists.yaml "$@"; }
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[ "$rc" -eq 0 ] || compose logs --no-color --tail=30 >&2 || true
	compose down -v --remove-orphans --timeout 5 || true
	exit "$rc"
}
trap cleanup EXIT INT TERM
compose up -d lists envoy-lists
listener=$(compose port envoy-lists 10000)
admin=$(compose port envoy-lists 9901)
deadline=$((SECONDS + ${READY_TIMEOUT:-60}))
# Ready when both lists have loaded (their version gauge is set).
until curl -fsS "http://$admin/stats?filter=list\\..*\\.version" 2>/dev/null | grep -q 'googlebot.version: [1-9]' \
	&& curl -fsS "http://$admin/stats?filter=list\\..*\\.version" | grep -q 'blocked.version: [1-9]'; do
	[ "$SECONDS" -lt "$deadline" ] || { echo "lists not loaded within ${READY_TIMEOUT:-60} s" >&2; exit 1; }
	sleep 0.5
done
fate() { # prints 200 or "dropped"
	local code
	code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: localhost' -H "X-Forwarded-For: $1" -A "$2" "http://$listener/") || true
	[ "$code" = 000 ] && echo dropped || echo "$code"
}
check() { # expected, xff, ua; every worker: several connections
	for _ in 1 2 3 4 5 6; do
		got=$(fate "$2" "$3")
		[ "$got" = "$1" ] || { echo "FAIL: $2 ($3): $got, expected $1" >&2; exit 1; }
	done
	echo "ok: $2 ($3) -> $1"
}
googlebot='Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)'
check dropped 203.0.113.5 curl/8
check 200 198.51.100.7 curl/8
check dropped 198.51.100.7 "$googlebot"
check 200 66.249.66.1 "$googlebot"
fetches=$(curl -fsS "http://$admin/stats?filter=list\\.blocked\\.fetch_ok" | sed -n 's/.*fetch_ok: //p')
echo "blocked.txt fetched $fetches time(s) by an Envoy with 2 workers (refresh 5m)"
[ "$fetches" = 1 ] || { echo "FAIL: expected one fetch" >&2; exit 1; }
echo "compose lists test passed"
