//! Link settings for the shared object Envoy loads.

fn main() {
    // Look for libraries next to the module first ($ORIGIN): a container
    // image that lacks libgcc_s.so.1 (Rust's unwinder) can carry it beside
    // libdrop444.so (envoy/docker-compose.native.yaml does).
    println!("cargo:rustc-cdylib-link-arg=-Wl,-rpath,$ORIGIN");
}
