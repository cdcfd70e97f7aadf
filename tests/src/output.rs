//! The result of one CLI invocation.

use std::fmt;
use std::process::ExitStatus;

/// What a finished `twinset` command printed and how it exited.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for failure messages.
    pub cmd: String,
    /// Exit status of the process.
    pub status: ExitStatus,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl Output {
    /// True when the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics (showing both streams) unless the command succeeded; returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert!(self.success(), "command failed: {self}");
        &self.stdout
    }

    /// Panics unless the command failed; returns stderr.
    #[track_caller]
    pub fn failed(&self) -> &str {
        assert!(!self.success(), "command unexpectedly succeeded: {self}");
        &self.stderr
    }

    /// `Ok(stdout)` on success, `Err(description)` otherwise; for use inside probes.
    pub fn result(&self) -> Result<&str, String> {
        if self.success() {
            Ok(&self.stdout)
        } else {
            Err(self.to_string())
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmd, self.status, self.stdout, self.stderr
        )
    }
}
