//! `twinset taint node NAME k=v:Effect [k:Effect-]`: kubectl's taint verb.
use super::{modify, parse_target, Ctx};
use crate::args::TaintArgs;
use crate::print::describe::taint as taint_string;
use crate::report;
use anyhow::bail;
use twinset_proto::kinds::Kind;
use twinset_proto::v1::{object, Taint};

const EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// One requested change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaintChange {
    /// `key[=value]:Effect`.
    Add(Taint),
    /// `key[:Effect]-`: removes the key's taints (with that effect, when given).
    Remove {
        /// The taint key.
        key: String,
        /// The effect, or empty for all effects.
        effect: String,
    },
}

fn check_effect(effect: &str) -> anyhow::Result<()> {
    if !EFFECTS.contains(&effect) {
        bail!("invalid taint effect: {effect}, unsupported taint effect");
    }
    Ok(())
}

/// Parses one taint argument as kubectl does.
pub fn parse_change(spec: &str) -> anyhow::Result<TaintChange> {
    if let Some(body) = spec.strip_suffix('-') {
        let (kv, effect) = match body.split_once(':') {
            Some((kv, e)) => {
                check_effect(e)?;
                (kv, e.to_string())
            }
            None => (body, String::new()),
        };
        let key = kv.split_once('=').map(|(k, _)| k).unwrap_or(kv);
        if key.is_empty() {
            bail!("invalid taint spec: {spec}");
        }
        return Ok(TaintChange::Remove {
            key: key.to_string(),
            effect,
        });
    }
    let Some((kv, effect)) = spec.split_once(':') else {
        bail!("invalid taint spec: {spec}, unknown taint spec");
    };
    check_effect(effect)?;
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    if key.is_empty() {
        bail!("invalid taint spec: {spec}");
    }
    Ok(TaintChange::Add(Taint {
        key: key.to_string(),
        value: value.to_string(),
        effect: effect.to_string(),
        time_added: String::new(),
    }))
}

/// Applies the changes to a node's taints; returns kubectl's verb.
pub fn apply_changes(
    node: &str,
    taints: &mut Vec<Taint>,
    changes: &[TaintChange],
    overwrite: bool,
) -> anyhow::Result<&'static str> {
    let mut adding = false;
    let mut removing = false;
    for c in changes {
        match c {
            TaintChange::Add(t) => {
                adding = true;
                let mut t = t.clone();
                if t.effect == "NoExecute" {
                    t.time_added = twinset_proto::time::now();
                }
                if let Some(existing) = taints
                    .iter_mut()
                    .find(|e| e.key == t.key && e.effect == t.effect)
                {
                    if !overwrite {
                        bail!(
                            "node {node} already has {} taint(s) with same effect(s) and --overwrite is false",
                            t.key
                        );
                    }
                    *existing = t;
                } else {
                    taints.push(t);
                }
            }
            TaintChange::Remove { key, effect } => {
                removing = true;
                let before = taints.len();
                taints.retain(|t| !(t.key == *key && (effect.is_empty() || t.effect == *effect)));
                if taints.len() == before {
                    let shown = if effect.is_empty() {
                        key.clone()
                    } else {
                        format!("{key}:{effect}")
                    };
                    bail!("taint {shown:?} not found");
                }
            }
        }
    }
    Ok(match (adding, removing) {
        (true, true) => "modified",
        (false, true) => "untainted",
        _ => "tainted",
    })
}

/// Runs `taint`.
pub async fn run(ctx: &Ctx, args: TaintArgs) -> anyhow::Result<()> {
    let (first, rest) = match args.args.split_first() {
        Some((f, r)) => (f.clone(), r.to_vec()),
        None => bail!("at least one taint update is required"),
    };
    let (kind, name, specs) = if first.contains('/') {
        let (kind, names) = parse_target(&first, &[])?;
        (kind, names.into_iter().next().unwrap_or_default(), rest)
    } else {
        let Some((name, specs)) = rest.split_first() else {
            bail!("at least one taint update is required");
        };
        (super::parse_kind(&first)?, name.clone(), specs.to_vec())
    };
    if kind != Kind::Node {
        bail!("taint applies to nodes only, not {}", kind.resource());
    }
    if specs.is_empty() {
        bail!("at least one taint update is required");
    }
    let changes = specs
        .iter()
        .map(|s| parse_change(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut client = ctx.client().await?;
    let overwrite = args.overwrite;
    let verb = modify(&mut client, Kind::Node, "", &name, |obj| {
        let Some(object::Kind::Node(node)) = obj.kind.as_mut() else {
            bail!("{name} is not a node");
        };
        let spec = node.spec.get_or_insert_with(Default::default);
        let before: Vec<String> = spec.taints.iter().map(taint_string).collect();
        let verb = apply_changes(&name, &mut spec.taints, &changes, overwrite)?;
        let after: Vec<String> = spec.taints.iter().map(taint_string).collect();
        Ok((before != after, verb))
    })
    .await?;
    report::outln(&format!("node/{name} {verb}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_specs() -> anyhow::Result<()> {
        assert_eq!(
            parse_change("dedicated=db:NoSchedule")?,
            TaintChange::Add(Taint {
                key: "dedicated".into(),
                value: "db".into(),
                effect: "NoSchedule".into(),
                time_added: String::new()
            })
        );
        assert_eq!(
            parse_change("dedicated:NoSchedule-")?,
            TaintChange::Remove {
                key: "dedicated".into(),
                effect: "NoSchedule".into()
            }
        );
        assert_eq!(
            parse_change("dedicated-")?,
            TaintChange::Remove {
                key: "dedicated".into(),
                effect: String::new()
            }
        );
        let err = parse_change("a=b:Bogus").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("invalid taint effect: Bogus, unsupported taint effect")
        );
        Ok(())
    }

    #[test]
    fn add_remove_messages() -> anyhow::Result<()> {
        let mut taints = Vec::new();
        let add = vec![parse_change("k=v:NoSchedule")?];
        assert_eq!(apply_changes("n1", &mut taints, &add, false)?, "tainted");
        assert!(apply_changes("n1", &mut taints, &add, false).is_err());
        let rm = vec![parse_change("k:NoSchedule-")?];
        assert_eq!(apply_changes("n1", &mut taints, &rm, false)?, "untainted");
        let err = apply_changes("n1", &mut taints, &rm, false)
            .err()
            .map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("taint \"k:NoSchedule\" not found"));
        Ok(())
    }
}
