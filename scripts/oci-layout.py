#!/usr/bin/env python3
"""Writes drop444 as an OCI image layout, without Docker or a registry.

    scripts/oci-layout.py VERSION WASM OUT_DIR

OUT_DIR becomes an OCI image layout (oci-layout, index.json, blobs/sha256/)
holding one image tagged VERSION in the Wasm OCI image spec's "compat" variant,
which Istio's WasmPlugin and Envoy Gateway's EnvoyExtensionPolicy pull:

  * one layer, media type application/vnd.oci.image.layer.v1.tar+gzip, a tar
    holding exactly one file, plugin.wasm (the module, mode 0444);
  * the manifest annotation module.wasm.image/variant=compat;
  * an OCI image config whose rootfs.diff_ids names the uncompressed tar.

The output is byte-for-byte reproducible (fixed tar and gzip timestamps,
sorted JSON), so the same module always gets the same digest. OUT_DIR.tar is
the same layout as one file. Push either with a registry client, e.g.
`skopeo copy oci:OUT_DIR:VERSION docker://REGISTRY/drop444:VERSION`.
"""

import gzip
import hashlib
import io
import json
import pathlib
import shutil
import sys
import tarfile

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def deterministic_tar(members):
    """A tar of (name, bytes) with no timestamps, owners or host details."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o444
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def canonical_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def main(version: str, wasm_path: str, out: str) -> None:
    wasm = pathlib.Path(wasm_path).read_bytes()
    if wasm[:4] != b"\0asm":
        sys.exit(f"{wasm_path} is not a wasm module")
    out_dir = pathlib.Path(out)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    blobs = out_dir / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict:
        d = digest(data)
        (blobs / d.split(":", 1)[1]).write_bytes(data)
        return {"digest": d, "size": len(data)}

    layer_tar = deterministic_tar([("plugin.wasm", wasm)])
    layer = put(gzip.compress(layer_tar, compresslevel=9, mtime=0))
    config = put(
        canonical_json(
            {
                # The module runs on any platform; registries and clients
                # expect these fields, Istio and Envoy Gateway ignore them.
                "architecture": "amd64",
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [digest(layer_tar)]},
            }
        )
    )
    manifest = put(
        canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, **config},
                "layers": [{"mediaType": OCI_LAYER, **layer}],
                "annotations": {
                    "module.wasm.image/variant": "compat",
                    "org.opencontainers.image.title": "drop444",
                    "org.opencontainers.image.version": version,
                },
            }
        )
    )
    (out_dir / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                **manifest,
                "annotations": {"org.opencontainers.image.ref.name": version},
            }
        ],
    }
    (out_dir / "index.json").write_bytes(canonical_json(index))

    # The same layout as one tar (skopeo's oci-archive:), also reproducible.
    files = sorted(p for p in out_dir.rglob("*") if p.is_file())
    archive = deterministic_tar(
        [(str(p.relative_to(out_dir)), p.read_bytes()) for p in files]
    )
    pathlib.Path(str(out_dir) + ".tar").write_bytes(archive)
    print(f"{out_dir}: manifest {manifest['digest']}, layer {layer['digest']} ({layer['size']} bytes)")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
