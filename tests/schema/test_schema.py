"""The JSON Schema agrees with the filter: every example config is valid for
both, and each kind of mistake is rejected by both (`drop444 check` is the
filter's own validation, on the same engine)."""

import json
import pathlib
import subprocess
import sys
import unittest

import jsonschema

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schema/drop444.schema.json").read_text())
CLI = ROOT / "target/debug/drop444"

BAD = [
    {"rules": [{"header": "ua", "contians": "x"}]},
    {"rules": [{"header": "ua"}]},
    {"rules": [{"header": "ua", "exact": "a", "prefix": "b"}]},
    {"rules": [{"name": "x"}]},
    {"rules": [{"preset": "scanner"}]},
    {"rules": [{"field": "paths", "prefix": "/"}]},
    {"rules": [{"all": []}]},
    {"rules": [{"all": [{"name": "nested", "header": "a", "present": True}]}]},
    {"rules": [{"header": "ua", "present": False}]},
    {"rules": [{"header": "ua", "contains": ""}]},
    {"rules": [{"name": "bad name", "header": "ua", "present": True}]},
    {"rules": [{"name": "host-missing", "header": "ua", "present": True}]},
    {"rules": [{"action": "block", "header": "ua", "present": True}]},
    {"mode": "shadow"},
    {"log": {"level": "loud"}},
    {"log": {"max_per_second": 1000000}},
    {"stats": {"prefix": "Bad-Prefix"}},
    {"hosts": {}},
    {"client_ip": {"xff_trusted_hops": -1}},
    {"rules": [{"header": "ua", "present": True, "tarpit": "0s"}]},
    {"rules": [{"header": "ua", "present": True, "tarpit": "61s"}]},
    {"rules": [{"header": "ua", "present": True, "tarpit": "999ms"}]},
    {"rules": [{"header": "ua", "present": True, "tarpit": "10"}]},
    {"rules": [{"header": "ua", "present": True, "tarpit": 10}]},
    {"max_tarpitted": 0},
    {"lists": {"x": {"url": "ftp://h/", "cluster": "c", "format": "cidr"}}},
    {"lists": {"x": {"url": "http://h/", "cluster": "c", "format": "csv"}}},
    {"lists": {"x": {"url": "http://h/", "cluster": "c", "format": "cidr", "refresh": "soon"}}},
    {"lists": {"x": {"url": "http://h/", "format": "cidr"}}},
    {"lists": {"x": {"url": "http://h/", "cluster": "c", "format": "cidr", "on_missing": "maybe"}}},
    {"lists": {"bad name": {"url": "http://h/", "cluster": "c", "format": "cidr"}}},
    [],
]


def check(config):
    out = subprocess.run([CLI, "check", "-"], input=json.dumps(config).encode(), capture_output=True)
    return out.returncode, out.stderr.decode()


class SchemaAgreesWithFilter(unittest.TestCase):
    def test_schema_is_valid(self):
        jsonschema.Draft202012Validator.check_schema(SCHEMA)

    def test_examples_valid_for_both(self):
        examples = sorted((ROOT / "examples/configs").glob("*.json"))
        self.assertGreaterEqual(len(examples), 4)
        for path in examples:
            config = json.loads(path.read_text())
            jsonschema.validate(config, SCHEMA)
            code, err = check(config)
            self.assertEqual(code, 0, f"{path}: {err}")

    def test_preset_entries_are_valid_conditions(self):
        condition = {"$ref": "#/$defs/condition", "$defs": SCHEMA["$defs"]}
        for path in sorted((ROOT / "presets").glob("*.json")):
            for entry in json.loads(path.read_text())["entries"]:
                jsonschema.validate(entry["match"], condition)

    def test_mistakes_rejected_by_both(self):
        for config in BAD:
            with self.subTest(config=config):
                with self.assertRaises(jsonschema.ValidationError):
                    jsonschema.validate(config, SCHEMA)
                code, err = check(config)
                self.assertEqual(code, 1, err)


if __name__ == "__main__":
    sys.exit(unittest.main())
