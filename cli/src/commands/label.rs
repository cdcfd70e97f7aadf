//! `twinset label KIND NAME k=v k2-`: kubectl's label verb (set, remove, --overwrite).
use super::{modify, namespace, parse_target, Ctx};
use crate::args::LabelArgs;
use crate::report;
use anyhow::bail;
use std::collections::BTreeMap;

/// One requested change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelChange {
    /// `key=value`.
    Set(String, String),
    /// `key-`.
    Remove(String),
}

/// Parses `k=v` and `k-` arguments.
pub fn parse_changes(args: &[String]) -> anyhow::Result<Vec<LabelChange>> {
    let mut out = Vec::new();
    for a in args {
        if let Some((k, v)) = a.split_once('=') {
            if k.is_empty() || v.contains('=') {
                bail!("invalid label spec: {a}");
            }
            out.push(LabelChange::Set(k.to_string(), v.to_string()));
        } else if let Some(k) = a.strip_suffix('-') {
            if k.is_empty() {
                bail!("invalid label spec: {a}");
            }
            out.push(LabelChange::Remove(k.to_string()));
        } else {
            bail!("at least one label update is required");
        }
    }
    if out.is_empty() {
        bail!("at least one label update is required");
    }
    Ok(out)
}

/// Applies changes to `labels`; returns kubectl's verb (`labeled`, `unlabeled`, `not labeled`)
/// and the notes to print for labels that were not there to remove.
pub fn apply_changes(
    labels: &mut BTreeMap<String, String>,
    changes: &[LabelChange],
    overwrite: bool,
) -> anyhow::Result<(&'static str, Vec<String>)> {
    if !overwrite {
        let mut errors = Vec::new();
        for c in changes {
            if let LabelChange::Set(k, v) = c {
                if let Some(cur) = labels.get(k) {
                    if cur != v {
                        errors.push(format!(
                            "'{k}' already has a value ({cur}), and --overwrite is false"
                        ));
                    }
                }
            }
        }
        if !errors.is_empty() {
            bail!("{}", errors.join(", "));
        }
    }
    let before = labels.clone();
    let mut notes = Vec::new();
    for c in changes {
        match c {
            LabelChange::Set(k, v) => {
                labels.insert(k.clone(), v.clone());
            }
            LabelChange::Remove(k) => {
                if labels.remove(k).is_none() {
                    notes.push(format!("label {k:?} not found."));
                }
            }
        }
    }
    let size =
        |m: &BTreeMap<String, String>| m.iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>();
    let verb = if before == *labels {
        "not labeled"
    } else if !overwrite && size(labels) < size(&before) {
        "unlabeled"
    } else {
        "labeled"
    };
    Ok((verb, notes))
}

/// Runs `label`.
pub async fn run(ctx: &Ctx, args: LabelArgs) -> anyhow::Result<()> {
    let (first, rest) = args
        .args
        .split_first()
        .map(|(f, r)| (f.clone(), r.to_vec()))
        .unwrap_or_default();
    let (kind, name, change_args) = if first.contains('/') {
        let (kind, names) = parse_target(&first, &[])?;
        (kind, names.into_iter().next().unwrap_or_default(), rest)
    } else {
        let Some((name, changes)) = rest.split_first() else {
            bail!(
                "one or more resources must be specified as <resource> <name> or <resource>/<name>"
            );
        };
        (super::parse_kind(&first)?, name.clone(), changes.to_vec())
    };
    let changes = parse_changes(&change_args)?;
    let ns = namespace(args.namespace.as_deref());
    let mut client = ctx.client().await?;
    let overwrite = args.overwrite;
    let (verb, notes) = modify(&mut client, kind, &ns, &name, |obj| {
        let mut labels = obj.meta().labels.clone();
        let (verb, notes) = apply_changes(&mut labels, &changes, overwrite)?;
        let changed = labels != obj.meta().labels;
        obj.meta_mut().labels = labels;
        Ok((changed, (verb, notes)))
    })
    .await?;
    for n in notes {
        report::outln(&n);
    }
    report::outln(&format!("{}/{name} {verb}", kind.qualified()));
    Ok(())
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
    fn set_remove_and_overwrite() -> anyhow::Result<()> {
        let mut l = labels(&[("disk", "hdd")]);
        let err = apply_changes(&mut l, &parse_changes(&["disk=ssd".into()])?, false)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("'disk' already has a value (hdd), and --overwrite is false")
        );
        let (verb, _) = apply_changes(&mut l, &parse_changes(&["disk=ssd".into()])?, true)?;
        assert_eq!(verb, "labeled");
        let (verb, _) = apply_changes(&mut l, &parse_changes(&["disk-".into()])?, false)?;
        assert_eq!(verb, "unlabeled");
        assert!(l.is_empty());
        let (verb, notes) = apply_changes(&mut l, &parse_changes(&["gone-".into()])?, false)?;
        assert_eq!(verb, "not labeled");
        assert_eq!(notes, vec!["label \"gone\" not found.".to_string()]);
        assert!(parse_changes(&["bogus".into()]).is_err());
        Ok(())
    }
}
