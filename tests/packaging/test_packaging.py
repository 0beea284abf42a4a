"""Packaging checks: the release files, the OCI image layout and Docker image
of `make oci`, the Compose file, the Istio / Envoy Gateway examples, and the
path settings of every shipped Envoy configuration (docs/path-safety.md).

Run by `make test-packaging` (after `make oci`), which sets VERSION,
ENVOY_VERSION and ENVOY_BIN. The example plugin configurations are not only
parsed: each is loaded into a real Envoy with drop444 and shown to drop and
pass what it says.
"""

import gzip
import hashlib
import io
import json
import os
import pathlib
import socket
import subprocess
import tarfile
import tempfile
import time
import unittest
import urllib.request

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
VERSION = os.environ["VERSION"]
ENVOY_VERSION = os.environ["ENVOY_VERSION"]
ENVOY_BIN = os.environ["ENVOY_BIN"]
WASM = ROOT / "target/wasm32-wasip1/release/drop444.wasm"
DIST = ROOT / "dist"
RELEASE_WASM = DIST / f"drop444-{VERSION}.wasm"
LAYOUT = DIST / f"drop444-{VERSION}.oci"
DOCKER_IMAGE = f"drop444/plugin:{VERSION}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tar_files(data: bytes) -> dict:
    """name -> bytes of every member; fails on anything but regular files."""
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            assert member.isfile(), f"{member.name} is not a regular file"
            files[member.name] = tar.extractfile(member).read()
    return files


class Release(unittest.TestCase):
    def test_versioned_wasm_is_the_build_and_its_sha256_file_is_right(self):
        data = RELEASE_WASM.read_bytes()
        self.assertEqual(data, WASM.read_bytes())
        line = (DIST / f"drop444-{VERSION}.wasm.sha256").read_text()
        self.assertEqual(line, f"{sha256(data)}  drop444-{VERSION}.wasm\n")


class OciLayout(unittest.TestCase):
    def blob(self, digest: str) -> bytes:
        algorithm, hex_digest = digest.split(":")
        self.assertEqual(algorithm, "sha256")
        data = (LAYOUT / "blobs/sha256" / hex_digest).read_bytes()
        self.assertEqual(sha256(data), hex_digest, f"blob {digest} does not match its name")
        return data

    def descriptor(self, desc: dict) -> bytes:
        data = self.blob(desc["digest"])
        self.assertEqual(len(data), desc["size"], desc)
        return data

    def manifest(self) -> dict:
        index = json.loads((LAYOUT / "index.json").read_text())
        self.assertEqual(index["schemaVersion"], 2)
        (entry,) = index["manifests"]
        self.assertEqual(entry["mediaType"], "application/vnd.oci.image.manifest.v1+json")
        self.assertEqual(entry["annotations"]["org.opencontainers.image.ref.name"], VERSION)
        return json.loads(self.descriptor(entry))

    def test_layout_marker(self):
        self.assertEqual(
            json.loads((LAYOUT / "oci-layout").read_text()), {"imageLayoutVersion": "1.0.0"}
        )

    def test_manifest_is_the_wasm_compat_variant_with_one_layer(self):
        manifest = self.manifest()
        self.assertEqual(manifest["schemaVersion"], 2)
        self.assertEqual(manifest["annotations"]["module.wasm.image/variant"], "compat")
        self.assertEqual(manifest["config"]["mediaType"], "application/vnd.oci.image.config.v1+json")
        (layer,) = manifest["layers"]
        self.assertEqual(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip")

    def test_layer_holds_exactly_plugin_wasm_and_config_names_it(self):
        manifest = self.manifest()
        (layer,) = manifest["layers"]
        layer_tar = gzip.decompress(self.descriptor(layer))
        self.assertEqual(tar_files(layer_tar), {"plugin.wasm": WASM.read_bytes()})
        config = json.loads(self.descriptor(manifest["config"]))
        self.assertEqual(config["rootfs"], {"type": "layers", "diff_ids": ["sha256:" + sha256(layer_tar)]})

    def test_no_stray_blobs_and_archive_equals_layout(self):
        manifest = self.manifest()
        referenced = {manifest["config"]["digest"], manifest["layers"][0]["digest"]}
        index = json.loads((LAYOUT / "index.json").read_text())
        referenced.add(index["manifests"][0]["digest"])
        on_disk = {"sha256:" + p.name for p in (LAYOUT / "blobs/sha256").iterdir()}
        self.assertEqual(on_disk, referenced)
        archive = tar_files(pathlib.Path(str(LAYOUT) + ".tar").read_bytes())
        layout = {
            str(p.relative_to(LAYOUT)): p.read_bytes() for p in LAYOUT.rglob("*") if p.is_file()
        }
        self.assertEqual(archive, layout)


class DockerImage(unittest.TestCase):
    def test_single_layer_with_only_plugin_wasm(self):
        saved = subprocess.run(
            ["docker", "save", DOCKER_IMAGE], check=True, capture_output=True
        ).stdout
        archive = tar_files_loose(saved)
        (entry,) = json.loads(archive["manifest.json"])
        self.assertEqual(entry["RepoTags"], [DOCKER_IMAGE])
        (layer_path,) = entry["Layers"]
        self.assertEqual(tar_files(archive[layer_path]), {"plugin.wasm": WASM.read_bytes()})


def tar_files_loose(data: bytes) -> dict:
    """Like tar_files, but skips directories and symlinks (docker save has them)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def load_all(path: str) -> list:
    with open(ROOT / path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


class ComposeFile(unittest.TestCase):
    def test_services_and_pinned_official_image(self):
        (compose,) = load_all("envoy/docker-compose.yaml")
        services = compose["services"]
        self.assertEqual(set(services), {"envoy", "upstream"})
        default_image = f"${{ENVOY_IMAGE:-envoyproxy/envoy:v{ENVOY_VERSION}}}"
        for name, service in services.items():
            self.assertEqual(service["image"], default_image, name)
        volumes = services["envoy"]["volumes"]
        self.assertTrue(any(v.endswith(":/etc/drop444/drop444.wasm:ro") for v in volumes), volumes)
        for port in services["envoy"]["ports"]:
            self.assertTrue(port.startswith("127.0.0.1:"), f"{port}: publish on loopback only")


class IstioExample(unittest.TestCase):
    def test_wasmplugin(self):
        (plugin,) = load_all("examples/istio/wasmplugin.yaml")
        self.assertEqual(plugin["apiVersion"], "extensions.istio.io/v1alpha1")
        self.assertEqual(plugin["kind"], "WasmPlugin")
        self.assertTrue(plugin["metadata"]["name"])
        spec = plugin["spec"]
        self.assertTrue(spec["url"].startswith("oci://"), spec["url"])
        self.assertTrue(spec["url"].endswith(f"/drop444:{VERSION}"), spec["url"])
        self.assertIn(spec["phase"], {"AUTHN", "AUTHZ", "STATS", "UNSPECIFIED_PHASE"})
        self.assertEqual(spec["failStrategy"], "FAIL_CLOSE")
        self.assertIsInstance(spec["pluginConfig"], dict)

    def test_plugin_config_loads_and_behaves(self):
        (plugin,) = load_all("examples/istio/wasmplugin.yaml")
        with Envoy(plugin["spec"]["pluginConfig"]) as envoy:
            self.assertEqual(envoy.status("www.example.com", "Mozilla/5.0"), 200)
            self.assertEqual(envoy.status("example.com", "Mozilla/5.0"), 200)
            self.assertIsNone(envoy.status("evil.com", "Mozilla/5.0"))
            self.assertIsNone(envoy.status("example.com", "sqlmap/1.7"))
            self.assertIsNone(envoy.status("example.com", None))


    def test_envoy_filter_sets_the_path_settings_on_the_same_gateway(self):
        (plugin,) = load_all("examples/istio/wasmplugin.yaml")
        (envoy_filter,) = load_all("examples/istio/path-normalization.yaml")
        self.assertEqual(envoy_filter["apiVersion"], "networking.istio.io/v1alpha3")
        self.assertEqual(envoy_filter["kind"], "EnvoyFilter")
        self.assertEqual(envoy_filter["metadata"]["namespace"], plugin["metadata"]["namespace"])
        spec = envoy_filter["spec"]
        self.assertEqual(spec["workloadSelector"]["labels"], plugin["spec"]["selector"]["matchLabels"])
        (patch,) = spec["configPatches"]
        self.assertEqual(patch["applyTo"], "NETWORK_FILTER")
        self.assertEqual(
            patch["match"]["listener"]["filterChain"]["filter"]["name"],
            "envoy.filters.network.http_connection_manager",
        )
        self.assertEqual(patch["patch"]["operation"], "MERGE")
        hcm = patch["patch"]["value"]["typed_config"]
        self.assertEqual(hcm["@type"], HCM_TYPE)
        self.assertEqual({k: hcm[k] for k in PATH_SETTINGS}, PATH_SETTINGS)


class EnvoyGatewayExample(unittest.TestCase):
    def docs(self):
        return {doc["kind"]: doc for doc in load_all("examples/envoy-gateway/drop444.yaml")}

    def test_resources_reference_each_other(self):
        docs = self.docs()
        self.assertEqual(
            set(docs),
            {"GatewayClass", "Gateway", "HTTPRoute", "EnvoyExtensionPolicy", "ClientTrafficPolicy"},
        )
        for kind in ("GatewayClass", "Gateway", "HTTPRoute"):
            self.assertEqual(docs[kind]["apiVersion"], "gateway.networking.k8s.io/v1", kind)
        gateway = docs["Gateway"]
        self.assertEqual(gateway["spec"]["gatewayClassName"], docs["GatewayClass"]["metadata"]["name"])
        route = docs["HTTPRoute"]
        self.assertIn(gateway["metadata"]["name"], [p["name"] for p in route["spec"]["parentRefs"]])
        policy = docs["EnvoyExtensionPolicy"]
        self.assertEqual(policy["apiVersion"], "gateway.envoyproxy.io/v1alpha1")
        self.assertEqual(policy["metadata"]["namespace"], gateway["metadata"]["namespace"])
        self.assertIn(
            {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway["metadata"]["name"]},
            policy["spec"]["targetRefs"],
        )
        (wasm,) = policy["spec"]["wasm"]
        self.assertEqual(wasm["rootID"], "drop444")
        self.assertEqual(wasm["code"]["type"], "Image")
        self.assertTrue(wasm["code"]["image"]["url"].endswith(f"/drop444:{VERSION}"))
        self.assertFalse(wasm["failOpen"])
        # The route's host is one the plugin lets through.
        self.assertTrue(set(route["spec"]["hostnames"]) <= set(wasm["config"]["host"]["allow"]))

    def test_client_traffic_policy_sets_the_path_settings_on_the_gateway(self):
        docs = self.docs()
        gateway = docs["Gateway"]
        policy = docs["ClientTrafficPolicy"]
        self.assertEqual(policy["apiVersion"], "gateway.envoyproxy.io/v1alpha1")
        self.assertEqual(policy["metadata"]["namespace"], gateway["metadata"]["namespace"])
        self.assertIn(
            {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway["metadata"]["name"]},
            policy["spec"]["targetRefs"],
        )
        # Envoy Gateway always sets normalize_path; merge_slashes unless
        # disabled; the escaped-slash action is ours to choose.
        path = policy["spec"]["path"]
        self.assertEqual(path["escapedSlashesAction"], "RejectRequest")
        self.assertIs(path.get("disableMergeSlashes", False), False)

    def test_plugin_config_loads_and_behaves(self):
        (wasm,) = self.docs()["EnvoyExtensionPolicy"]["spec"]["wasm"]
        with Envoy(wasm["config"]) as envoy:
            self.assertEqual(envoy.status("www.example.com", "Mozilla/5.0"), 200)
            self.assertIsNone(envoy.status("example.com", "Mozilla/5.0"))
            self.assertIsNone(envoy.status("www.example.com", "SQLMap"))
            self.assertIsNone(envoy.status("www.example.com", "Mozilla/5.0", ["X-Debug-Token: 1"]))


HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
# Envoy's own path settings every shipped HTTP connection manager sets
# (docs/path-safety.md).
PATH_SETTINGS = {
    "normalize_path": True,
    "merge_slashes": True,
    "path_with_escaped_slashes_action": "REJECT_REQUEST",
}
# Shipped Envoy configurations with a drop444 HTTP connection manager.
FRONT_CONFIGS = [
    "envoy/envoy.yaml",
    "envoy/envoy-l4.yaml",
    "envoy/envoy-tls.yaml",
    "envoy/envoy-remote.yaml",
    "envoy/compose/envoy.yaml",
    "envoy/hot-reload/listener.yaml",
]


def http_connection_managers(node) -> list:
    """Every HttpConnectionManager typed_config anywhere in a YAML tree."""
    found = []
    stack = [node]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if value.get("@type") == HCM_TYPE:
                found.append(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return found


def has_drop444(hcm: dict) -> bool:
    return any(f.get("name") == "drop444" for f in hcm.get("http_filters", []))


class ShippedEnvoyConfigs(unittest.TestCase):
    def shipped(self) -> list:
        files = sorted(
            str(p.relative_to(ROOT))
            for pattern in ("envoy/*.yaml", "envoy/compose/*.yaml", "envoy/hot-reload/*.yaml")
            for p in ROOT.glob(pattern)
        )
        self.assertTrue(set(FRONT_CONFIGS) <= set(files), files)
        return files

    def test_front_configs_keep_stream_timeouts_above_the_longest_tarpit(self):
        # A stream timeout under 60 s answers a tarpitted request with a 504
        # (tests/e2e/tarpit.rs measures it; docs/operations.md).
        def seconds(text):
            self.assertTrue(str(text).endswith("s"), text)
            return float(str(text)[:-1])

        for name in FRONT_CONFIGS:
            for hcm in http_connection_managers(yaml.safe_load((ROOT / name).read_text())):
                with self.subTest(config=name):
                    self.assertGreaterEqual(seconds(hcm.get("stream_idle_timeout", "0s")), 60)
                    request = seconds(hcm.get("request_timeout", "0s"))
                    self.assertTrue(request == 0 or request >= 60, request)
                    options = hcm.get("common_http_protocol_options", {})
                    self.assertNotIn("max_stream_duration", options)

    def test_every_http_connection_manager_sets_the_path_settings(self):
        checked = 0
        for file in self.shipped():
            for doc in load_all(file):
                for hcm in http_connection_managers(doc):
                    checked += 1
                    self.assertEqual(
                        {k: hcm.get(k) for k in PATH_SETTINGS}, PATH_SETTINGS, f"{file}: {hcm['stat_prefix']}"
                    )
        # The six drop444 fronts and the Compose upstream.
        self.assertGreaterEqual(checked, len(FRONT_CONFIGS) + 1)

    def test_every_front_config_has_a_drop444_http_connection_manager(self):
        for file in FRONT_CONFIGS:
            hcms = [h for doc in load_all(file) for h in http_connection_managers(doc)]
            self.assertTrue(any(has_drop444(h) for h in hcms), f"{file}: no HCM with drop444")

    def test_envoy_answers_an_encoded_slash_itself_before_any_filter(self):
        """REJECT_REQUEST: a bare 400 even when drop444 would drop every request."""
        everything = {"rules": [{"name": "everything", "header": ":path", "present": True}]}
        with Envoy(everything) as envoy:
            self.assertEqual(envoy.raw(request(b"/x")), b"")  # drop444 runs: dropped
            for path in (b"/x%2Fy", b"/x%2fy", b"/x%5Cy", b"/x%5cy"):
                head = envoy.raw(request(path))
                self.assertTrue(head.startswith(b"HTTP/1.1 400 "), (path, head))
                self.assertIn(b"content-length: 0\r\n", head.lower(), path)

    def test_envoy_normalizes_the_path_before_drop444_reads_it(self):
        """normalize_path and merge_slashes: drop444's raw `:path` (a header
        condition, not the normalised `path` field) never shows `..`, `\\` or `//`."""
        raw_path = {"rules": [
            {"name": "raw-dots", "header": ":path", "contains": "/.."},
            {"name": "raw-backslash", "header": ":path", "contains": "\\"},
            {"name": "raw-double-slash", "header": ":path", "contains": "//"},
        ]}
        with Envoy(raw_path) as envoy:
            self.assertEqual(envoy.raw(request(b"/a/..b")), b"")  # not a dot segment: kept, dropped
            for path in (b"/a/../b", b"/a/%2e%2e/b", b"/a\\..\\b", b"//b", b"/a//b/./c"):
                head = envoy.raw(request(path))
                self.assertTrue(head.startswith(b"HTTP/1.1 200 "), (path, head))


def request(path: bytes) -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"


class Envoy:
    """envoy/envoy.yaml with drop444 and this plugin configuration, on ephemeral
    loopback ports (the same substitutions as tests/e2e/envoy.rs)."""

    def __init__(self, plugin_config: dict):
        self.dir = tempfile.TemporaryDirectory(prefix="drop444-packaging-")
        text = (ROOT / "envoy/envoy.yaml").read_text()
        for old, new in [
            ("port_value: 9901", "port_value: 0"),
            ("port_value: 10000", "port_value: 0"),
            ("filename: target/wasm32-wasip1/release/drop444.wasm", f"filename: {WASM}"),
            ('value: ""', "value: " + json.dumps(json.dumps(plugin_config))),
            ("path: /dev/stdout", "path: /dev/null"),
        ]:
            assert text.count(old) == 1, f"envoy/envoy.yaml: expected `{old}` once"
            text = text.replace(old, new)
        self.path = pathlib.Path(self.dir.name)
        (self.path / "envoy.yaml").write_text(text)

    def __enter__(self):
        self.log = open(self.path / "envoy.log", "w")
        self.proc = subprocess.Popen(
            [ENVOY_BIN, "-c", str(self.path / "envoy.yaml"), "--disable-hot-restart",
             "--concurrency", "1", "--admin-address-path", str(self.path / "admin")],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise AssertionError("Envoy did not start:\n" + (self.path / "envoy.log").read_text()[-3000:])
            admin = (self.path / "admin").read_text().strip() if (self.path / "admin").exists() else ""
            if admin and self.get(admin, "/ready") == b"LIVE\n":
                break
            time.sleep(0.05)
        listeners = json.loads(self.get(admin, "/listeners?format=json"))
        self.port = listeners["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()
        self.log.close()
        self.dir.cleanup()

    @staticmethod
    def get(addr: str, path: str) -> bytes:
        """Body of a 200 from the admin interface, else b""."""
        try:
            with urllib.request.urlopen(f"http://{addr}{path}", timeout=2) as response:
                return response.read()
        except OSError:
            return b""

    def raw(self, request: bytes) -> bytes:
        """Everything Envoy sends back to these request bytes, until it closes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=3) as s:
            s.sendall(request)
            return recv_all(s)

    def status(self, host, user_agent, extra=()):
        """The response status, or None for drop444's silent drop (0 bytes)."""
        lines = [f"Host: {host}", "Accept: */*", *extra]
        if user_agent is not None:
            lines.append(f"User-Agent: {user_agent}")
        request = "GET / HTTP/1.1\r\n" + "".join(l + "\r\n" for l in lines) + "Connection: close\r\n\r\n"
        with socket.create_connection(("127.0.0.1", self.port), timeout=3) as s:
            s.sendall(request.encode())
            data = recv_all(s)
        return int(data.split()[1]) if data else None


def recv_all(s: socket.socket) -> bytes:
    chunks = []
    while chunk := s.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


if __name__ == "__main__":
    unittest.main()
