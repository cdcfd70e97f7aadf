//! Reading `-f FILE|DIR|-` arguments into objects: every input is read and
//! decoded before anything is sent, so bad input writes nothing.
use anyhow::{bail, Context as _};
use std::io::Read as _;
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

fn read_inputs(arg: &str) -> anyhow::Result<Vec<(String, String)>> {
    if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading stdin")?;
        return Ok(vec![("-".to_string(), text)]);
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
            let text =
                std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
            out.push((f.display().to_string(), text));
        }
        return Ok(out);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {arg}"))?;
    Ok(vec![(arg.to_string(), text)])
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
}
