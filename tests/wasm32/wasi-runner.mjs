// Runs a wasm32-wasip1 test binary under Node.js's built-in WASI, so the
// engine's unit tests also run compiled to the target drop444 ships for.
// Cargo uses it as the wasm32-wasip1 runner (.cargo/config.toml).
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import process from "node:process";

const [, , wasmPath, ...args] = process.argv;
if (!wasmPath) {
  console.error("usage: wasi-runner.mjs TEST.wasm [ARGS...]");
  process.exit(2);
}
const wasi = new WASI({
  version: "preview1",
  args: [wasmPath, ...args],
  env: { RUST_BACKTRACE: "0" },
  returnOnExit: true,
});
const module = await WebAssembly.compile(await readFile(wasmPath));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
