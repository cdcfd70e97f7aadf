//! A private temp dir and HOME for tests that drive `twinset up` / `down` or the
//! quickstart script themselves; on drop it kills every process of the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};

use crate::binary;
use crate::cluster::{base_command, kill_all, run_command, run_command_with, unique_id};
use crate::output::Output;
use crate::procs::ProcId;

/// See the module docs.
pub struct Sandbox {
    tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
    bin: PathBuf,
    test_id: String,
    children: Vec<(String, Child)>,
    seen: Vec<ProcId>,
    log_files: Vec<PathBuf>,
}

impl Sandbox {
    /// A fresh temp dir with `home/` (used as HOME) and `logs/`.
    pub fn new() -> Sandbox {
        let tmp = tempfile::Builder::new()
            .prefix("twinset-e2e-")
            .tempdir()
            .expect("create temp dir");
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(dir.join("home")).expect("create home");
        std::fs::create_dir_all(dir.join("logs")).expect("create logs");
        Sandbox {
            tmp: Some(tmp),
            dir,
            bin: binary::twinset_bin(),
            test_id: unique_id(),
            children: Vec::new(),
            seen: Vec::new(),
            log_files: Vec::new(),
        }
    }

    /// The temp dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// HOME of every command run here.
    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    /// The twinset binary under test.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// A twinset command with HOME, the test marker and RUST_LOG set (no TWINSET_SERVER:
    /// the client finds the server through `$HOME/.twinset/config`).
    pub fn command(&self) -> Command {
        base_command(&self.bin, &self.home(), &self.test_id)
    }

    /// Runs `twinset ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.command();
        cmd.args(args);
        run_command(cmd, args, None)
    }

    /// Runs any prepared command (e.g. a script) to completion within `limit`, with the
    /// sandbox's HOME and marker; stdout and stderr are collected.
    pub fn run_program(&self, mut cmd: Command, label: &str, limit: std::time::Duration) -> Output {
        cmd.env("HOME", self.home())
            .env(crate::cluster::MARKER_ENV, &self.test_id);
        run_command_with(cmd, label, None, limit)
    }

    /// Starts `twinset ARGS` in the background, in its own process group, with its
    /// output in `logs/<name>.stdout|stderr`; returns its pid.
    pub fn spawn(&mut self, name: &str, args: &[&str]) -> i32 {
        let (child, logs) =
            crate::cluster::spawn_logged(self.command(), &self.dir.join("logs"), name, args);
        let pid = child.id() as i32;
        self.children.push((name.to_string(), child));
        self.log_files.extend(logs);
        pid
    }

    /// The exit status of a spawned child, if it has exited.
    pub fn try_wait(&mut self, pid: i32) -> Option<ExitStatus> {
        let (_, child) = self
            .children
            .iter_mut()
            .find(|(_, c)| c.id() as i32 == pid)?;
        child.try_wait().ok().flatten()
    }

    /// Remembers processes to kill at the end even if nothing else links them to the test.
    pub fn remember(&mut self, ids: impl IntoIterator<Item = ProcId>) {
        self.seen.extend(ids);
    }

    /// The tail of every log written here.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for f in &self.log_files {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(150);
            s.push_str(&format!(
                "----- {} -----\n{}\n",
                f.display(),
                lines[start..].join("\n")
            ));
        }
        for f in
            crate::cluster::find_files(&self.dir, |p| p.extension().is_some_and(|e| e == "log"), 5)
        {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(30);
            s.push_str(&format!(
                "----- {} -----\n{}\n",
                f.display(),
                lines[start..].join("\n")
            ));
        }
        s
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            eprintln!(
                "===== sandbox {} ({}) logs =====\n{}",
                self.test_id,
                self.dir.display(),
                self.logs()
            );
        }
        let roots: Vec<i32> = self.children.iter().map(|(_, c)| c.id() as i32).collect();
        kill_all(&self.dir, &self.test_id, &roots, &self.seen);
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if failed && std::env::var_os("TWINSET_E2E_KEEP").is_some() {
            if let Some(t) = self.tmp.take() {
                eprintln!("kept {}", t.keep().display());
            }
        }
    }
}
