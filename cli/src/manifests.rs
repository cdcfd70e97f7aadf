//! Reading `-f FILE|DIR|-` arguments into objects: every input is read and
//! decoded before anything is sent, so bad input writes nothing.
use anyhow::{bail, Context as _};
use std::io::Read;
use std::path::{Path, PathBuf};
use twinset_proto::v1::Object;

/// The objects decoded from one file (or stdin).
#[derive(Debug)]
pub struct Source {
    /// The file name as the user gave it (or as found in a directory); `-` for stdin.
    pub name: String,
    /// Its objects, in document order.
    pub objects: Vec<Object>,
}

/// Reads and decodes every `-f` argument; the first problem is a one-line error.
pub fn read_all(filenames: &[String]) -> anyhow::Result<Vec<Source>> {
    let mut sources = Vec::new();
    for f in filenames {
        for (name, text) in read_inputs(f)? {
            let objects = decode(&name, &text)?;
            sources.push(Source { name, objects });
        }
    }
    Ok(sources)
}

/// Decodes one manifest text, naming the file in the error.
pub fn decode(name: &str, text: &str) -> anyhow::Result<Vec<Object>> {
    twinset_proto::manifest::decode(text).map_err(|e| {
        anyhow::anyhow!(
            "error parsing {name}: {}",
            crate::client::one_line(&e.to_string())
        )
    })
}

/// The most of one manifest file (or stdin) the CLI reads: 16 MiB, well over any object
/// the API stores (the control plane refuses requests over its `--max-request-bytes`,
/// 1.5 MiB by default, and reads at most 4 MiB of a request), so a larger input is
/// refused while it is read, without holding it in memory.
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// Reads at most [`MAX_MANIFEST_BYTES`] of `input` and its text; more is refused.
fn read_capped(name: &str, input: impl Read) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    input
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {name}"))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        bail!(
            "error parsing {name}: the manifest is larger than {MAX_MANIFEST_BYTES} bytes, the most the CLI reads"
        );
    }
    let text = twinset_proto::manifest::text_of(&bytes)
        .map_err(|e| anyhow::anyhow!("error parsing {name}: {e}"))?;
    Ok(text.to_string())
}

fn read_file(path: &Path, name: &str) -> anyhow::Result<String> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {name}"))?;
    read_capped(name, file)
}

fn read_inputs(arg: &str) -> anyhow::Result<Vec<(String, String)>> {
    if arg == "-" {
        return Ok(vec![("-".to_string(), read_capped("-", std::io::stdin())?)]);
    }
    let path = Path::new(arg);
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("the path \"{arg}\" does not exist")
        }
        Err(e) => return Err(e).with_context(|| format!("reading {arg}")),
    };
    if meta.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading directory {arg}"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "json")
                    )
            })
            .collect();
        files.sort();
        let mut out = Vec::new();
        for f in files {
            let name = f.display().to_string();
            let text = read_file(&f, &name)?;
            out.push((name, text));
        }
        return Ok(out);
    }
    Ok(vec![(arg.to_string(), read_file(path, arg)?)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_path_is_kubectls_error() {
        let err = read_all(&["/nonexistent/x.yaml".to_string()])
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("the path \"/nonexistent/x.yaml\" does not exist")
        );
    }

    #[test]
    fn directory_reads_manifest_files_in_order() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("b.yaml"), "x")?;
        std::fs::write(dir.path().join("a.yml"), "y")?;
        std::fs::write(dir.path().join("notes.txt"), "z")?;
        let got = read_inputs(&dir.path().display().to_string())?;
        let names: Vec<String> = got
            .iter()
            .map(|(n, _)| n.rsplit('/').next().unwrap_or_default().to_string())
            .collect();
        assert_eq!(names, vec!["a.yml".to_string(), "b.yaml".to_string()]);
        Ok(())
    }

    #[test]
    fn oversize_and_non_utf8_inputs_are_refused_while_read() {
        let big = std::io::repeat(b'x').take(MAX_MANIFEST_BYTES * 4);
        let err = read_capped("big.yaml", big).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("error parsing big.yaml: the manifest is larger than 16777216 bytes, the most the CLI reads")
        );
        let err = read_capped("x.yaml", &b"a: caf\xe9\n"[..])
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("error parsing x.yaml: invalid UTF-8 at byte offset 6: a manifest is UTF-8 JSON or YAML")
        );
    }
}
