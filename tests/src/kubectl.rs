//! The real kubectl against a cluster: the binary (Google Cloud SDK's dispatcher, which
//! runs the bundled `kubectl.1.<minor>` the server's /version picks, or a pinned bundled
//! version), run with the cluster's admin kubeconfig and a private HOME.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cluster::run_command_with;
use crate::{dns, timeout, Cluster, Output};

/// The kubectl on PATH (`None`), or the dispatcher's bundled `kubectl.<version>`.
/// Fails the test naming what is missing.
pub fn kubectl_bin(version: Option<&str>) -> PathBuf {
    let dispatcher = dns::which("kubectl")
        .expect("kubectl not found on PATH: these tests run the real kubectl (Google Cloud SDK's dispatcher or a plain kubectl)");
    match version {
        None => dispatcher,
        Some(v) => {
            let real = std::fs::canonicalize(&dispatcher).unwrap_or(dispatcher);
            let pinned = real.with_file_name(format!("kubectl.{v}"));
            assert!(
                pinned.is_file(),
                "{} not found: the dispatcher's bundled kubectl {v} is needed",
                pinned.display()
            );
            pinned
        }
    }
}

/// `kubectl ARGS` (the given binary) with `kubeconfig` as KUBECONFIG and a private HOME.
pub fn kubectl_with(bin: &Path, kubeconfig: &Path, home: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("KUBECONFIG", kubeconfig)
        .args(args);
    run_command_with(cmd, &format!("kubectl {}", args.join(" ")), None, timeout())
}

/// `kubectl ARGS` against `c` as its administrator, with kubectl `version` (None: the
/// one on PATH). Each version keeps its own HOME, so no cache is shared between them.
pub fn kubectl_as(c: &Cluster, version: Option<&str>, args: &[&str]) -> Output {
    let home = c
        .dir()
        .join(format!("kubectl-home-{}", version.unwrap_or("path")));
    std::fs::create_dir_all(&home).expect("create kubectl's HOME");
    kubectl_with(&kubectl_bin(version), &c.kubeconfig(), &home, args)
}
