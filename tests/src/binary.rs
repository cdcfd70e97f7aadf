//! Where the `twinset` binary and the repository files live.

use std::path::{Path, PathBuf};

/// The workspace root (the directory holding `Cargo.toml`, `deploy/`, `README.md`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The `twinset` binary under test: `$TWINSET_BIN`, else `<target dir>/debug/twinset`
/// (`$CARGO_TARGET_DIR` or the workspace's `target/`). Panics with the build command
/// when it does not exist, because the e2e tests cannot build it themselves.
pub fn twinset_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TWINSET_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "TWINSET_BIN={} does not exist", p.display());
        return p;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| {
            if t.is_relative() {
                repo_root().join(t)
            } else {
                t
            }
        })
        .unwrap_or_else(|| repo_root().join("target"));
    let p = target.join("debug").join("twinset");
    assert!(
        p.is_file(),
        "twinset binary not found at {}: build it first with `cargo build -p twinset` \
         (or point TWINSET_BIN at one)",
        p.display()
    );
    p
}
