//! Reading `/metrics` as Prometheus would: an HTTPS GET over the same TLS client the
//! tests' gRPC uses ([`get`]), and a strict parser of the Prometheus text format 0.0.4
//! ([`Exposition::parse`]) that refuses anything Prometheus would, plus what a correct
//! exposition never holds (a sample of no declared family, a repeated series, a
//! histogram whose buckets are not cumulative).

use std::collections::BTreeMap;
use tower::ServiceExt as _;

/// `GET path` on `channel`: the status and the body.
pub async fn get(channel: tonic::transport::Channel, path: &str) -> Result<(u16, String), String> {
    let request = http::Request::get(path)
        .body(tonic::body::Body::empty())
        .map_err(|e| format!("GET {path}: {e}"))?;
    let (status, body) = call(channel, request).await?;
    let text = String::from_utf8(body).map_err(|e| format!("GET {path}: {e}"))?;
    Ok((status, text))
}

/// Sends `request` (any HTTP request: the server serves REST beside gRPC) on `channel`:
/// the status and the whole body.
pub async fn call(
    channel: tonic::transport::Channel,
    request: http::Request<tonic::body::Body>,
) -> Result<(u16, Vec<u8>), String> {
    use http_body_util::BodyExt as _;
    let what = format!("{} {}", request.method(), request.uri());
    let response = channel
        .oneshot(request)
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{what}: reading the body: {e}"))?
        .to_bytes();
    Ok((status, body.to_vec()))
}

/// One series: its labels, sorted by name.
pub type Labels = BTreeMap<String, String>;

/// A metric family: its type and its samples (sample name, labels, value).
#[derive(Clone, Debug, Default)]
pub struct Family {
    /// `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    pub kind: String,
    /// Its samples in order.
    pub samples: Vec<(String, Labels, f64)>,
}

/// A parsed exposition: every family by name.
#[derive(Clone, Debug, Default)]
pub struct Exposition {
    /// The families by their `# TYPE` name.
    pub families: BTreeMap<String, Family>,
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|_| format!("bad value {s:?}")),
    }
}

/// The labels of `{a="x",b="y"}` (the braces' contents) and what follows the `}`.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Labels::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches(' ');
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("a label without '='")?;
        let name = rest[..eq].trim();
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..].trim_start_matches(' ');
        rest = rest
            .strip_prefix('"')
            .ok_or("a label value without quotes")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("an unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("a bad escape {other:?}")),
                },
                Some((_, '\n')) => return Err("a newline in a label value".into()),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name:?} repeated"));
        }
        rest = rest[end + 1..].trim_start_matches(' ');
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("labels not separated by ','".into());
        }
    }
}

/// The family a sample named `sample` belongs to, given the declared families.
fn family_of<'a>(families: &'a BTreeMap<String, Family>, sample: &'a str) -> Option<&'a str> {
    if let Some(f) = families.get(sample) {
        if f.kind != "histogram" && f.kind != "summary" {
            return Some(sample);
        }
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = sample.strip_suffix(suffix) {
            match families.get(base).map(|f| f.kind.as_str()) {
                Some("histogram") => return Some(base),
                Some("summary") if suffix != "_bucket" => return Some(base),
                _ => {}
            }
        }
    }
    None
}

impl Exposition {
    /// Parses `text` strictly (see the module docs); the error names the line.
    pub fn parse(text: &str) -> Result<Exposition, String> {
        if !text.is_empty() && !text.ends_with('\n') {
            return Err("the exposition does not end with a newline".into());
        }
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        let mut helped: BTreeMap<String, ()> = BTreeMap::new();
        let mut seen: BTreeMap<(String, Labels), ()> = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
            if line.trim().is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let words: Vec<&str> = comment.trim_start().splitn(3, ' ').collect();
                match words.as_slice() {
                    ["HELP", name, ..] => {
                        if !is_metric_name(name) {
                            return Err(at("bad metric name".into()));
                        }
                        if helped.insert(name.to_string(), ()).is_some() {
                            return Err(at("a second HELP".into()));
                        }
                    }
                    ["TYPE", name, kind] => {
                        if !is_metric_name(name) {
                            return Err(at("bad metric name".into()));
                        }
                        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(kind) {
                            return Err(at(format!("unknown type {kind:?}")));
                        }
                        if families.contains_key(*name) {
                            return Err(at("a second TYPE".into()));
                        }
                        families.insert(
                            name.to_string(),
                            Family {
                                kind: kind.to_string(),
                                samples: Vec::new(),
                            },
                        );
                    }
                    ["TYPE", ..] => return Err(at("a TYPE without name and type".into())),
                    _ => {}
                }
                continue;
            }
            let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
            let name = &line[..name_end];
            if !is_metric_name(name) {
                return Err(at("bad metric name".into()));
            }
            let (labels, rest) = match line[name_end..].strip_prefix('{') {
                Some(inner) => parse_labels(inner).map_err(at)?,
                None => (Labels::new(), &line[name_end..]),
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let value = match fields.as_slice() {
                [v] => parse_value(v).map_err(at)?,
                [v, ts] => {
                    ts.parse::<i64>()
                        .map_err(|_| at(format!("bad timestamp {ts:?}")))?;
                    parse_value(v).map_err(at)?
                }
                _ => return Err(at("not `value [timestamp]` after the name".into())),
            };
            let family = family_of(&families, name)
                .ok_or_else(|| at("a sample of no declared family".into()))?
                .to_string();
            if seen
                .insert((name.to_string(), labels.clone()), ())
                .is_some()
            {
                return Err(at("a repeated series".into()));
            }
            if let Some(f) = families.get_mut(&family) {
                f.samples.push((name.to_string(), labels, value));
            }
        }
        let e = Exposition { families };
        e.check_histograms()?;
        Ok(e)
    }

    /// Each histogram series: buckets in increasing `le`, cumulative, the last `+Inf`
    /// and equal to its `_count`.
    fn check_histograms(&self) -> Result<(), String> {
        for (name, f) in &self.families {
            if f.kind != "histogram" {
                continue;
            }
            let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
            let mut counts: BTreeMap<Labels, f64> = BTreeMap::new();
            for (sample, labels, value) in &f.samples {
                let mut key = labels.clone();
                if sample.ends_with("_bucket") {
                    let le = key
                        .remove("le")
                        .ok_or_else(|| format!("{sample}: a bucket without le"))?;
                    let le = parse_value(&le).map_err(|e| format!("{sample}: le: {e}"))?;
                    series.entry(key).or_default().push((le, *value));
                } else if sample.ends_with("_count") {
                    counts.insert(key, *value);
                }
            }
            for (labels, buckets) in &series {
                let pairs = buckets.windows(2);
                for w in pairs {
                    if w[1].0 <= w[0].0 || w[1].1 < w[0].1 {
                        return Err(format!(
                            "{name}{labels:?}: buckets not cumulative: {buckets:?}"
                        ));
                    }
                }
                let last = buckets.last().copied().unwrap_or((0.0, 0.0));
                if last.0 != f64::INFINITY {
                    return Err(format!("{name}{labels:?}: no +Inf bucket"));
                }
                if counts.get(labels) != Some(&last.1) {
                    return Err(format!("{name}{labels:?}: _count is not the +Inf bucket"));
                }
            }
        }
        Ok(())
    }

    /// The value of the sample `name` whose labels include every one of `labels`, added
    /// up over the series that match (0 when none does).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.families
            .values()
            .flat_map(|f| &f.samples)
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    /// Whether a family `name` was declared.
    pub fn has(&self, name: &str) -> bool {
        self.families.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_correct_exposition_parses() {
        let text = "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\"} 3\n\
                    # TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.7\nh_count 2\n\
                    # TYPE g gauge\ng -1.5\n";
        let e = Exposition::parse(text).unwrap();
        assert_eq!(e.sum("a_total", &[("y", "q\"")]), 3.0);
        assert_eq!(e.sum("h_count", &[]), 2.0);
        assert_eq!(e.sum("g", &[]), -1.5);
    }

    #[test]
    fn what_prometheus_would_refuse_is_refused() {
        let bad = [
            "# TYPE a counter\na{x=\"1\" 3\n",
            "# TYPE a counter\na 3 x\n",
            "# TYPE a counter\na{1x=\"1\"} 3\n",
            "b 1\n",
            "# TYPE a counter\na 1\na 2\n",
            "# TYPE a counter\n# TYPE a gauge\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\n",
            "# TYPE a counter\na 1",
        ];
        for text in bad {
            assert!(Exposition::parse(text).is_err(), "accepted: {text:?}");
        }
    }
}
