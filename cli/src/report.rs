//! How results and failures reach the terminal: stdout writes that tolerate a
//! closed pipe, and the one-line error forms kubectl uses.
use std::fmt;
use std::io::Write as _;

/// An error line that main prints exactly as is (no `error: ` prefix), as kubectl
/// prints `Error from server (...)` and connection failures.
#[derive(Debug)]
pub struct Printed(pub String);

impl fmt::Display for Printed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Printed {}

/// The failure was already reported on stderr (e.g. one line per failed object);
/// main only sets the exit status.
#[derive(Debug)]
pub struct AlreadyReported;

impl fmt::Display for AlreadyReported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("errors were reported above")
    }
}

impl std::error::Error for AlreadyReported {}

/// The single stderr line for an error: `Printed` as is, anything else as `error: ...`.
pub fn error_line(err: &anyhow::Error) -> Option<String> {
    if err.downcast_ref::<AlreadyReported>().is_some() {
        return None;
    }
    if let Some(p) = err.downcast_ref::<Printed>() {
        return Some(crate::client::one_line(&p.0));
    }
    Some(format!(
        "error: {}",
        crate::client::one_line(&format!("{err:#}"))
    ))
}

/// Prints an error for a failed object and carries on (the command exits non-zero later).
pub fn eprint_error(err: &anyhow::Error) {
    if let Some(line) = error_line(err) {
        eprintln!("{line}");
    }
}

/// Writes `text` to stdout; a closed pipe (`twinset get pods | head`) ends the process quietly.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let result = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    if let Err(e) = result {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing output: {e}");
        std::process::exit(1);
    }
}

/// Writes one line to stdout.
pub fn outln(line: &str) {
    out(&format!("{line}\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines() {
        let e: anyhow::Error =
            Printed("Error from server (NotFound): pods \"x\" not found".into()).into();
        assert_eq!(
            error_line(&e).as_deref(),
            Some("Error from server (NotFound): pods \"x\" not found")
        );
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_line(&e).as_deref(), Some("error: outer: inner"));
        assert_eq!(error_line(&AlreadyReported.into()), None);
    }
}
