//! Writing the files that hold credentials and configuration: through a temporary file
//! created with its final mode (a key is never readable by others, not even for a
//! moment), synced, then renamed over the path, so a crash leaves the old file or the new
//! one, never half of either.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Replaces `path` with `text`, the new file created with `mode` (0600 for a key).
pub fn write_atomic(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    // `<name>.tmp` beside it (not `with_extension`, which gives `node.key` and `node.crt`
    // the same temporary name).
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_private_file_is_replaced_whole_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        write_atomic(&p, "one", 0o600).unwrap();
        write_atomic(&p, "two", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join("key.tmp").exists());
        // Files differing only in extension do not share a temporary file.
        write_atomic(&dir.path().join("node.key"), "k", 0o600).unwrap();
        write_atomic(&dir.path().join("node.crt"), "c", 0o644).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("node.key")).unwrap(),
            "k"
        );
    }
}
