//! A background watcher of every pod event (gRPC `Cluster.Watch`), so a test can
//! assert on the order of changes in the store: which pod was created before which
//! became Ready, which deletion started after which pod was gone, and that no two
//! live pods ever shared a name.
//!
//! The watcher lists pods first and watches from the list's revision, so it misses
//! nothing; every event keeps its store revision, which orders events exactly (wall
//! clock times are kept only for messages).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use twinset_proto::v1::cluster_client::ClusterClient;
use twinset_proto::v1::{self, object};

/// The parts of a pod the ordering checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodState {
    /// metadata.namespace
    pub namespace: String,
    /// metadata.name
    pub name: String,
    /// metadata.uid
    pub uid: String,
    /// spec.nodeName ("" while unscheduled)
    pub node: String,
    /// status.phase
    pub phase: String,
    /// Ready condition True.
    pub ready: bool,
    /// metadata.deletionTimestamp is set.
    pub terminating: bool,
}

impl PodState {
    /// Reads a pod.
    pub fn of(pod: &v1::Pod) -> PodState {
        let meta = pod.metadata.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        PodState {
            namespace: meta.namespace,
            name: meta.name,
            uid: meta.uid,
            node: pod
                .spec
                .as_ref()
                .map(|s| s.node_name.clone())
                .unwrap_or_default(),
            ready: status
                .conditions
                .iter()
                .any(|c| c.r#type == "Ready" && c.status == "True"),
            phase: status.phase,
            terminating: !meta.deletion_timestamp.is_empty(),
        }
    }

    /// Running, Ready and not being deleted.
    pub fn is_running_ready(&self) -> bool {
        self.phase == "Running" && self.ready && !self.terminating
    }
}

/// One change seen by the watcher.
#[derive(Debug, Clone)]
pub struct PodEvent {
    /// The store revision of the change.
    pub rev: u64,
    /// ADDED, MODIFIED or DELETED.
    pub kind: String,
    /// The pod after the change (before it, for DELETED).
    pub pod: PodState,
    /// When the watcher received it.
    pub at: Instant,
}

impl fmt::Display for PodEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.pod;
        write!(
            f,
            "@{} {} {}/{} uid={} node={} phase={} ready={}{}",
            self.rev,
            self.kind,
            p.namespace,
            p.name,
            short(&p.uid),
            if p.node.is_empty() { "-" } else { &p.node },
            if p.phase.is_empty() { "-" } else { &p.phase },
            p.ready,
            if p.terminating { " terminating" } else { "" }
        )
    }
}

fn short(uid: &str) -> &str {
    &uid[..uid.len().min(8)]
}

#[derive(Default)]
struct Shared {
    initial: Vec<PodState>,
    events: Vec<PodEvent>,
    error: Option<String>,
    /// Watches reopened from the last revision seen (a resuming watcher).
    resumes: usize,
    /// Relists: (last revision seen, the list's revision).
    gaps: Vec<(u64, u64)>,
}

/// See the module docs. Stops (and joins its thread) when dropped.
pub struct PodWatch {
    shared: Arc<Mutex<Shared>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl PodWatch {
    /// Lists every pod of the cluster at `server` and starts watching from there;
    /// returns once the watch is open.
    pub fn start(target: &crate::Target) -> PodWatch {
        PodWatch::start_with(target, false)
    }

    /// As [`PodWatch::start`], but a broken stream (the control plane restarted) is
    /// opened again from the last revision seen, or, when the control plane no longer
    /// has the changes since, by a relist recorded as a gap ([`PodWatch::gaps`]). The
    /// watcher fails ([`PodWatch::healthy`]) only when it finds no stream for a minute.
    pub fn start_resuming(target: &crate::Target) -> PodWatch {
        PodWatch::start_with(target, true)
    }

    fn start_with(target: &crate::Target, resume: bool) -> PodWatch {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let target = target.clone();
        let sh = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("tokio runtime: {e}")));
                    return;
                }
            };
            rt.block_on(follow(target, sh, ready_tx, stop_rx, resume));
        });
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("pod watcher: {e}"),
            Err(_) => panic!("pod watcher: the watch did not open within 30s"),
        }
        PodWatch {
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Every event so far, in revision order.
    pub fn events(&self) -> Vec<PodEvent> {
        self.shared
            .lock()
            .map(|s| s.events.clone())
            .unwrap_or_default()
    }

    /// Events so far for pods of `namespace` whose name starts with `prefix`.
    pub fn events_of(&self, namespace: &str, prefix: &str) -> Vec<PodEvent> {
        self.events()
            .into_iter()
            .filter(|e| e.pod.namespace == namespace && e.pod.name.starts_with(prefix))
            .collect()
    }

    /// How many times the stream was opened again from the last revision seen.
    pub fn resumes(&self) -> usize {
        self.shared.lock().map(|s| s.resumes).unwrap_or_default()
    }

    /// The relists of a resuming watcher: (last revision seen, the list's revision);
    /// changes inside such a gap were not seen, only their result.
    pub fn gaps(&self) -> Vec<(u64, u64)> {
        self.shared
            .lock()
            .map(|s| s.gaps.clone())
            .unwrap_or_default()
    }

    /// The pods that existed when the watcher started.
    pub fn initial(&self) -> Vec<PodState> {
        self.shared
            .lock()
            .map(|s| s.initial.clone())
            .unwrap_or_default()
    }

    /// `Err` when the watch stream failed or ended.
    pub fn healthy(&self) -> Result<(), String> {
        match self.shared.lock().map(|s| s.error.clone()) {
            Ok(None) => Ok(()),
            Ok(Some(e)) => Err(e),
            Err(_) => Err("watcher state poisoned".into()),
        }
    }

    /// Checks the whole history: the stream is still healthy and no pod was ever added
    /// while another pod (another uid) of the same namespace and name still existed.
    #[track_caller]
    pub fn assert_identities_unique(&self) {
        if let Err(e) = self.healthy() {
            panic!("pod watcher: {e}");
        }
        if let Err(e) = identities_unique(&self.initial(), &self.events()) {
            panic!("{e}");
        }
    }

    /// Panics unless the pods `<set>-<k>` for each k of `created` were added after
    /// revision `since`, and [`check_ordered_creation`] holds for everything seen.
    #[track_caller]
    pub fn assert_ordered_creation(
        &self,
        namespace: &str,
        set: &str,
        start: i64,
        since: u64,
        created: &[i64],
    ) {
        let names: Vec<String> = created.iter().map(|k| format!("{set}-{k}")).collect();
        let events = self.wait_seen(namespace, set, "ADDED", &names, since);
        if let Err(e) =
            check_ordered_creation(&self.initial(), &events, namespace, set, start, since)
        {
            panic!("OrderedReady creation violated: {e}");
        }
    }

    /// Panics unless [`check_ordered_removal`] holds for everything seen so far.
    #[track_caller]
    pub fn assert_ordered_removal(&self, namespace: &str, set: &str, removed: &[i64], since: u64) {
        let names: Vec<String> = removed.iter().map(|k| format!("{set}-{k}")).collect();
        let events = self.wait_seen(namespace, set, "DELETED", &names, since);
        if let Err(e) = check_ordered_removal(&events, namespace, set, removed, since) {
            panic!("OrderedReady scale-down violated: {e}");
        }
    }

    /// Waits until the watcher has received a `kind` event (after revision `since`) for
    /// each pod of `names` in `namespace`, and returns every event so far. The store may
    /// show a change to a `get` a moment before the watch stream delivers it; the stream
    /// is in revision order, so once these arrived every earlier change has too.
    #[track_caller]
    pub fn wait_seen(
        &self,
        namespace: &str,
        set: &str,
        kind: &str,
        names: &[String],
        since: u64,
    ) -> Vec<PodEvent> {
        let found = crate::wait::try_wait_for(crate::wait::timeout(), || {
            self.healthy()?;
            let events = self.events();
            let missing: Vec<&String> = names
                .iter()
                .filter(|n| {
                    !events.iter().any(|e| {
                        e.rev > since
                            && e.kind == kind
                            && e.pod.namespace == namespace
                            && &e.pod.name == *n
                    })
                })
                .collect();
            if missing.is_empty() {
                Ok(events)
            } else {
                Err(format!("missing {missing:?}"))
            }
        });
        match found {
            Ok(events) => events,
            Err(state) => panic!(
                "timed out waiting for the pod watcher to see {kind} for {names:?} after revision {since}: {state}; history:\n{}",
                history(&self.events(), namespace, set)
            ),
        }
    }

    /// The event history as text (one line each), for failure messages.
    pub fn dump(&self, namespace: &str, prefix: &str) -> String {
        self.events_of(namespace, prefix)
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Lists every pod: the pods and the list's revision.
async fn list_pods(
    client: &mut ClusterClient<tonic::transport::Channel>,
) -> Result<(Vec<PodState>, String), String> {
    let list = client
        .list(v1::ListRequest {
            kind: "Pod".into(),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("List pods: {e}"))?
        .into_inner();
    let pods = list
        .items
        .iter()
        .filter_map(|o| match &o.kind {
            Some(object::Kind::Pod(p)) => Some(PodState::of(p)),
            _ => None,
        })
        .collect();
    Ok((pods, list.resource_version))
}

/// Opens a pod watch from revision `rev`.
async fn watch_from(
    client: &mut ClusterClient<tonic::transport::Channel>,
    rev: &str,
) -> Result<tonic::Streaming<v1::WatchEvent>, tonic::Status> {
    Ok(client
        .watch(v1::WatchRequest {
            kind: "Pod".into(),
            resource_version: rev.to_string(),
            ..Default::default()
        })
        .await?
        .into_inner())
}

/// How long a resuming watcher may go without a stream before it gives up.
const RESUME_LIMIT: Duration = Duration::from_secs(60);

async fn follow(
    target: crate::Target,
    shared: Arc<Mutex<Shared>>,
    ready: mpsc::Sender<Result<(), String>>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    resume: bool,
) {
    let opened = async {
        let mut client = target.cluster().await?;
        let (initial, rev) = list_pods(&mut client).await?;
        let stream = watch_from(&mut client, &rev)
            .await
            .map_err(|e| format!("Watch pods from {rev}: {e}"))?;
        Ok::<_, String>((initial, rev, stream))
    };
    let (mut stream, mut last_rev) = match opened.await {
        Ok((initial, rev, stream)) => {
            if let Ok(mut s) = shared.lock() {
                s.initial = initial;
            }
            let _ = ready.send(Ok(()));
            (stream, rev.parse::<u64>().unwrap_or(0))
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    loop {
        let failure = tokio::select! {
            _ = &mut stop => return,
            msg = stream.message() => match msg {
                Ok(Some(ev)) => {
                    if let Some(rev) = record(&shared, ev) {
                        last_rev = last_rev.max(rev);
                    }
                    continue;
                }
                Ok(None) => "the watch stream ended".to_string(),
                Err(status) => format!("the watch stream failed: {status}"),
            },
        };
        if !resume {
            if let Ok(mut s) = shared.lock() {
                s.error = Some(failure);
            }
            return;
        }
        tokio::select! {
            _ = &mut stop => return,
            again = reopen(&target, &shared, last_rev, &failure) => match again {
                Ok((s, rev)) => {
                    stream = s;
                    last_rev = rev;
                }
                Err(e) => {
                    if let Ok(mut s) = shared.lock() {
                        s.error = Some(e);
                    }
                    return;
                }
            },
        }
    }
}

/// Opens the watch again after `failure`: from `last_rev` when the control plane still
/// has the changes since, else by a relist whose differences from what was seen are
/// recorded as `RELIST-DELETED` / `RELIST-ADDED` events (a gap: what happened inside it
/// was not seen). Gives up after [`RESUME_LIMIT`] without a stream.
async fn reopen(
    target: &crate::Target,
    shared: &Mutex<Shared>,
    last_rev: u64,
    failure: &str,
) -> Result<(tonic::Streaming<v1::WatchEvent>, u64), String> {
    let start = Instant::now();
    let mut last_err = failure.to_string();
    while start.elapsed() < RESUME_LIMIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut client = match target.cluster().await {
            Ok(c) => c,
            Err(e) => {
                last_err = e;
                continue;
            }
        };
        match watch_from(&mut client, &last_rev.to_string()).await {
            Ok(stream) => {
                if let Ok(mut s) = shared.lock() {
                    s.resumes += 1;
                }
                return Ok((stream, last_rev));
            }
            Err(status) if status.message().contains("too old") => {}
            Err(status) => {
                last_err = format!("Watch pods from {last_rev}: {status}");
                continue;
            }
        }
        let (pods, rev) = match list_pods(&mut client).await {
            Ok(l) => l,
            Err(e) => {
                last_err = e;
                continue;
            }
        };
        let stream = match watch_from(&mut client, &rev).await {
            Ok(s) => s,
            Err(status) => {
                last_err = format!("Watch pods from {rev}: {status}");
                continue;
            }
        };
        let rev_n = rev
            .parse::<u64>()
            .map_err(|e| format!("List pods: revision {rev:?}: {e}"))?;
        if rev_n < last_rev {
            return Err(format!(
                "the store went back: revision {last_rev} was seen, a relist after \"{failure}\" is at {rev_n}"
            ));
        }
        if let Ok(mut s) = shared.lock() {
            let gap = relist_events(&s.initial, &s.events, &pods, rev_n);
            s.gaps.push((last_rev, rev_n));
            s.events.extend(gap);
        }
        return Ok((stream, rev_n));
    }
    Err(format!(
        "lost track of the pods: no watch for {RESUME_LIMIT:?} after \"{failure}\" (last: {last_err})"
    ))
}

/// The synthetic events that bring what `initial` + `events` say is live to the relisted
/// `pods` (at revision `rev`): `RELIST-DELETED` for each pod gone or replaced by another
/// uid, then `RELIST-ADDED` for each pod new or changed.
pub fn relist_events(
    initial: &[PodState],
    events: &[PodEvent],
    pods: &[PodState],
    rev: u64,
) -> Vec<PodEvent> {
    let mut live = live_of(initial);
    for e in events {
        apply(&mut live, e);
    }
    let now: BTreeMap<(String, String), &PodState> = pods
        .iter()
        .map(|p| ((p.namespace.clone(), p.name.clone()), p))
        .collect();
    let at = Instant::now();
    let mut out = Vec::new();
    for (key, old) in &live {
        if now.get(key).is_none_or(|p| p.uid != old.uid) {
            out.push(PodEvent {
                rev,
                kind: "RELIST-DELETED".into(),
                pod: old.clone(),
                at,
            });
        }
    }
    for (key, p) in &now {
        if live.get(key) != Some(*p) {
            out.push(PodEvent {
                rev,
                kind: "RELIST-ADDED".into(),
                pod: (*p).clone(),
                at,
            });
        }
    }
    out
}

/// A real deletion or one a relist found.
fn is_deletion(kind: &str) -> bool {
    kind == "DELETED" || kind == "RELIST-DELETED"
}

/// Keeps one watch event; returns its revision (None: not a pod).
fn record(shared: &Mutex<Shared>, ev: v1::WatchEvent) -> Option<u64> {
    let Some(object::Kind::Pod(pod)) = ev.object.as_ref().and_then(|o| o.kind.as_ref()) else {
        return None;
    };
    let rev = ev.resource_version.parse::<u64>().unwrap_or_else(|_| {
        pod.metadata
            .as_ref()
            .and_then(|m| m.resource_version.parse().ok())
            .unwrap_or(0)
    });
    let e = PodEvent {
        rev,
        kind: ev.r#type,
        pod: PodState::of(pod),
        at: Instant::now(),
    };
    if let Ok(mut s) = shared.lock() {
        s.events.push(e);
    }
    Some(rev)
}

/// The pods present after each event: replays `events` over `initial` and calls `f`
/// with each event and the state just BEFORE it was applied (name → pod).
pub fn replay(initial: &[PodState], events: &[PodEvent], mut f: impl FnMut(&PodEvent, &Live)) {
    let mut live = live_of(initial);
    for e in events {
        f(e, &live);
        apply(&mut live, e);
    }
}

type Live = BTreeMap<(String, String), PodState>;

fn live_of(initial: &[PodState]) -> Live {
    initial
        .iter()
        .map(|p| ((p.namespace.clone(), p.name.clone()), p.clone()))
        .collect()
}

/// Applies one event to the live pods: a deletion removes the pod if it is that uid.
fn apply(live: &mut Live, e: &PodEvent) {
    let key = (e.pod.namespace.clone(), e.pod.name.clone());
    if is_deletion(&e.kind) {
        if live.get(&key).is_some_and(|p| p.uid == e.pod.uid) {
            live.remove(&key);
        }
    } else {
        live.insert(key, e.pod.clone());
    }
}

/// `Err` describing the first moment two pods of one name existed together.
pub fn identities_unique(initial: &[PodState], events: &[PodEvent]) -> Result<(), String> {
    let mut err = None;
    replay(initial, events, |e, live| {
        if err.is_some() || is_deletion(&e.kind) {
            return;
        }
        let key = (e.pod.namespace.clone(), e.pod.name.clone());
        if let Some(other) = live.get(&key) {
            if other.uid != e.pod.uid {
                err = Some(format!(
                    "two live pods named {}/{}: {e} arrived while uid {} ({}{}) still existed",
                    e.pod.namespace,
                    e.pod.name,
                    short(&other.uid),
                    other.phase,
                    if other.terminating {
                        ", terminating"
                    } else {
                        ""
                    }
                ));
            }
        }
    });
    err.map_or(Ok(()), Err)
}

/// The revision of the first event matching `pred`.
pub fn first_rev(events: &[PodEvent], pred: impl Fn(&PodEvent) -> bool) -> Option<u64> {
    events.iter().find(|e| pred(e)).map(|e| e.rev)
}

/// The ordinal of pod `name` of set `set` (`<set>-<ordinal>`), if it is one.
pub fn ordinal(set: &str, name: &str) -> Option<i64> {
    name.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

/// OrderedReady creation: every time a pod `<set>-<k>` of `namespace` was added (after
/// revision `since`), each pod `<set>-<j>` with `start <= j < k` existed and was
/// Running+Ready. `Err` names the first violation and shows the history.
pub fn check_ordered_creation(
    initial: &[PodState],
    events: &[PodEvent],
    namespace: &str,
    set: &str,
    start: i64,
    since: u64,
) -> Result<(), String> {
    let mut err = None;
    replay(initial, events, |e, live| {
        if err.is_some() || e.rev <= since || e.kind != "ADDED" || e.pod.namespace != namespace {
            return;
        }
        let Some(k) = ordinal(set, &e.pod.name) else {
            return;
        };
        for j in start..k {
            let name = format!("{set}-{j}");
            match live.get(&(namespace.to_string(), name.clone())) {
                Some(p) if p.is_running_ready() => {}
                Some(p) => {
                    err = Some(format!(
                        "{e} was created while {name} was not Running+Ready (phase {} ready {}{})",
                        p.phase,
                        p.ready,
                        if p.terminating { ", terminating" } else { "" }
                    ))
                }
                None => err = Some(format!("{e} was created while {name} did not exist")),
            }
            if err.is_some() {
                return;
            }
        }
    });
    err.map_or(Ok(()), |e| {
        Err(format!(
            "{e}\nhistory:\n{}",
            history(events, namespace, set)
        ))
    })
}

/// OrderedReady scale-down: after revision `since`, the pods `<set>-<k>` for each k of
/// `removed` (highest first) were deleted one after the other: the deletion of each
/// (its first event with a deletionTimestamp, or its DELETED event) came only after the
/// one before it in `removed` was fully gone (DELETED).
pub fn check_ordered_removal(
    events: &[PodEvent],
    namespace: &str,
    set: &str,
    removed: &[i64],
    since: u64,
) -> Result<(), String> {
    let evs: Vec<&PodEvent> = events
        .iter()
        .filter(|e| e.rev > since && e.pod.namespace == namespace)
        .collect();
    let started = |name: &str| {
        evs.iter()
            .find(|e| e.pod.name == name && (e.pod.terminating || e.kind == "DELETED"))
            .map(|e| e.rev)
    };
    let gone = |name: &str| {
        evs.iter()
            .find(|e| e.pod.name == name && e.kind == "DELETED")
            .map(|e| e.rev)
    };
    let fail = |msg: String| {
        Err(format!(
            "{msg}\nhistory:\n{}",
            history(events, namespace, set)
        ))
    };
    for k in removed {
        let name = format!("{set}-{k}");
        if gone(&name).is_none() {
            return fail(format!("{name} was never deleted after revision {since}"));
        }
    }
    for pair in removed.windows(2) {
        let (hi, lo) = (format!("{set}-{}", pair[0]), format!("{set}-{}", pair[1]));
        let (Some(hi_gone), Some(lo_started)) = (gone(&hi), started(&lo)) else {
            continue;
        };
        if lo_started < hi_gone {
            return fail(format!(
                "{lo} began terminating at revision {lo_started}, before {hi} was gone (revision {hi_gone})"
            ));
        }
    }
    Ok(())
}

/// One line per event of the set's pods, for failure messages.
pub fn history(events: &[PodEvent], namespace: &str, set: &str) -> String {
    events
        .iter()
        .filter(|e| e.pod.namespace == namespace && ordinal(set, &e.pod.name).is_some())
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(rev: u64, kind: &str, name: &str, uid: &str) -> PodEvent {
        PodEvent {
            rev,
            kind: kind.into(),
            pod: PodState {
                namespace: "ns".into(),
                name: name.into(),
                uid: uid.into(),
                node: String::new(),
                phase: "Pending".into(),
                ready: false,
                terminating: false,
            },
            at: Instant::now(),
        }
    }

    fn ready(mut e: PodEvent) -> PodEvent {
        e.pod.phase = "Running".into();
        e.pod.ready = true;
        e
    }

    #[test]
    fn ordered_creation_and_removal() {
        let good = [
            ev(1, "ADDED", "s-0", "a"),
            ready(ev(2, "MODIFIED", "s-0", "a")),
            ev(3, "ADDED", "s-1", "b"),
            ready(ev(4, "MODIFIED", "s-1", "b")),
        ];
        assert!(check_ordered_creation(&[], &good, "ns", "s", 0, 0).is_ok());
        let early = [ev(1, "ADDED", "s-0", "a"), ev(2, "ADDED", "s-1", "b")];
        assert!(check_ordered_creation(&[], &early, "ns", "s", 0, 0).is_err());

        let mut t1 = ev(5, "MODIFIED", "s-1", "b");
        t1.pod.terminating = true;
        let mut t0 = ev(7, "MODIFIED", "s-0", "a");
        t0.pod.terminating = true;
        let removal = [
            t1.clone(),
            ev(6, "DELETED", "s-1", "b"),
            t0.clone(),
            ev(8, "DELETED", "s-0", "a"),
        ];
        assert!(check_ordered_removal(&removal, "ns", "s", &[1, 0], 4).is_ok());
        let mut t0_early = t0;
        t0_early.rev = 5;
        t1.rev = 4;
        let overlap = [
            t1,
            t0_early,
            ev(6, "DELETED", "s-1", "b"),
            ev(8, "DELETED", "s-0", "a"),
        ];
        assert!(check_ordered_removal(&overlap, "ns", "s", &[1, 0], 3).is_err());
        assert_eq!(ordinal("s", "s-12"), Some(12));
        assert_eq!(ordinal("s", "sx-1"), None);
    }

    #[test]
    fn a_relist_records_what_changed_in_the_gap() {
        let seen = [ev(1, "ADDED", "a-0", "u1"), ev(2, "ADDED", "a-1", "u2")];
        let mut kept = ev(0, "", "a-1", "u2").pod;
        kept.phase = "Running".into();
        let now = [ev(0, "", "a-0", "u3").pod, kept, ev(0, "", "a-2", "u4").pod];
        let gap = relist_events(&[], &seen, &now, 9);
        let lines: Vec<(String, String, String)> = gap
            .iter()
            .map(|e| (e.kind.clone(), e.pod.name.clone(), e.pod.uid.clone()))
            .collect();
        let l = |k: &str, n: &str, u: &str| (k.to_string(), n.to_string(), u.to_string());
        assert_eq!(
            lines,
            [
                l("RELIST-DELETED", "a-0", "u1"),
                l("RELIST-ADDED", "a-0", "u3"),
                l("RELIST-ADDED", "a-1", "u2"),
                l("RELIST-ADDED", "a-2", "u4"),
            ]
        );
        let all: Vec<PodEvent> = seen.iter().cloned().chain(gap).collect();
        assert!(identities_unique(&[], &all).is_ok());
    }

    #[test]
    fn a_replacement_after_deletion_is_fine_but_an_overlap_is_not() {
        let ok = [
            ev(1, "ADDED", "a-0", "u1"),
            ev(2, "DELETED", "a-0", "u1"),
            ev(3, "ADDED", "a-0", "u2"),
        ];
        assert!(identities_unique(&[], &ok).is_ok());
        let bad = [
            ev(1, "ADDED", "a-0", "u1"),
            ev(2, "ADDED", "a-0", "u2"),
            ev(3, "DELETED", "a-0", "u1"),
        ];
        assert!(identities_unique(&[], &bad).is_err());
    }
}
