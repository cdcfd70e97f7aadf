//! Revision history, shared by both workload controllers: each distinct pod template of
//! a set is a ControllerRevision `<set>-<hash>` with a number. The newest template is the
//! update revision; the one the set last finished rolling out is the current revision
//! (a StatefulSet's status.currentRevision; a DaemonSet keeps none, so its current is its
//! update revision). Going back to an older template renumbers that revision instead of
//! making a new one; old revisions no pod uses are trimmed to revisionHistoryLimit.
//! Revisions a deleted set of the same name left behind (no controller, the set's
//! selector matches them) are adopted. Pure functions, as Kubernetes'
//! getStatefulSetRevisions, constructHistory and truncateHistory.

use crate::controllers::revision::template_hash;
use std::collections::BTreeSet;
use twinset_proto::selector::label_selector_matches;
use twinset_proto::v1::{
    ControllerRevision, LabelSelector, ObjectMeta, OwnerReference, PodTemplateSpec,
};

/// The label a StatefulSet's revision carries with its template hash.
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// A set as its history sees it.
#[derive(Clone, Debug)]
pub struct Owner<'a> {
    /// The set's metadata (name, namespace, uid).
    pub meta: &'a ObjectMeta,
    /// The controller reference its revisions carry.
    pub reference: OwnerReference,
    /// Its pod template now.
    pub template: &'a PodTemplateSpec,
    /// Its selector: orphaned revisions it matches are adopted.
    pub selector: &'a LabelSelector,
    /// The revision it last finished rolling out ("" when it keeps none).
    pub current_revision: &'a str,
    /// status.collisionCount.
    pub collision_count: i32,
    /// The label revisions carry their hash in.
    pub hash_label: &'static str,
}

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

impl Revision {
    /// The hash part of the name (a DaemonSet pod's controller-revision-hash label).
    pub fn hash<'a>(&'a self, set: &str) -> &'a str {
        self.name
            .strip_prefix(set)
            .and_then(|h| h.strip_prefix('-'))
            .unwrap_or(&self.name)
    }
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
    /// Orphaned revisions to adopt (a deleted set of the same name left them).
    pub adopt: Vec<String>,
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

/// Whether `r` has no controller but looks like one of `owner`'s: named `<set>-…` and
/// matched by its selector (an empty selector matches nothing here).
fn adoptable(owner: &Owner<'_>, r: &ControllerRevision) -> bool {
    let Some(m) = r.metadata.as_ref() else {
        return false;
    };
    m.controller().is_none()
        && m.deletion_timestamp.is_empty()
        && m.name
            .strip_prefix(owner.meta.name.as_str())
            .is_some_and(|rest| rest.starts_with('-'))
        && (!owner.selector.match_labels.is_empty() || !owner.selector.match_expressions.is_empty())
        && label_selector_matches(owner.selector, &m.labels)
}

/// The revisions the set controls or adopts, oldest number first (ties by name).
pub fn owned<'a>(owner: &Owner<'_>, all: &'a [ControllerRevision]) -> Vec<&'a ControllerRevision> {
    let uid = owner.meta.uid.as_str();
    let mut out: Vec<&ControllerRevision> = all
        .iter()
        .filter(|r| {
            r.metadata
                .as_ref()
                .and_then(|m| m.controller())
                .is_some_and(|c| c.uid == uid)
                || adoptable(owner, r)
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
pub fn resolve(owner: &Owner<'_>, all: &[ControllerRevision]) -> History {
    let m = owner.meta;
    let template = owner.template;
    let mut collision_count = owner.collision_count;
    let owned = owned(owner, all);
    let adopt: Vec<String> = owned
        .iter()
        .filter(|r| adoptable(owner, r))
        .map(|r| rev_name(r).to_string())
        .collect();
    let next = owned.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
    let equal = owned
        .iter()
        .rev()
        .find(|r| r.data.as_ref() == Some(template));
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
            let mut hash = template_hash(Some(template), collision_count);
            while all.iter().any(|r| {
                rev_name(r) == format!("{}-{hash}", m.name) && r.data.as_ref() != Some(template)
            }) {
                collision_count += 1;
                hash = template_hash(Some(template), collision_count);
            }
            let name = format!("{}-{hash}", m.name);
            let mut labels = template
                .metadata
                .as_ref()
                .map(|t| t.labels.clone())
                .unwrap_or_default();
            labels.insert(owner.hash_label.into(), hash);
            let obj = ControllerRevision {
                api_version: "apps/v1".into(),
                kind: "ControllerRevision".into(),
                metadata: Some(ObjectMeta {
                    name: name.clone(),
                    namespace: m.namespace.clone(),
                    labels,
                    // As upstream's newRevision: the set's annotations, so a
                    // `kubernetes.io/change-cause` shows in `rollout history`.
                    annotations: m.annotations.clone(),
                    owner_references: vec![owner.reference.clone()],
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
        .find(|r| !owner.current_revision.is_empty() && rev_name(r) == owner.current_revision)
        .map(|r| to_revision(r))
        .filter(|r| r.name != update.name)
        .unwrap_or_else(|| update.clone());
    History {
        current,
        update,
        collision_count,
        create,
        renumber,
        adopt,
    }
}

/// The revisions to delete so that at most `limit` revisions no pod, and neither the
/// current nor the update revision, uses are kept (oldest go first).
pub fn trim(
    owner: &Owner<'_>,
    all: &[ControllerRevision],
    live: &BTreeSet<&str>,
    limit: i32,
) -> Vec<String> {
    let history: Vec<&ControllerRevision> = owned(owner, all)
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
    use crate::controllers::statefulset::identity::history_owner;
    use twinset_proto::v1::{StatefulSet, StatefulSetSpec, StatefulSetStatus};

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
                selector: Some(LabelSelector {
                    match_labels: [("app".to_string(), image.to_string())].into(),
                    ..Default::default()
                }),
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
        let mut web = set("a", "");
        if let Some(m) = web.metadata.as_mut() {
            m.annotations
                .insert("kubernetes.io/change-cause".into(), "first".into());
        }
        let h = resolve(&history_owner(&web), &[]);
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
        assert_eq!(m.annotations["kubernetes.io/change-cause"], "first");
        assert_eq!(created.data, Some(template("a")));
    }

    #[test]
    fn unchanged_template_writes_nothing_and_new_template_numbers_up() {
        let mut all = Vec::new();
        let h1 = resolve(&history_owner(&set("a", "")), &all);
        store(&mut all, &h1);
        let again = resolve(&history_owner(&set("a", &h1.update.name)), &all);
        assert_eq!(
            (again.create.is_none(), again.renumber.is_none()),
            (true, true)
        );
        assert_eq!(again.update.name, h1.update.name);

        let h2 = resolve(&history_owner(&set("b", &h1.update.name)), &all);
        assert_eq!(h2.create.as_ref().unwrap().revision, 2);
        assert_eq!(h2.current.name, h1.update.name, "pods are still on a");
        assert_eq!(h2.current.template, template("a"));
        store(&mut all, &h2);

        // Back to a: revision 1 is renumbered 3, nothing new is made.
        let h3 = resolve(&history_owner(&set("a", &h2.update.name)), &all);
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
        let h = resolve(&history_owner(&set("a", "")), &[]);
        // Someone else's revision holds our name with another template.
        let mut squatter = h.create.clone().unwrap();
        squatter.data = Some(template("zzz"));
        squatter.metadata.as_mut().unwrap().owner_references.clear();
        let h2 = resolve(&history_owner(&set("a", "")), &[squatter]);
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
            let h = resolve(&history_owner(&set(img, &cur)), &all);
            assert_eq!(h.update.number, i as i64 + 1);
            store(&mut all, &h);
            names.push(h.update.name.clone());
        }
        // Live: e (update/current) and b (a pod still runs it); history: a, c, d.
        let live: BTreeSet<&str> = [names[4].as_str(), names[1].as_str()].into();
        let s = set("e", &names[4]);
        assert_eq!(
            trim(&history_owner(&s), &all, &live, 1),
            vec![names[0].clone(), names[2].clone()]
        );
        assert_eq!(
            trim(&history_owner(&s), &all, &live, 10),
            Vec::<String>::new()
        );
        assert_eq!(trim(&history_owner(&s), &all, &live, 0).len(), 3);
    }

    #[test]
    fn orphans_of_a_set_of_the_same_name_are_adopted_and_numbered_on() {
        let mut all = Vec::new();
        let h1 = resolve(&history_owner(&set("a", "")), &all);
        store(&mut all, &h1);
        // The set was deleted with its dependents orphaned: no controller any more.
        for r in &mut all {
            r.metadata.as_mut().unwrap().owner_references.clear();
        }
        let mut again = set("a", "");
        again.metadata.as_mut().unwrap().uid = "uid-2".into();
        let h = resolve(&history_owner(&again), &all);
        assert_eq!(h.adopt, vec![h1.update.name.clone()]);
        assert!(h.create.is_none(), "the orphan's template is reused");
        assert_eq!(h.update.number, 1);
        // Another set's orphan (another name) or one its selector does not match is left.
        let mut other = h1.create.clone().unwrap();
        other.metadata.as_mut().unwrap().name = "webx-abc".into();
        other.metadata.as_mut().unwrap().owner_references.clear();
        let h = resolve(&history_owner(&set("b", "")), &[all[0].clone(), other]);
        assert!(h.adopt.is_empty(), "{:?}", h.adopt);
        assert_eq!(h.update.number, 1, "a fresh history");
    }
}
