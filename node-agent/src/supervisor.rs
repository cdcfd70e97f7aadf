//! The set of pods this agent runs: one worker task per pod uid, fed the latest
//! assignment for its pod. It also owns what an earlier agent left behind (recorded
//! pods): a recorded pod that is still assigned is adopted by its new worker; one
//! that the first snapshot no longer lists is stopped and cleaned up through the pod
//! worker's own termination path ([`crate::pod::stop`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use twinset_proto::v1::Pod;

use crate::pod::{self, is_deleting, Desired, Shared};
use crate::state::PodRecord;
use crate::volumes::{self, ClaimKey};

struct Worker {
    desired: watch::Sender<Desired>,
}

/// Owns the pod workers.
pub struct Supervisor {
    ctx: Arc<Shared>,
    tracker: TaskTracker,
    workers: HashMap<String, Worker>,
    /// Pods whose deletion finished here; later updates for them are ignored.
    finished: HashSet<String>,
    /// Pods recorded by an earlier agent and not yet claimed by an assignment.
    orphans: HashMap<String, PodRecord>,
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata
        .as_ref()
        .map(|m| m.uid.clone())
        .unwrap_or_default()
}

impl Supervisor {
    /// A supervisor whose workers run on `tracker`, with the pods an earlier agent
    /// recorded.
    pub fn new(ctx: Arc<Shared>, tracker: TaskTracker, recorded: Vec<PodRecord>) -> Self {
        let orphans = recorded.into_iter().map(|r| (r.uid.clone(), r)).collect();
        Supervisor {
            ctx,
            tracker,
            workers: HashMap::new(),
            finished: HashSet::new(),
            orphans,
        }
    }

    /// Forgets workers that have ended.
    fn prune(&mut self) {
        let finished = &mut self.finished;
        self.workers.retain(|uid, w| {
            if !w.desired.is_closed() {
                return true;
            }
            if let Desired::Run(p) = &*w.desired.borrow() {
                if is_deleting(p) {
                    finished.insert(uid.clone());
                }
            }
            false
        });
    }

    /// Number of pods with a live worker.
    pub fn len(&mut self) -> usize {
        self.prune();
        self.workers.len()
    }

    /// Whether no pod has a live worker.
    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// A full snapshot of the pods bound to this node: start the new ones, stop the
    /// ones no longer listed, and clean up recorded pods that are not listed.
    pub fn snapshot(&mut self, pods: Vec<Pod>) {
        self.prune();
        let uids: HashSet<String> = pods.iter().map(uid_of).collect();
        for (uid, w) in &self.workers {
            if !uids.contains(uid) {
                w.desired.send_replace(Desired::Gone);
            }
        }
        self.finished.retain(|u| uids.contains(u));
        self.forget_fences(&uids);
        for p in pods {
            self.upsert(p);
        }
        let stale: Vec<String> = self
            .orphans
            .keys()
            .filter(|u| !uids.contains(*u))
            .cloned()
            .collect();
        for uid in stale {
            if let Some(rec) = self.orphans.remove(&uid) {
                self.stop_orphan(rec);
            }
        }
    }

    /// A pod was added or changed.
    pub fn upsert(&mut self, pod: Pod) {
        self.prune();
        let uid = uid_of(&pod);
        if uid.is_empty() {
            tracing::warn!("ignoring an assigned pod without a uid");
            return;
        }
        if self.finished.contains(&uid) {
            return;
        }
        if let Some(w) = self.workers.get(&uid) {
            w.desired.send_replace(Desired::Run(Box::new(pod)));
            return;
        }
        let adopt = self.orphans.remove(&uid);
        // Held from now on, so a claim deletion cannot race the worker's first start.
        let claims = self.ctx.claims.acquire(volumes::pod_claims(&pod));
        let (tx, rx) = watch::channel(Desired::Run(Box::new(pod.clone())));
        self.tracker
            .spawn(pod::run(Arc::clone(&self.ctx), pod, adopt, rx, claims));
        self.workers.insert(uid, Worker { desired: tx });
    }

    /// A pod is no longer assigned here (deleted, or moved): stop it.
    pub fn remove(&mut self, pod: &Pod) {
        self.prune();
        let uid = uid_of(pod);
        self.finished.remove(&uid);
        if let Some(w) = self.workers.get(&uid) {
            w.desired.send_replace(Desired::Gone);
        }
        if let Some(rec) = self.orphans.remove(&uid) {
            self.stop_orphan(rec);
        }
    }

    /// These claims were deleted: their folders go (once no pod here uses them).
    pub fn claims_deleted(&mut self, claims: impl IntoIterator<Item = ClaimKey>) {
        for k in claims {
            self.ctx.claims.delete(&k);
        }
    }

    /// `bound` is every claim bound to this node and `lost` those it was lost with: the
    /// folders of `lost` are set aside, those of all others go. The claims of the pods
    /// this agent runs are kept whatever the lists say (only an explicit deletion
    /// removes a claim in use; a lost one is set aside once its pod is gone).
    pub fn claims_bound(&mut self, bound: BTreeSet<ClaimKey>, lost: BTreeSet<ClaimKey>) {
        self.prune();
        let mut keep = bound;
        for w in self.workers.values() {
            if let Desired::Run(p) = &*w.desired.borrow() {
                keep.extend(volumes::pod_claims(p));
            }
        }
        keep.retain(|k| !lost.contains(k));
        self.ctx.claims.retain(&keep, &lost);
    }

    /// This node was lost with these claims bound to it: their folders are set aside
    /// (once no pod here uses them).
    pub fn claims_lost(&mut self, lost: impl IntoIterator<Item = ClaimKey>) {
        for k in lost {
            self.ctx.claims.lost(&k);
        }
    }

    /// Drops the fence records (process lists, marks) of pods that are neither listed
    /// nor run or left here: an agent that died between a pod's end and forgetting it
    /// would otherwise leave them for good. Orphans forget theirs once stopped.
    fn forget_fences(&self, listed: &HashSet<String>) {
        for uid in self.ctx.fence.known() {
            let here = listed.contains(&uid)
                || self.workers.contains_key(&uid)
                || self.orphans.contains_key(&uid);
            if !here {
                tracing::info!(uid, "forgetting the fence record of a pod no longer here");
                self.ctx.fence.forget(&uid);
            }
        }
    }

    /// Stops a pod recorded by an earlier agent and no longer assigned, through the
    /// pod worker's own termination path, and removes what it left.
    fn stop_orphan(&self, rec: PodRecord) {
        self.tracker
            .spawn(pod::stop::stop_orphan(Arc::clone(&self.ctx), rec));
    }
}
