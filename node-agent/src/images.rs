//! The image table: on the process runtime an image reference stands for a local
//! program. The table is a YAML file (`deploy/images.yaml`) mapping image references
//! to a command, optional default args and env. A container with only an image that
//! has no entry does not run: it waits with reason `ImageNotInTable`.
//!
//! An entry's `command`, `args` or `readinessProbe.exec.command` element that starts
//! with `./` or `../` is a path relative to the table file's folder (so `deploy/images.yaml` can run helper
//! scripts shipped beside it, such as `./images/mysql.sh`).
//!
//! An entry may carry a `readinessProbe` (the Kubernetes Probe shape): the image's
//! default readiness check, like a Dockerfile HEALTHCHECK, used for a container that
//! runs the entry's program (no `command` of its own) and has no readinessProbe of
//! its own. See [`crate::probes`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use twinset_proto::v1::{Container, Probe};

/// Waiting reason of a container whose image has no entry in the table.
pub const IMAGE_NOT_IN_TABLE: &str = "ImageNotInTable";

/// Errors loading the table.
#[derive(Debug, thiserror::Error)]
pub enum ImageTableError {
    /// The file could not be read.
    #[error("image table {path}: {source}")]
    Read {
        /// The table file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a valid table.
    #[error("image table {path}: {message}")]
    Parse {
        /// The table file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
}

/// One image: what runs for it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageEntry {
    /// The image's entrypoint (replaced by the container's `command`).
    pub command: Vec<String>,
    /// The image's default arguments (replaced by the container's `args`).
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment the image sets (the container's env wins).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The image's default readiness probe (for containers running the entry's
    /// program without a readinessProbe of their own).
    #[serde(default, rename = "readinessProbe")]
    pub readiness_probe: Option<Probe>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    #[serde(default)]
    images: BTreeMap<String, ImageEntry>,
}

/// The loaded table (or why it could not be loaded, which every lookup then reports).
#[derive(Clone, Debug)]
pub struct ImageTable {
    path: PathBuf,
    entries: BTreeMap<String, ImageEntry>,
    load_error: Option<String>,
}

/// What a container runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Environment from the image entry (before the container's env).
    pub image_env: BTreeMap<String, String>,
}

/// Why a container cannot run: a waiting reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotRunnable {
    /// The waiting reason (`ImageNotInTable`).
    pub reason: String,
    /// A message naming the image and the table file.
    pub message: String,
}

/// The default table, built into the binary (`deploy/images.yaml`), for an agent that
/// finds no table file (an installed `twinset` outside the checkout).
pub const BUILTIN_TABLE: &str = include_str!("../../deploy/images.yaml");

/// The helper scripts the built-in table runs (`./images/...`), by their path relative
/// to the table.
pub const BUILTIN_SCRIPTS: &[(&str, &str)] = &[
    (
        "images/mysql.sh",
        include_str!("../../deploy/images/mysql.sh"),
    ),
    (
        "images/mysql-ready.sh",
        include_str!("../../deploy/images/mysql-ready.sh"),
    ),
    (
        "images/mysql-socket.sh",
        include_str!("../../deploy/images/mysql-socket.sh"),
    ),
];

/// Where the built-in table's scripts are written under an agent's data dir.
pub fn builtin_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("builtin-images")
}

/// Writes `content` to `path` (mode 0755) unless it is already there.
fn materialise(path: &Path, content: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if std::fs::read(path).is_ok_and(|b| b == content.as_bytes()) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, path)
}

/// Normalises an image reference so `busybox`, `busybox:latest`,
/// `docker.io/library/busybox` and `docker.io/library/busybox:latest` are one key.
pub fn normalize(image: &str) -> String {
    let mut s = image.trim();
    for p in ["docker.io/", "index.docker.io/", "registry-1.docker.io/"] {
        if let Some(rest) = s.strip_prefix(p) {
            s = rest;
        }
    }
    if let Some(rest) = s.strip_prefix("library/") {
        s = rest;
    }
    let last = s.rsplit('/').next().unwrap_or(s);
    if last.contains(':') || s.contains('@') {
        s.to_string()
    } else {
        format!("{s}:latest")
    }
}

fn is_relative_ref(s: &str) -> bool {
    s.starts_with("./") || s.starts_with("../")
}

/// The entry with its `./` and `../` elements joined to `base`.
fn relative_to(mut entry: ImageEntry, base: &Path) -> ImageEntry {
    let probe_command = entry
        .readiness_probe
        .as_mut()
        .and_then(|p| p.exec.as_mut())
        .map(|e| e.command.iter_mut())
        .into_iter()
        .flatten();
    for s in entry
        .command
        .iter_mut()
        .chain(entry.args.iter_mut())
        .chain(probe_command)
    {
        if is_relative_ref(s) {
            let joined: PathBuf = base.join(&*s).components().collect();
            *s = joined.to_string_lossy().into_owned();
        }
    }
    entry
}

impl ImageTable {
    /// Parses a table from YAML text; `path` names the file in messages, and its
    /// folder is what `./` and `../` elements are relative to.
    pub fn parse(text: &str, path: &Path) -> Result<ImageTable, ImageTableError> {
        let base = path.parent().unwrap_or(Path::new(""));
        let file: TableFile = serde_saphyr::from_str(text).map_err(|e| ImageTableError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut entries = BTreeMap::new();
        for (image, entry) in file.images {
            if entry.command.is_empty() {
                return Err(ImageTableError::Parse {
                    path: path.to_path_buf(),
                    message: format!("image {image}: command must not be empty"),
                });
            }
            if let Some(probe) = &entry.readiness_probe {
                crate::probes::check(probe).map_err(|e| ImageTableError::Parse {
                    path: path.to_path_buf(),
                    message: format!("image {image}: readinessProbe: {e}"),
                })?;
            }
            entries.insert(normalize(&image), relative_to(entry, base));
        }
        Ok(ImageTable {
            path: path.to_path_buf(),
            entries,
            load_error: None,
        })
    }

    /// Reads and parses the table file (relative elements resolve against its
    /// absolute folder, whatever the agent's working directory).
    pub fn load(path: &Path) -> Result<ImageTable, ImageTableError> {
        let text = std::fs::read_to_string(path).map_err(|source| ImageTableError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Self::parse(&text, &absolute)
    }

    /// Loads the table, or keeps the error so that image-only containers say why they
    /// cannot run (containers with a command still run).
    pub fn load_or_empty(path: &Path) -> ImageTable {
        match Self::load(path) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "image table not loaded; containers without a command will not start");
                ImageTable {
                    path: path.to_path_buf(),
                    entries: BTreeMap::new(),
                    load_error: Some(e.to_string()),
                }
            }
        }
    }

    /// The built-in table ([`BUILTIN_TABLE`]), its scripts written under `dir` (the
    /// agent's [`builtin_dir`]) so that its `./images/...` elements name files the
    /// agent can run. Its path (in messages) is `<dir>/images.yaml`, written too.
    pub fn builtin(dir: &Path) -> Result<ImageTable, ImageTableError> {
        let path = dir.join("images.yaml");
        let files = [("images.yaml", BUILTIN_TABLE)]
            .into_iter()
            .chain(BUILTIN_SCRIPTS.iter().copied());
        for (rel, content) in files {
            let target = dir.join(rel);
            materialise(&target, content).map_err(|source| ImageTableError::Read {
                path: target,
                source,
            })?;
        }
        Self::parse(BUILTIN_TABLE, &path)
    }

    /// The table file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry for an image, if any.
    pub fn get(&self, image: &str) -> Option<&ImageEntry> {
        self.entries.get(&normalize(image))
    }

    /// The image's default readiness probe for container `c`: only when `c` runs the
    /// entry's own program (no `command`) — the probe describes that program.
    pub fn default_readiness(&self, c: &Container) -> Option<&Probe> {
        if !c.command.is_empty() || c.image.is_empty() {
            return None;
        }
        self.get(&c.image)?.readiness_probe.as_ref()
    }

    /// What the container runs, following Kubernetes: `command` replaces the image's
    /// entrypoint and `args` its default arguments.
    pub fn resolve(&self, c: &Container) -> Result<Resolved, NotRunnable> {
        let entry = if c.image.is_empty() {
            None
        } else {
            self.get(&c.image)
        };
        if !c.command.is_empty() {
            let mut argv = c.command.clone();
            argv.extend(c.args.iter().cloned());
            let image_env = entry.map(|e| e.env.clone()).unwrap_or_default();
            return Ok(Resolved { argv, image_env });
        }
        let Some(entry) = entry else {
            let why = match &self.load_error {
                Some(e) => format!(" (the table could not be loaded: {e})"),
                None => String::new(),
            };
            let message = if c.image.is_empty() {
                format!("container {} has neither a command nor an image", c.name)
            } else {
                format!(
                    "image {:?} is not in the image table {}{why}; add an entry or give the container a command",
                    c.image,
                    self.path.display()
                )
            };
            return Err(NotRunnable {
                reason: IMAGE_NOT_IN_TABLE.to_string(),
                message,
            });
        };
        let mut argv = entry.command.clone();
        if c.args.is_empty() {
            argv.extend(entry.args.iter().cloned());
        } else {
            argv.extend(c.args.iter().cloned());
        }
        Ok(Resolved {
            argv,
            image_env: entry.env.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = r#"
images:
  busybox:
    command: ["sh"]
  twinset/sleep:
    command: ["sleep"]
    args: ["infinity"]
  datadog/agent:latest:
    command: ["/bin/sh", "-c", "echo hi"]
    env:
      MODE: monitor
"#;

    fn container(image: &str, command: &[&str], args: &[&str]) -> Container {
        Container {
            name: "c".into(),
            image: image.into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn table() -> ImageTable {
        ImageTable::parse(TABLE, Path::new("/etc/twinset/images.yaml")).unwrap()
    }

    #[test]
    fn references_normalise() {
        assert_eq!(normalize("busybox"), "busybox:latest");
        assert_eq!(normalize("docker.io/library/busybox:1.36"), "busybox:1.36");
        assert_eq!(normalize("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(normalize("app@sha256:abc"), "app@sha256:abc");
    }

    #[test]
    fn image_only_uses_the_entry() {
        let r = table()
            .resolve(&container("datadog/agent:latest", &[], &[]))
            .unwrap();
        assert_eq!(r.argv, vec!["/bin/sh", "-c", "echo hi"]);
        assert_eq!(r.image_env.get("MODE").map(String::as_str), Some("monitor"));
        let r = table()
            .resolve(&container("twinset/sleep", &[], &[]))
            .unwrap();
        assert_eq!(r.argv, vec!["sleep", "infinity"]);
    }

    #[test]
    fn args_replace_default_args_and_command_replaces_entrypoint() {
        let r = table()
            .resolve(&container("busybox:latest", &[], &["-c", "echo x"]))
            .unwrap();
        assert_eq!(r.argv, vec!["sh", "-c", "echo x"]);
        let r = table()
            .resolve(&container("twinset/sleep", &[], &["5"]))
            .unwrap();
        assert_eq!(r.argv, vec!["sleep", "5"]);
        let r = table()
            .resolve(&container("not/listed", &["sleep"], &["1"]))
            .unwrap();
        assert_eq!(r.argv, vec!["sleep", "1"]);
    }

    #[test]
    fn missing_image_names_image_and_table() {
        let e = table()
            .resolve(&container("mysql:8", &[], &[]))
            .unwrap_err();
        assert_eq!(e.reason, IMAGE_NOT_IN_TABLE);
        assert!(e.message.contains("mysql:8"), "{}", e.message);
        assert!(
            e.message.contains("/etc/twinset/images.yaml"),
            "{}",
            e.message
        );
    }

    #[test]
    fn an_entry_may_carry_a_default_readiness_probe() {
        let text = "images:\n  db:\n    command: [db]\n    readinessProbe: {tcpSocket: {port: 3306}, periodSeconds: 1}\n";
        let t = ImageTable::parse(text, Path::new("t.yaml")).unwrap();
        let probe = t.default_readiness(&container("db", &[], &[])).unwrap();
        assert_eq!(probe.period_seconds, 1);
        assert_eq!(
            probe.tcp_socket.as_ref().unwrap().port,
            Some(twinset_proto::IntOrString::int(3306))
        );
        assert!(t
            .default_readiness(&container("db", &["sh"], &[]))
            .is_none());
        assert!(t.default_readiness(&container("other", &[], &[])).is_none());
        let p = Path::new("t.yaml");
        let bad = "images:\n  db:\n    command: [db]\n    readinessProbe: {periodSeconds: 1}\n";
        let e = ImageTable::parse(bad, p).unwrap_err().to_string();
        assert!(
            e.contains("readinessProbe: the probe has no handler"),
            "{e}"
        );
        let typo = "images:\n  db:\n    command: [db]\n    readinessProbe: {tcpSockt: {port: 1}}\n";
        assert!(ImageTable::parse(typo, p).is_err());
    }

    #[test]
    fn bad_tables_are_errors() {
        let p = Path::new("t.yaml");
        assert!(ImageTable::parse("images:\n  x:\n    comand: [a]\n", p).is_err());
        assert!(ImageTable::parse("images:\n  x:\n    command: []\n", p).is_err());
        assert!(ImageTable::parse("images: [\n", p).is_err());
        let missing = ImageTable::load_or_empty(Path::new("/nonexistent/images.yaml"));
        let e = missing
            .resolve(&container("busybox", &[], &[]))
            .unwrap_err();
        assert!(e.message.contains("could not be loaded"), "{}", e.message);
    }

    #[test]
    fn relative_elements_resolve_against_the_table_folder() {
        let text = "images:\n  x:\n    command: [/bin/sh, ./images/x.sh]\n    args: [../y, -c, ./z]\n    readinessProbe: {exec: {command: [sh, ./images/ready.sh]}}\n";
        let t = ImageTable::parse(text, Path::new("/etc/twinset/images.yaml")).unwrap();
        let e = t.get("x").unwrap();
        assert_eq!(e.command, vec!["/bin/sh", "/etc/twinset/images/x.sh"]);
        assert_eq!(e.args, vec!["/etc/twinset/../y", "-c", "/etc/twinset/z"]);
        let probe = e.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap();
        assert_eq!(probe.command, vec!["sh", "/etc/twinset/images/ready.sh"]);
    }

    #[test]
    fn shipped_table_parses_and_has_the_monitor_and_mysql() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/images.yaml");
        let t = ImageTable::load(&path).unwrap();
        for image in [
            "datadog/agent:latest",
            "busybox",
            "busybox:latest",
            "twinset/sleep",
            "mysql:8",
        ] {
            assert!(t.get(image).is_some(), "{image} missing");
        }
        // The MySQL wrapper is a script beside the table, found whatever the cwd.
        let mysql = t.get("mysql:8").unwrap();
        let script = Path::new(&mysql.command[1]);
        assert!(script.is_absolute() && script.is_file(), "{script:?}");
        // MariaDB is Ready once it answers (a script beside the table too).
        let probe = mysql
            .readiness_probe
            .as_ref()
            .expect("mysql:8 readinessProbe");
        let command = probe
            .exec
            .as_ref()
            .map(|e| e.command.clone())
            .unwrap_or_default();
        let ready = Path::new(command.get(1).map(String::as_str).unwrap_or_default());
        assert!(ready.is_absolute() && ready.is_file(), "{command:?}");
        assert_eq!(probe.period_seconds, 1);
        for image in ["datadog/agent:latest", "twinset/sleep"] {
            assert!(t.get(image).unwrap().readiness_probe.is_none(), "{image}");
        }
    }

    #[test]
    fn builtin_table_runs_its_scripts_from_the_data_dir() {
        let t = tempfile::tempdir().unwrap();
        let dir = builtin_dir(t.path());
        let table = ImageTable::builtin(&dir).unwrap();
        assert_eq!(table.path(), dir.join("images.yaml"));
        let mysql = table.get("mysql:8").unwrap();
        let script = dir.join("images/mysql.sh");
        assert_eq!(mysql.command, ["/bin/sh", script.to_str().unwrap()]);
        assert_eq!(
            std::fs::read_to_string(&script).unwrap(),
            BUILTIN_SCRIPTS[0].1
        );
        assert!(table.get("datadog/agent:latest").is_some());
        assert_eq!(
            table.get("datadog/agent:7").map(|e| &e.command),
            table.get("datadog/agent:latest").map(|e| &e.command),
            "the pinned tag is the same monitor"
        );
        // Every script the table names is written.
        for (rel, _) in BUILTIN_SCRIPTS {
            assert!(dir.join(rel).is_file(), "{rel}");
        }
        // Again: nothing changes, nothing fails.
        ImageTable::builtin(&dir).unwrap();
    }
}
