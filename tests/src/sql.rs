//! Talking to the guide's MySQL replicas (MariaDB) with the `mariadb` client.

use std::process::Command;
use std::time::Duration;

use crate::cluster::run_command_with;

/// How long one client invocation may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `sql` as root (no password) against `ip:3306` and returns the rows it printed
/// (batch mode, no column names: one line per row, tab-separated). `Err` when the
/// client fails (server not listening yet, SQL error, ...).
pub fn query(ip: &str, sql: &str) -> Result<String, String> {
    if crate::dns::which("mariadb").is_none() {
        panic!("the mariadb client is not installed (apt-get install mariadb-client)");
    }
    let mut cmd = Command::new("mariadb");
    cmd.args(["-h", ip, "-P", "3306", "-u", "root"])
        .args(["--connect-timeout=3", "--batch", "--skip-column-names"])
        .args(["-e", sql]);
    let line = format!("mariadb -h {ip} -P 3306 -u root -e {sql:?}");
    let out = run_command_with(cmd, &line, None, CLIENT_TIMEOUT);
    if out.success() {
        Ok(out.stdout.trim_end().to_string())
    } else {
        Err(format!("`{line}` failed: {}", out.stderr.trim()))
    }
}

/// True when the `mariadbd` server program can be found (PATH or /usr/sbin).
pub fn server_installed() -> bool {
    crate::dns::which("mariadbd").is_some() || std::path::Path::new("/usr/sbin/mariadbd").is_file()
}
