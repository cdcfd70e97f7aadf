//! Label selectors: kubectl's `-l` syntax and the `LabelSelector` message, one matcher for both.

use crate::v1::LabelSelector;
use std::collections::BTreeMap;
use std::fmt;

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// key=value (or key==value, key in (v1,v2)).
    In(String, Vec<String>),
    /// key!=value (or key notin (v1,v2)); also matches when the key is absent.
    NotIn(String, Vec<String>),
    /// key
    Exists(String),
    /// !key
    DoesNotExist(String),
}

/// A conjunction of requirements; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    reqs: Vec<Requirement>,
}

/// A selector that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {input:?}: {reason}")]
pub struct SelectorError {
    /// The selector text.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Selector {
    /// Parses kubectl's selector syntax: `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let err = |reason: &str| SelectorError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let mut reqs = Vec::new();
        for part in split_top_level(input) {
            let p = part.trim();
            if p.is_empty() {
                continue;
            }
            let req = if let Some(key) = p.strip_prefix('!') {
                Requirement::DoesNotExist(key.trim().to_string())
            } else if let Some((k, v)) = p.split_once("!=") {
                Requirement::NotIn(k.trim().to_string(), vec![v.trim().to_string()])
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                Requirement::In(k.trim().to_string(), vec![v.trim().to_string()])
            } else if let Some((k, rest)) = split_set_op(p, " notin ") {
                Requirement::NotIn(
                    k,
                    parse_set(rest).ok_or_else(|| err("expected (values) after notin"))?,
                )
            } else if let Some((k, rest)) = split_set_op(p, " in ") {
                Requirement::In(
                    k,
                    parse_set(rest).ok_or_else(|| err("expected (values) after in"))?,
                )
            } else {
                Requirement::Exists(p.to_string())
            };
            let key = match &req {
                Requirement::In(k, _)
                | Requirement::NotIn(k, _)
                | Requirement::Exists(k)
                | Requirement::DoesNotExist(k) => k,
            };
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(err("a requirement needs a key"));
            }
            reqs.push(req);
        }
        Ok(Selector { reqs })
    }

    /// Builds a selector from a `LabelSelector` message (matchLabels and matchExpressions).
    pub fn from_label_selector(ls: &LabelSelector) -> Result<Selector, SelectorError> {
        let mut reqs: Vec<Requirement> = ls
            .match_labels
            .iter()
            .map(|(k, v)| Requirement::In(k.clone(), vec![v.clone()]))
            .collect();
        for e in &ls.match_expressions {
            reqs.push(match e.operator.as_str() {
                "In" => Requirement::In(e.key.clone(), e.values.clone()),
                "NotIn" => Requirement::NotIn(e.key.clone(), e.values.clone()),
                "Exists" => Requirement::Exists(e.key.clone()),
                "DoesNotExist" => Requirement::DoesNotExist(e.key.clone()),
                other => {
                    return Err(SelectorError {
                        input: e.key.clone(),
                        reason: format!(
                            "unknown operator {other:?} (use In, NotIn, Exists or DoesNotExist)"
                        ),
                    })
                }
            });
        }
        Ok(Selector { reqs })
    }

    /// True when the selector has no requirement (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// True when `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.reqs.iter().all(|r| match r {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

impl fmt::Display for Selector {
    /// kubectl's rendering, e.g. `app=node-monitor` (used by the SELECTOR column).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .reqs
            .iter()
            .map(|r| match r {
                Requirement::In(k, vs) if vs.len() == 1 => format!("{k}={}", vs[0]),
                Requirement::In(k, vs) => format!("{k} in ({})", vs.join(",")),
                Requirement::NotIn(k, vs) if vs.len() == 1 => format!("{k}!={}", vs[0]),
                Requirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
                Requirement::Exists(k) => k.clone(),
                Requirement::DoesNotExist(k) => format!("!{k}"),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// True when `labels` match the `LabelSelector`; an invalid selector matches nothing.
pub fn label_selector_matches(ls: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    Selector::from_label_selector(ls).is_ok_and(|s| s.matches(labels))
}

fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn split_set_op<'a>(p: &'a str, op: &str) -> Option<(String, &'a str)> {
    p.find(op)
        .map(|i| (p[..i].trim().to_string(), &p[i + op.len()..]))
}

fn parse_set(rest: &str) -> Option<Vec<String>> {
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kubectl_syntax() {
        let l = labels(&[("app", "web"), ("tier", "db")]);
        for (sel, want) in [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web,api)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!legacy", true),
            ("app=web,tier=db", true),
            ("app=web,tier=x", false),
            ("missing!=x", true),
        ] {
            assert_eq!(Selector::parse(sel).unwrap().matches(&l), want, "{sel}");
        }
        assert!(Selector::parse("a in x").is_err());
    }

    #[test]
    fn label_selector_message() {
        let ls = LabelSelector {
            match_labels: labels(&[("app", "node-monitor")]),
            match_expressions: vec![],
        };
        assert!(label_selector_matches(
            &ls,
            &labels(&[("app", "node-monitor"), ("x", "y")])
        ));
        assert!(!label_selector_matches(&ls, &labels(&[("app", "other")])));
        assert_eq!(
            Selector::from_label_selector(&ls).unwrap().to_string(),
            "app=node-monitor"
        );
    }
}
