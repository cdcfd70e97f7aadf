//! Revision history: each distinct pod template of a set is a ControllerRevision
//! `<set>-<hash>` with a number. The newest template is the update revision; the one the
//! set last finished rolling out is the current revision (status.currentRevision). Going
//! back to an older template renumbers that revision instead of making a new one; old
//! revisions no pod uses are trimmed to revisionHistoryLimit. Pure functions, as
//! Kubernetes' getStatefulSetRevisions and truncateHistory.

use super::identity::{meta, owner_reference};
use crate::controllers::revision::template_hash;
use std::collections::BTreeSet;
use twinset_proto::v1::{ControllerRevision, ObjectMeta, PodTemplateSpec, StatefulSet};

/// The label a revision carries with its template hash.
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// One revision as the controller uses it.
#[derive(Clone, Debug, PartialEq)]
pub struct Revision {
    /// `<set>-<hash>`: the value of pods' controller-revision-hash label.
    pub name: String,
    /// The pod template of that revision.
    pub template: PodTemplateSpec,
    /// Its number in the set's history.
    pub number: i64,
}

/// The set's revisions after looking at its history, and the writes that takes.
#[derive(Clone, Debug, PartialEq)]
pub struct History {
    /// The revision pods were last fully rolled to.
    pub current: Revision,
    /// The revision of the set's template now.
    pub update: Revision,
    /// status.collisionCount after resolving hash collisions.
    pub collision_count: i32,
    /// A new revision to store (the template was never seen before).
    pub create: Option<ControllerRevision>,
    /// An older revision to renumber (the template went back to it): (name, number).
    pub renumber: Option<(String, i64)>,
}

fn rev_name(r: &ControllerRevision) -> &str {
    r.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("")
}

fn to_revision(r: &ControllerRevision) -> Revision {
    Revision {
        name: rev_name(r).to_string(),
        template: r.data.clone().unwrap_or_default(),
        number: r.revision,
    }
}

/// The revisions the set controls, oldest number first (ties by name).
pub fn owned<'a>(set: &StatefulSet, all: &'a [ControllerRevision]) -> Vec<&'a ControllerRevision> {
    let uid = meta(set).uid.as_str();
    let mut out: Vec<&ControllerRevision> = all
        .iter()
        .filter(|r| {
            r.metadata
                .as_ref()
                .and_then(|m| m.controller())
                .is_some_and(|c| c.uid == uid)
        })
        .collect();
    out.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| rev_name(a).cmp(rev_name(b)))
    });
    out
}

/// Works out the current and update revisions from the set and every revision of its
/// namespace (others' are needed to see name collisions).
pub fn resolve(set: &StatefulSet, all: &[ControllerRevision]) -> History {
    let m = meta(set);
    let template = set
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let status = set.status.clone().unwrap_or_default();
    let mut collision_count = status.collision_count.unwrap_or(0);
    let owned = owned(set, all);
    let next = owned.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
    let equal = owned
        .iter()
        .rev()
        .find(|r| r.data.as_ref() == Some(&template));
    let (update, create, renumber) = match equal {
        Some(r)
            if owned
                .last()
                .is_some_and(|last| rev_name(last) == rev_name(r)) =>
        {
            (to_revision(r), None, None)
        }
        Some(r) => {
            let mut rev = to_revision(r);
            rev.number = next;
            let renumber = Some((rev.name.clone(), next));
            (rev, None, renumber)
        }
        None => {
            // A name taken by a different template is a hash collision: salt and retry.
            let mut hash = template_hash(Some(&template), collision_count);
            while all.iter().any(|r| {
                rev_name(r) == format!("{}-{hash}", m.name) && r.data.as_ref() != Some(&template)
            }) {
                collision_count += 1;
                hash = template_hash(Some(&template), collision_count);
            }
            let name = format!("{}-{hash}", m.name);
            let mut labels = template
                .metadata
                .as_ref()
                .map(|t| t.labels.clone())
                .unwrap_or_default();
            labels.insert(HASH_LABEL.into(), hash);
            let obj = ControllerRevision {
                api_version: "apps/v1".into(),
                kind: "ControllerRevision".into(),
                metadata: Some(ObjectMeta {
                    name: name.clone(),
                    namespace: m.namespace.clone(),
                    labels,
                    owner_references: vec![owner_reference(set)],
                    ..Default::default()
                }),
                data: Some(template.clone()),
                revision: next,
            };
            let rev = Revision {
                name,
                template: template.clone(),
                number: next,
            };
            // An existing revision of that name has this template: use it as it is.
            match all.iter().find(|r| rev_name(r) == rev.name) {
                Some(existing) => (to_revision(existing), None, None),
                None => (rev, Some(obj), None),
            }
        }
    };
    let current = owned
        .iter()
        .find(|r| !status.current_revision.is_empty() && rev_name(r) == status.current_revision)
        .map(|r| to_revision(r))
        .filter(|r| r.name != update.name)
        .unwrap_or_else(|| update.clone());
    History {
        current,
        update,
        collision_count,
        create,
        renumber,
    }
}

/// The revisions to delete so that at most `limit` revisions no pod, and neither the
/// current nor the update revision, uses are kept (oldest go first).
pub fn trim(
    set: &StatefulSet,
    all: &[ControllerRevision],
    live: &BTreeSet<&str>,
    limit: i32,
) -> Vec<String> {
    let history: Vec<&ControllerRevision> = owned(set, all)
        .into_iter()
        .filter(|r| !live.contains(rev_name(r)))
        .collect();
    let excess = history.len().saturating_sub(limit.max(0) as usize);
    history
        .iter()
        .take(excess)
        .map(|r| rev_name(r).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::{StatefulSetSpec, StatefulSetStatus};

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: [("app".to_string(), image.to_string())].into(),
                ..Default::default()
            }),
            spec: None,
        }
    }

    fn set(image: &str, current: &str) -> StatefulSet {
        StatefulSet {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            metadata: Some(ObjectMeta {
                name: "web".into(),
                namespace: "ns".into(),
                uid: "uid".into(),
                ..Default::default()
            }),
            spec: Some(StatefulSetSpec {
                template: Some(template(image)),
                ..Default::default()
            }),
            status: Some(StatefulSetStatus {
                current_revision: current.into(),
                ..Default::default()
            }),
        }
    }

    /// Stores what resolve() asks for, as the shell would.
    fn store(all: &mut Vec<ControllerRevision>, h: &History) {
        if let Some(c) = &h.create {
            all.push(c.clone());
        }
        if let Some((name, n)) = &h.renumber {
            for r in all.iter_mut() {
                if rev_name(r) == name {
                    r.revision = *n;
                }
            }
        }
    }

    #[test]
    fn first_template_makes_revision_one() {
        let h = resolve(&set("a", ""), &[]);
        let created = h.create.clone().expect("a new revision");
        assert_eq!(created.revision, 1);
        assert!(h.update.name.starts_with("web-") && h.update.name.len() == 14);
        assert_eq!(rev_name(&created), h.update.name);
        assert_eq!(
            h.current, h.update,
            "no history: current is the update revision"
        );
        let m = created.metadata.as_ref().unwrap();
        assert_eq!(m.labels[HASH_LABEL], &h.update.name[4..]);
        assert_eq!(m.owner_references[0].uid, "uid");
        assert_eq!(created.data, Some(template("a")));
    }

    #[test]
    fn unchanged_template_writes_nothing_and_new_template_numbers_up() {
        let mut all = Vec::new();
        let h1 = resolve(&set("a", ""), &all);
        store(&mut all, &h1);
        let again = resolve(&set("a", &h1.update.name), &all);
        assert_eq!(
            (again.create.is_none(), again.renumber.is_none()),
            (true, true)
        );
        assert_eq!(again.update.name, h1.update.name);

        let h2 = resolve(&set("b", &h1.update.name), &all);
        assert_eq!(h2.create.as_ref().unwrap().revision, 2);
        assert_eq!(h2.current.name, h1.update.name, "pods are still on a");
        assert_eq!(h2.current.template, template("a"));
        store(&mut all, &h2);

        // Back to a: revision 1 is renumbered 3, nothing new is made.
        let h3 = resolve(&set("a", &h2.update.name), &all);
        assert!(h3.create.is_none());
        assert_eq!(h3.renumber, Some((h1.update.name.clone(), 3)));
        assert_eq!(
            (h3.update.name.as_str(), h3.update.number),
            (h1.update.name.as_str(), 3)
        );
        assert_eq!(h3.current.name, h2.update.name);
    }

    #[test]
    fn hash_collisions_are_salted() {
        let h = resolve(&set("a", ""), &[]);
        // Someone else's revision holds our name with another template.
        let mut squatter = h.create.clone().unwrap();
        squatter.data = Some(template("zzz"));
        squatter.metadata.as_mut().unwrap().owner_references.clear();
        let h2 = resolve(&set("a", ""), &[squatter]);
        assert_eq!(h2.collision_count, 1);
        assert_ne!(h2.update.name, h.update.name);
        assert!(h2.create.is_some());
    }

    #[test]
    fn trim_keeps_live_and_the_newest_history() {
        let mut all = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for (i, img) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            let cur = names.last().cloned().unwrap_or_default();
            let h = resolve(&set(img, &cur), &all);
            assert_eq!(h.update.number, i as i64 + 1);
            store(&mut all, &h);
            names.push(h.update.name.clone());
        }
        // Live: e (update/current) and b (a pod still runs it); history: a, c, d.
        let live: BTreeSet<&str> = [names[4].as_str(), names[1].as_str()].into();
        let s = set("e", &names[4]);
        assert_eq!(
            trim(&s, &all, &live, 1),
            vec![names[0].clone(), names[2].clone()]
        );
        assert_eq!(trim(&s, &all, &live, 10), Vec::<String>::new());
        assert_eq!(trim(&s, &all, &live, 0).len(), 3);
    }
}
