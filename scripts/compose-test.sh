#!/usr/bin/env bash
# `make compose-test`: the end-to-end tests against Envoy in Docker Compose.
#
#   envoy/docker-compose.yaml            upstream + envoy (built-in rules)
#   tests/compose/docker-compose.test.yaml  + envoy-rules (tests/e2e/rules.json,
#                                         access log in a directory we read)
#
# All listener and admin ports are published on ephemeral 127.0.0.1 ports,
# found with `docker-compose port`. The same Rust tests as `make test-e2e` run
# in external mode (DROP444_E2E_TARGETS, see tests/e2e/envoy.rs). The stack is
# always torn down (`down -v`), whatever happens.
#
# Environment: ENVOY_IMAGE (default: the locally built drop444/envoy-local
# image; the Makefile builds it), READY_TIMEOUT seconds (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

export ENVOY_IMAGE=${ENVOY_IMAGE:?set ENVOY_IMAGE (make compose-test does)}
export DROP444_WASM=$repo/target/wasm32-wasip1/release/drop444.wasm
[ -f "$DROP444_WASM" ] || { echo "$DROP444_WASM is missing: run make wasm" >&2; exit 1; }
export DROP444_PORT="" DROP444_ADMIN_PORT=""   # ephemeral host ports
ready_timeout=${READY_TIMEOUT:-60}

project=drop444-e2e-$$
work=$(mktemp -d "${TMPDIR:-/tmp}/drop444-compose.XXXXXX")
export DROP444_RULES_CONFIG=$work/envoy-rules.yaml DROP444_LOG_DIR=$work/log
mkdir -m 0777 "$DROP444_LOG_DIR"   # the container's Envoy runs as uid 101

compose() {
	docker-compose --project-name "$project" \
		--file envoy/docker-compose.yaml --file tests/compose/docker-compose.test.yaml "$@"
}

# The native module's smoke check (at the end): the same stack with the
# override envoy/docker-compose.native.yaml, as its own project.
native_so=$repo/target/native/lib/libdrop444.so
native_up=0
compose_native() {
	DROP444_NATIVE=$native_so docker-compose --project-name "$project-native" \
		--file envoy/docker-compose.yaml --file envoy/docker-compose.native.yaml "$@"
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ "$rc" -ne 0 ]; then
		echo "== compose-test failed ($rc); container logs:" >&2
		compose logs --no-color --tail=25 >&2 || true
	fi
	echo "== docker-compose down -v"
	compose down -v --remove-orphans --timeout 5 || true
	if [ "$native_up" = 1 ]; then
		[ "$rc" -eq 0 ] || compose_native logs --no-color --tail=25 >&2 || true
		compose_native down -v --remove-orphans --timeout 5 || true
	fi
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The rules Envoy: the compose config with the test rules and a file access
# log. Each substitution must match exactly once (as in tests/e2e/envoy.rs).
python3 - "$repo" "$DROP444_RULES_CONFIG" <<'PY'
import json, pathlib, sys
repo, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
text = (repo / "envoy/compose/envoy.yaml").read_text()
rules = (repo / "tests/e2e/rules.json").read_text()
for old, new in [('value: ""', "value: " + json.dumps(rules)),
                 ("path: /dev/stdout", "path: /var/log/drop444/access.log")]:
    if text.count(old) != 1:
        sys.exit(f"envoy/compose/envoy.yaml: expected `{old}` exactly once")
    text = text.replace(old, new, 1)
out.write_text(text)
PY

echo "== docker-compose up ($ENVOY_IMAGE)"
start=$SECONDS
compose up --detach --no-build

port() { # service container-port -> 127.0.0.1:NNNNN
	local addr
	addr=$(${COMPOSE:-compose} port "$1" "$2")
	[ -n "$addr" ] || { echo "no published port for $1:$2" >&2; return 1; }
	echo "$addr"
}
default_listener=$(port envoy 10000)
default_admin=$(port envoy 9901)
rules_listener=$(port envoy-rules 10000)
rules_admin=$(port envoy-rules 9901)

wait_ready() { # admin addresses...
	local admin
	for admin in "$@"; do
		until curl -fsS --max-time 2 "http://$admin/ready" >/dev/null 2>&1; do
			if [ $((SECONDS - start)) -ge "$ready_timeout" ]; then
				echo "Envoy (admin $admin) not ready after ${ready_timeout}s" >&2
				exit 1
			fi
			sleep 0.5
		done
	done
}
wait_ready "$default_admin" "$rules_admin"
echo "== ready after $((SECONDS - start))s: envoy $default_listener, envoy-rules $rules_listener"

export DROP444_E2E_TARGETS="listener=$default_listener,admin=$default_admin;listener=$rules_listener,admin=$rules_admin,access_log=$DROP444_LOG_DIR/access.log"
echo "== end-to-end tests, external mode"
cargo test --features e2e --test e2e -- --show-output

echo "== native module smoke check (envoy/docker-compose.native.yaml)"
[ -f "$native_so" ] || { echo "$native_so is missing: run make native" >&2; exit 1; }
native_up=1
start=$SECONDS
compose_native up --detach --no-build
native_listener=$(COMPOSE=compose_native port envoy 10000)
native_admin=$(COMPOSE=compose_native port envoy 9901)
wait_ready "$native_admin"
passed=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H 'Host: localhost' "http://$native_listener/")
dropped=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' --max-time 5 "http://$native_listener/" || true)
counter=$(curl -fsS --max-time 2 "http://$native_admin/stats" | grep -x 'dynamicmodulescustom.drop444.requests_dropped: [0-9]*' || true)
echo "native: Host localhost -> $passed; IP-literal Host -> $dropped (code, bytes); $counter"
[ "$passed" = 200 ] || { echo "native: want 200 from upstream, got $passed" >&2; exit 1; }
[ "$dropped" = "000 0" ] || { echo "native: want a drop (no response), got $dropped" >&2; exit 1; }
[ "$counter" = "dynamicmodulescustom.drop444.requests_dropped: 1" ] || { echo "native: counter: $counter" >&2; exit 1; }
