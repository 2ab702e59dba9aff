// Shared by the fuzz targets (included with `#[path]`/`mod`, not a crate of its own).
#![allow(dead_code)]

/// Semantic checks (round-trips that should hold, not only "no panic") run when
/// `BIBRIDGE_FUZZ_STRICT=1` is set. Off by default: the default runs look for panics,
/// overflows and hangs only, which is what the hardening issue asks of every target.
pub fn strict() -> bool {
    use std::sync::OnceLock;
    static STRICT: OnceLock<bool> = OnceLock::new();
    *STRICT.get_or_init(|| std::env::var_os("BIBRIDGE_FUZZ_STRICT").is_some_and(|v| v == "1"))
}
