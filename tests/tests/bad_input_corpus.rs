//! The bad-input corpus (`tests/bad-input/`, its README says the format): every case is
//! applied through the CLI (`twinset apply -f FILE`), gRPC (Cluster.Apply with the
//! objects a client decodes, or the raw bytes of a `.grpc` case) and REST (a POST of the
//! raw manifest as curl would send it, and a PUT of it as `kubectl replace` would), and
//! each path's refusal is compared whole with the case's `.expect` file; the store
//! revision must not move, and the control plane's peak memory must not grow by more
//! than 64 MiB on any case (the 100 MiB ones included). Every case is checked on every
//! path before the test fails, naming each case and path that did not answer as
//! expected.
//!
//! `TWINSET_BLESS_BAD_INPUT=1` rewrites the `cli:`, `grpc:`, `rest:` and `put:` lines
//! from what the paths answered (never `error:`, the core message every path must carry);
//! review the diff before committing it.

use std::path::{Path, PathBuf};

use serde_json::Value;
use twinset_e2e::{cluster::run_command, repo_root, Cluster};
use twinset_node_agent::procfs::status_kib;
use twinset_proto::manifest;
use twinset_proto::v1::ApplyRequest;

/// The CLI's bound on a manifest it reads (`cli/src/manifests.rs`); the test decodes
/// nothing larger for the gRPC path either.
const CLI_MAX_MANIFEST_BYTES: usize = 16 * 1024 * 1024;

/// How much the control plane's peak resident memory may grow while one case is refused.
const MAX_PEAK_GROWTH_KIB: u64 = 64 * 1024;

/// What a path says when the case cannot be put to it.
const NA: &str = "n/a";

/// Why the CLI and REST cannot send a `.grpc` case.
const RAW_BYTES: &str = "gRPC request bytes, not a manifest";

/// Why gRPC cannot carry a manifest the client's decoder refuses (its error follows).
const CANNOT_CARRY: &str = "no twinset.v1 message can carry it";

/// One case: its files, the bytes it sends and what it expects.
struct Case {
    /// `NN-name`.
    name: String,
    /// The manifest's extension (`yaml`, `json`), or `grpc` for raw gRPC bytes.
    ext: String,
    /// What is sent: the manifest (generated for `.gen`), or the gRPC request bytes.
    bytes: Vec<u8>,
    /// The `.expect` file.
    expect_path: PathBuf,
    /// Its lines as they are (for blessing).
    expect_text: String,
    /// The REST collection path to POST to, or None (`post: n/a`).
    post: Option<String>,
    /// The core message every path's answer carries.
    error: String,
}

impl Case {
    fn line(&self, key: &str) -> Option<String> {
        expect_value(&self.expect_text, key)
    }

    fn content_type(&self) -> &'static str {
        match self.ext.as_str() {
            "json" => "application/json",
            _ => "application/yaml",
        }
    }
}

/// The value of `key: value` in an expect file.
fn expect_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
}

/// The text of a `.gen` file with its `@@FILL@@` replaced as its first line says
/// (`# fill: COUNT CHAR`).
fn generate(template: &str, name: &str) -> Vec<u8> {
    let first = template.lines().next().unwrap_or_default();
    let spec = first
        .strip_prefix("# fill: ")
        .unwrap_or_else(|| panic!("{name}: a .gen file starts with `# fill: COUNT CHAR`"));
    let (count, fill) = spec
        .split_once(' ')
        .unwrap_or_else(|| panic!("{name}: bad fill line {first:?}"));
    let count: usize = count
        .parse()
        .unwrap_or_else(|e| panic!("{name}: fill count {count:?}: {e}"));
    let (head, tail) = template
        .split_once("@@FILL@@")
        .unwrap_or_else(|| panic!("{name}: no @@FILL@@ in the template"));
    let mut out = Vec::with_capacity(head.len() + tail.len() + count * fill.len());
    out.extend_from_slice(head.as_bytes());
    for _ in 0..count {
        out.extend_from_slice(fill.as_bytes());
    }
    out.extend_from_slice(tail.as_bytes());
    out
}

/// The bytes of a `.grpc` file: hex bytes, `fill COUNT HH` lines, `#` comments.
fn grpc_bytes(text: &str, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(spec) = line.strip_prefix("fill ") {
            let (count, byte) = spec
                .split_once(' ')
                .unwrap_or_else(|| panic!("{name}: bad fill line {line:?}"));
            let count: usize = count.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
            let byte = u8::from_str_radix(byte, 16).unwrap_or_else(|e| panic!("{name}: {e}"));
            out.resize(out.len() + count, byte);
            continue;
        }
        for hex in line.split_whitespace() {
            out.push(u8::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("{name}: {e}")));
        }
    }
    out
}

/// Every case of the corpus, in name order.
fn corpus(dir: &Path) -> Vec<Case> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e != "expect" && e != "md"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let name = file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            let ext = file
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default()
                .to_string();
            let raw = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let (ext, bytes) = match ext.as_str() {
                "gen" => (
                    "yaml".to_string(),
                    generate(&String::from_utf8_lossy(&raw), &name),
                ),
                "grpc" => (ext, grpc_bytes(&String::from_utf8_lossy(&raw), &name)),
                _ => (ext, raw),
            };
            let expect_path = dir.join(format!("{name}.expect"));
            let expect_text = std::fs::read_to_string(&expect_path)
                .unwrap_or_else(|e| panic!("{}: {e}", expect_path.display()));
            let post = expect_value(&expect_text, "post")
                .unwrap_or_else(|| panic!("{name}: no `post:` line"));
            let error = expect_value(&expect_text, "error")
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| panic!("{name}: no `error:` line"));
            Case {
                post: (post != NA).then_some(post),
                name,
                ext,
                bytes,
                expect_path,
                expect_text,
                error,
            }
        })
        .collect()
}

/// The CLI's answer: its one stderr line, after checking it failed and said nothing of
/// success.
fn through_cli(c: &Cluster, case: &Case, scratch: &Path) -> String {
    if case.ext == "grpc" {
        return format!("{NA}: {RAW_BYTES}");
    }
    let file = format!("{}.{}", case.name, case.ext);
    std::fs::write(scratch.join(&file), &case.bytes)
        .unwrap_or_else(|e| panic!("write {file}: {e}"));
    let args = ["apply", "-f", file.as_str()];
    let mut cmd = c.cli_command();
    cmd.current_dir(scratch).args(args);
    let out = run_command(cmd, &args, None);
    let _ = std::fs::remove_file(scratch.join(&file));
    let err = out.stderr.trim();
    if out.success() {
        return format!("accepted: {}", out.stdout.trim());
    }
    if err.lines().count() != 1 || !out.stdout.trim().is_empty() {
        return format!("not one line: stdout {:?} stderr {err:?}", out.stdout);
    }
    err.to_string()
}

/// The gRPC answer: `CODE: message` of the first refused Apply, or why no message can
/// carry the case.
fn through_grpc(c: &Cluster, case: &Case) -> String {
    let refusal = |s: tonic::Status| format!("{:?}: {}", s.code(), s.message());
    if case.ext == "grpc" {
        return match twinset_e2e::raw_grpc::raw_apply(&c.target(), case.bytes.clone()) {
            Ok(_) => "accepted".to_string(),
            Err(s) => refusal(s),
        };
    }
    if case.bytes.len() > CLI_MAX_MANIFEST_BYTES {
        return format!(
            "{NA}: over the {CLI_MAX_MANIFEST_BYTES} bytes a client decodes (85-grpc-over-size sends 100 MiB over gRPC)"
        );
    }
    let objects = match manifest::text_of(&case.bytes).and_then(manifest::decode_unvalidated) {
        Ok(objects) => objects,
        Err(e) => return format!("{NA}: {CANNOT_CARRY}: {e}"),
    };
    c.grpc(|mut client| async move {
        for object in objects {
            let request = ApplyRequest {
                object: Some(object),
                dry_run: false,
                create_only: false,
            };
            if let Err(s) = client.apply(request).await {
                return refusal(s);
            }
        }
        "accepted".to_string()
    })
}

/// The REST answer: `CODE Reason: message` of the Status, after checking it is one.
/// `put` sends it as a replace (PUT) of the object the manifest names, as `kubectl
/// replace` would (`corpus` where no name can be read from it), instead of a create.
fn through_rest(c: &Cluster, case: &Case, put: bool) -> String {
    let Some(collection) = &case.post else {
        return format!("{NA}: {RAW_BYTES}");
    };
    let (method, path) = if put {
        let name = manifest::text_of(&case.bytes)
            .ok()
            .filter(|_| case.bytes.len() <= CLI_MAX_MANIFEST_BYTES)
            .and_then(|text| manifest::decode_unvalidated(text).ok())
            .and_then(|objects| objects.first().map(|o| o.name().to_string()))
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "corpus".to_string());
        (http::Method::PUT, format!("{collection}/{name}"))
    } else {
        (http::Method::POST, collection.clone())
    };
    let target = c.target();
    let body = case.bytes.clone();
    let content_type = case.content_type();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let answer = rt.block_on(async move {
        let request = http::Request::builder()
            .method(method)
            .uri(path.as_str())
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::ACCEPT, "application/json")
            .body(tonic::body::Body::new(http_body_util::Full::new(
                prost::bytes::Bytes::from(body),
            )))
            .map_err(|e| e.to_string())?;
        twinset_e2e::metrics::call(target.channel().await?, request).await
    });
    let (code, bytes) = match answer {
        Ok(a) => a,
        Err(e) => return format!("no answer: {e}"),
    };
    if (200..300).contains(&code) {
        return format!("accepted: {code}");
    }
    let status: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return format!(
                "{code}: not a Status ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        }
    };
    if status["kind"] != "Status" || status["status"] != "Failure" || status["code"] != code {
        return format!("{code}: not a Failure Status of this code: {status}");
    }
    format!(
        "{code} {}: {}",
        status["reason"].as_str().unwrap_or_default(),
        status["message"].as_str().unwrap_or_default()
    )
}

/// The control plane's peak resident memory so far, in KiB.
fn peak_kib(c: &Cluster) -> u64 {
    let pid = c.control_plane_pid().expect("the control plane runs");
    status_kib(pid, "VmHWM:").expect("the control plane's VmHWM")
}

/// The expect file with the paths' lines replaced by what they answered.
fn blessed(case: &Case, answers: &[(&str, String)]) -> String {
    let mut lines: Vec<String> = case
        .expect_text
        .lines()
        .filter(|l| !answers.iter().any(|(k, _)| l.starts_with(&format!("{k}:"))))
        .map(str::to_string)
        .collect();
    for (k, v) in answers {
        lines.push(format!("{k}: {v}"));
    }
    lines.join("\n") + "\n"
}

#[test]
fn every_bad_input_is_refused_alike_on_every_path_and_changes_nothing() {
    let dir = repo_root().join("tests/bad-input");
    let cases = corpus(&dir);
    assert!(
        cases.len() >= 60,
        "only {} cases in the corpus",
        cases.len()
    );
    let bless = std::env::var_os("TWINSET_BLESS_BAD_INPUT").is_some();
    let c = Cluster::control_plane_only();
    let scratch = c.dir().join("bad-input");
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let mut failures = Vec::new();
    let mut peaks = Vec::new();
    for case in &cases {
        let before = c.store_revision();
        let peak_before = peak_kib(&c);
        let mut answers = Vec::new();
        for path in ["cli", "grpc", "rest", "put"] {
            let answer = match path {
                "cli" => through_cli(&c, case, &scratch),
                "grpc" => through_grpc(&c, case),
                "rest" => through_rest(&c, case, false),
                _ => through_rest(&c, case, true),
            };
            let after = c.store_revision();
            if after != before {
                failures.push(format!(
                    "{} [{path}]: the store moved from revision {before} to {after}: {answer}",
                    case.name
                ));
            }
            let own = case.line(&format!("error-{path}"));
            let core = own.as_ref().unwrap_or(&case.error);
            // A path the case cannot be put to says why; only a client's refusal to
            // decode carries the core message there.
            let carries_core = !answer.starts_with(NA) || answer.contains(CANNOT_CARRY);
            if carries_core && !answer.contains(core.as_str()) {
                failures.push(format!(
                    "{} [{path}]: the answer does not carry the core message {core:?}: {answer}",
                    case.name
                ));
            }
            match case.line(path) {
                Some(expected) if expected == answer => {}
                _ if bless => {}
                expected => failures.push(format!(
                    "{} [{path}]:\n  expected {expected:?}\n  answered {answer:?}",
                    case.name
                )),
            }
            answers.push((path, answer));
        }
        let growth = peak_kib(&c).saturating_sub(peak_before);
        peaks.push((case.name.clone(), growth));
        if growth > MAX_PEAK_GROWTH_KIB {
            failures.push(format!(
                "{}: the control plane's peak memory grew by {} MiB (bound {} MiB)",
                case.name,
                growth / 1024,
                MAX_PEAK_GROWTH_KIB / 1024
            ));
        }
        if bless {
            std::fs::write(&case.expect_path, blessed(case, &answers))
                .unwrap_or_else(|e| panic!("{}: {e}", case.expect_path.display()));
        }
    }
    let worst = peaks.iter().max_by_key(|(_, g)| *g);
    eprintln!(
        "{} cases; largest peak-memory growth of the control plane: {:?} KiB; peak {} MiB",
        cases.len(),
        worst,
        peak_kib(&c) / 1024
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases × 4 paths failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
