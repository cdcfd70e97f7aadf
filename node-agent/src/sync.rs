//! The agent's conversation with the control plane: registration (retried until it
//! succeeds), heartbeats, and the one `WatchAssignments` stream, reconnected with a
//! capped exponential backoff and resumed from the last applied revision (a fresh
//! snapshot when the control plane no longer has that revision). While the control
//! plane is away, pods keep running. Whether the assignments are in sync ([`SyncState`])
//! goes out with every heartbeat, so a node that cannot sync shows NotReady saying why.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::connection::Client;
use crate::network::ClusterRanges;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};
use twinset_proto::v1;

use crate::supervisor::Supervisor;
use crate::volumes::ClaimKey;

/// A capped exponential backoff.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `min`, doubles up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The delay to wait now.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Back to the shortest delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Waits `d` unless `shutdown` comes first; returns false on shutdown.
async fn pause(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Registers the node, retrying while the control plane is unreachable; `Ok(None)`
/// on shutdown. A refusal (invalid node, permission) is returned as the error.
pub async fn register(
    client: &mut Client,
    node: v1::Node,
    shutdown: &CancellationToken,
) -> Result<Option<v1::Node>, tonic::Status> {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(3));
    let mut attempts = 0u32;
    loop {
        let req = v1::RegisterRequest {
            node: Some(node.clone()),
        };
        let res = tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            r = client.register(req) => r,
        };
        match res {
            Ok(resp) => return Ok(Some(resp.into_inner().node.unwrap_or(node))),
            Err(s)
                if matches!(
                    s.code(),
                    Code::InvalidArgument
                        | Code::PermissionDenied
                        | Code::Unauthenticated
                        | Code::AlreadyExists
                ) =>
            {
                return Err(s);
            }
            Err(s) => {
                attempts += 1;
                if attempts == 1 || attempts.is_multiple_of(20) {
                    tracing::warn!(status = %s, "cannot register with the control plane; retrying");
                }
            }
        }
        if !pause(backoff.next_delay(), shutdown).await {
            return Ok(None);
        }
    }
}

/// How long a resumed stream must stay open without failing to count as in sync: a
/// resumed stream sends nothing until something changes, and a change it cannot deliver
/// (over the receive limit) breaks it within moments of opening.
pub const RESUMED_SETTLE: Duration = Duration::from_secs(1);

/// What the agent knows about its assignments being in sync with the control plane.
/// They are in sync once a whole snapshot or a change has been applied from the current
/// stream, or once a resumed stream has stayed open for [`RESUMED_SETTLE`]; out of sync
/// from the first failure after that (its time kept across reconnects that fail again,
/// restarted while heartbeats fail too) with the latest failure's text. Decisions take
/// `now`; nothing here reads a clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncState {
    /// Since when and why the assignments are out of sync; None while in sync.
    broken: Option<(Instant, String)>,
    /// When the current stream opened, while it is open.
    open_since: Option<Instant>,
}

impl SyncState {
    /// Out of sync since `now`: nothing has been received yet.
    pub fn new(now: Instant) -> SyncState {
        SyncState {
            broken: Some((now, "no snapshot of its assignments received yet".into())),
            open_since: None,
        }
    }

    /// A stream opened at `now`.
    pub fn opened(&mut self, now: Instant) {
        self.open_since = Some(now);
    }

    /// A whole snapshot or a change was applied: in sync.
    pub fn applied(&mut self) {
        self.broken = None;
    }

    /// The stream failed (or could not open) at `now` with `error`.
    pub fn failed(&mut self, now: Instant, error: String) {
        self.open_since = None;
        let since = match &self.broken {
            Some((since, _)) => *since,
            None => now,
        };
        self.broken = Some((since, error));
    }

    /// A heartbeat failed at `now`: the control plane is away, which the node shows as
    /// Unknown, so time out of sync counts again from when it answers (a stream that
    /// resumes soon after an outage never shows as NotReady).
    pub fn unreachable(&mut self, now: Instant) {
        if let Some((since, _)) = &mut self.broken {
            *since = now;
        }
    }

    /// What the heartbeat reports at `now`: the error, once the assignments have been out
    /// of sync for longer than `grace` (so a reconnect that succeeds soon never shows),
    /// and None while in sync or within the grace.
    pub fn not_synced(&self, now: Instant, grace: Duration) -> Option<String> {
        let (since, error) = self.broken.as_ref()?;
        let resumed = self
            .open_since
            .is_some_and(|t| now.saturating_duration_since(t) >= RESUMED_SETTLE.min(grace));
        (!resumed && now.saturating_duration_since(*since) > grace).then(|| error.clone())
    }
}

/// The [`SyncState`] shared by the assignment stream (which moves it) and the heartbeats
/// (which report it).
#[derive(Clone, Debug)]
pub struct SyncHealth(Arc<Mutex<SyncState>>);

impl SyncHealth {
    /// Out of sync since now (nothing received yet).
    pub fn new() -> SyncHealth {
        SyncHealth(Arc::new(Mutex::new(SyncState::new(Instant::now()))))
    }

    fn with<T>(&self, f: impl FnOnce(&mut SyncState) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// See [`SyncState::not_synced`], now.
    pub fn not_synced(&self, grace: Duration) -> Option<String> {
        self.with(|s| s.not_synced(Instant::now(), grace))
    }
}

impl Default for SyncHealth {
    fn default() -> Self {
        SyncHealth::new()
    }
}

/// How tonic's framing words a message over the receive limit.
const OVERSIZE: &str = "Error, decoded message length too large";

/// True when the stream broke because a message was over the agent's receive limit.
/// Resuming would replay that same message, so the agent asks for a fresh snapshot
/// (sent in parts) instead, which no longer holds a pod deleted meanwhile.
pub fn is_over_receive_limit(s: &Status) -> bool {
    s.code() == Code::OutOfRange && s.message().starts_with(OVERSIZE)
}

/// The text a failed assignment stream is reported with (the node's NotReady message).
pub fn sync_error(s: &Status) -> String {
    if is_over_receive_limit(s) {
        // ": found N bytes, the limit is: M bytes"
        let numbers: Vec<&str> = s.message()[OVERSIZE.len()..]
            .split(|c: char| !c.is_ascii_digit())
            .filter(|w| !w.is_empty())
            .collect();
        if let [found, limit] = numbers[..] {
            return format!(
                "an assignment of {found} bytes is over the agent's receive limit of {limit} bytes"
            );
        }
    }
    if s.message().is_empty() {
        format!("the assignment stream failed: {:?}", s.code())
    } else {
        format!(
            "the assignment stream failed: {:?}: {}",
            s.code(),
            s.message()
        )
    }
}

/// What the heartbeats keep: the fence's lease (renewed by each acknowledged
/// heartbeat) and its watchdog (started again if it ever stops).
pub struct Lease {
    /// The fence.
    pub fence: Arc<crate::fence::Fence>,
    /// The watchdog program, when there is one.
    pub watchdog: Option<std::path::PathBuf>,
    /// The agent's data dir.
    pub data_dir: std::path::PathBuf,
    /// The claims' folders: those set aside are told in the next heartbeat.
    pub claims: Arc<crate::volumes::Claims>,
}

/// Heartbeats every `every` until shutdown, each saying whether the assignments are in
/// sync (out of sync for longer than `sync_grace`: the error; see [`SyncState`]). Each
/// acknowledged heartbeat renews the fence lease from its send time.
#[allow(clippy::too_many_arguments)]
pub async fn heartbeats(
    mut client: Client,
    node_name: String,
    every: Duration,
    sync: SyncHealth,
    sync_grace: Duration,
    ranges: tokio::sync::watch::Sender<Option<Arc<ClusterRanges>>>,
    lease: Lease,
    shutdown: CancellationToken,
) {
    // The version of the pod ranges held, sent back so an unchanged list is left out.
    let mut ranges_version = String::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let call_timeout = every.max(Duration::from_secs(1)) * 3;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let kept = lease
            .claims
            .take_kept(twinset_proto::fencing::MAX_KEPT_PER_HEARTBEAT);
        let req = v1::HeartbeatRequest {
            node_name: node_name.clone(),
            assignments_not_synced: sync.not_synced(sync_grace).unwrap_or_default(),
            pod_ranges_version: ranges_version.clone(),
            kept_aside: kept
                .iter()
                .map(|k| v1::KeptVolume {
                    namespace: k.claim.namespace.clone(),
                    claim: k.claim.name.clone(),
                    path: k
                        .path
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                })
                .collect(),
        };
        let sent = Instant::now();
        let res = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(call_timeout, client.heartbeat(req)) => r,
        };
        if matches!(res, Ok(Ok(_))) {
            lease.fence.renew(sent);
        } else {
            lease.claims.untold(kept);
        }
        if let Some(program) = &lease.watchdog {
            lease.fence.ensure_watchdog(program, &lease.data_dir);
        }
        if !matches!(res, Ok(Ok(_))) {
            sync.with(|s| s.unreachable(Instant::now()));
        }
        match res {
            Ok(Ok(reply)) => {
                let reply = reply.into_inner();
                if let Some(fresh) = ClusterRanges::from_response(&reply) {
                    ranges_version = reply.pod_ranges_version;
                    let fresh = Arc::new(fresh);
                    ranges.send_if_modified(|held| {
                        if held.as_ref() == Some(&fresh) {
                            return false;
                        }
                        *held = Some(fresh);
                        true
                    });
                }
                if failing {
                    tracing::info!("heartbeats reach the control plane again");
                }
                failing = false;
            }
            Ok(Err(s)) if !failing => {
                failing = true;
                if s.code() == Code::NotFound {
                    tracing::warn!(
                        "the control plane does not know this node (deleted?); not re-registering"
                    );
                } else {
                    tracing::warn!(status = %s, "heartbeat failed");
                }
            }
            Err(_) if !failing => {
                failing = true;
                tracing::warn!("heartbeat timed out");
            }
            _ => {}
        }
    }
}

/// Joins the parts of a SNAPSHOT (each but the last has `more` set) into one assignment;
/// every other message passes through. A stream that breaks mid-snapshot starts a new
/// one, so the parts never outlive their stream.
#[derive(Debug, Default)]
pub struct SnapshotParts {
    pods: Vec<v1::Pod>,
}

impl SnapshotParts {
    /// The assignment to apply now, or None while a snapshot's parts are still arriving.
    pub fn take(&mut self, mut a: v1::Assignment) -> Option<v1::Assignment> {
        if a.r#type != "SNAPSHOT" {
            return Some(a);
        }
        self.pods.append(&mut a.pods);
        if a.more {
            return None;
        }
        a.pods = std::mem::take(&mut self.pods);
        Some(a)
    }
}

/// True when the control plane ended the stream because the revision asked for is older
/// than its history (relist), as opposed to any other out-of-range failure such as a
/// message over a size limit, which a fresh snapshot would not cure.
pub fn is_too_old(s: &Status) -> bool {
    s.code() == Code::OutOfRange && s.message().starts_with("too old resource version")
}

/// Applies one assignment message to the supervisor.
pub fn apply(supervisor: &mut Supervisor, a: v1::Assignment) {
    match a.r#type.as_str() {
        "SNAPSHOT" => supervisor.snapshot(a.pods),
        "ADDED" | "MODIFIED" => {
            for p in a.pods {
                supervisor.upsert(p);
            }
        }
        "DELETED" => {
            for p in &a.pods {
                supervisor.remove(p);
            }
        }
        other => {
            if !apply_claims(supervisor, other, &a.claims, &a.lost_claims) {
                tracing::warn!(kind = other, "ignoring an assignment of unknown type");
            }
        }
    }
}

/// What a claim assignment asks of the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimAction {
    /// Every claim bound to this node, and those it was lost with: set the folders of
    /// the lost ones aside, remove those of all others.
    Retain(BTreeSet<ClaimKey>, BTreeSet<ClaimKey>),
    /// These claims were deleted: remove their folders.
    Delete(Vec<ClaimKey>),
    /// This node was lost with these claims bound to it: set their folders aside.
    Lost(Vec<ClaimKey>),
    /// Nothing to do (with why, for the log).
    Ignore(String),
}

/// Reads the claim part of an assignment, each claim written `namespace/name`:
/// - `CLAIMS`: `claims` is every claim bound to this node (sent after each SNAPSHOT);
/// - `CLAIM_DELETED`: `claims` were deleted;
/// - `CLAIM_LOST`: `claims` were bound here when this node was lost (`lost` is the same
///   list of a `CLAIMS` message).
///
/// A `CLAIMS` list with a malformed entry is ignored as a whole, so that a bad entry
/// can never make the agent delete data; other types give None.
pub fn claim_action(kind: &str, claims: &[String], lost: &[String]) -> Option<ClaimAction> {
    let parse = |list: &[String]| -> (Vec<ClaimKey>, Vec<String>) {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for c in list {
            match ClaimKey::parse(c) {
                Some(k) => good.push(k),
                None => bad.push(c.clone()),
            }
        }
        (good, bad)
    };
    let (good, bad) = parse(claims);
    let (lost, bad_lost) = parse(lost);
    match kind {
        "CLAIMS" if !bad.is_empty() || !bad_lost.is_empty() => Some(ClaimAction::Ignore(format!(
            "malformed claim names {:?} (want namespace/name); keeping every claim folder",
            [bad, bad_lost].concat()
        ))),
        "CLAIMS" => Some(ClaimAction::Retain(
            good.into_iter().collect(),
            lost.into_iter().collect(),
        )),
        "CLAIM_DELETED" | "CLAIM_LOST" => {
            if !bad.is_empty() {
                tracing::warn!(?bad, "ignoring malformed claim names (want namespace/name)");
            }
            Some(if kind == "CLAIM_LOST" {
                ClaimAction::Lost(good)
            } else {
                ClaimAction::Delete(good)
            })
        }
        _ => None,
    }
}

/// Applies a CLAIMS, CLAIM_DELETED or CLAIM_LOST assignment (see [`claim_action`]). A
/// folder is only removed or set aside once no pod on this node uses it. Returns
/// whether `kind` was a claim assignment.
pub fn apply_claims(
    supervisor: &mut Supervisor,
    kind: &str,
    claims: &[String],
    lost: &[String],
) -> bool {
    match claim_action(kind, claims, lost) {
        None => false,
        Some(ClaimAction::Retain(bound, lost)) => {
            supervisor.claims_bound(bound, lost);
            true
        }
        Some(ClaimAction::Lost(lost)) => {
            supervisor.claims_lost(lost);
            true
        }
        Some(ClaimAction::Delete(gone)) => {
            supervisor.claims_deleted(gone);
            true
        }
        Some(ClaimAction::Ignore(why)) => {
            tracing::warn!(kind, "ignoring a claim assignment: {why}");
            true
        }
    }
}

/// Keeps one WatchAssignments stream open until shutdown and feeds the supervisor,
/// recording in `sync` whether the assignments are in sync.
pub async fn watch_assignments(
    mut client: Client,
    node_name: String,
    supervisor: &mut Supervisor,
    sync: SyncHealth,
    shutdown: CancellationToken,
) {
    let mut revision = String::new();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(3));
    let mut failures = 0u32;
    loop {
        let req = v1::WatchAssignmentsRequest {
            node_name: node_name.clone(),
            resource_version: revision.clone(),
        };
        let opened = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = client.watch_assignments(req) => r,
        };
        match opened {
            Ok(resp) => {
                let span = tracing::info_span!("assignments", node = %node_name);
                let _enter = span.enter();
                tracing::info!(from = %revision, "watching assignments");
                drop(_enter);
                sync.with(|s| s.opened(Instant::now()));
                let mut stream = resp.into_inner();
                let mut parts = SnapshotParts::default();
                loop {
                    let msg = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        m = stream.message() => m,
                    };
                    match msg {
                        Ok(Some(a)) => {
                            backoff.reset();
                            failures = 0;
                            // The revision moves only once a whole snapshot is here, so
                            // a stream that breaks mid-snapshot resumes with a new one.
                            let Some(a) = parts.take(a) else {
                                continue;
                            };
                            if !a.resource_version.is_empty() {
                                revision = a.resource_version.clone();
                            }
                            tracing::debug!(kind = %a.r#type, pods = a.pods.len(), revision = %revision, "assignment");
                            apply(supervisor, a);
                            sync.with(SyncState::applied);
                        }
                        Ok(None) => {
                            tracing::info!("assignment stream closed by the control plane");
                            sync.with(|st| {
                                st.failed(
                                    Instant::now(),
                                    "the control plane closed the assignment stream".into(),
                                )
                            });
                            break;
                        }
                        Err(s) => {
                            if is_too_old(&s) {
                                tracing::info!(
                                    "revision {revision} too old; asking for a fresh snapshot"
                                );
                                revision.clear();
                            } else if is_over_receive_limit(&s) {
                                tracing::warn!(status = %s, "an assignment is over the receive limit; asking for a fresh snapshot");
                                revision.clear();
                            } else {
                                tracing::warn!(status = %s, "assignment stream broke; reconnecting");
                            }
                            sync.with(|st| st.failed(Instant::now(), sync_error(&s)));
                            break;
                        }
                    }
                }
            }
            Err(s) => {
                sync.with(|st| st.failed(Instant::now(), sync_error(&s)));
                if is_too_old(&s) {
                    revision.clear();
                    continue;
                }
                failures += 1;
                if failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(status = %s, "cannot watch assignments; retrying (pods keep running)");
                }
            }
        }
        if !pause(backoff.next_delay(), &shutdown).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(kind: &str, pods: &[&str], more: bool) -> v1::Assignment {
        v1::Assignment {
            r#type: kind.into(),
            pods: pods
                .iter()
                .map(|n| v1::Pod {
                    metadata: Some(v1::ObjectMeta {
                        name: (*n).into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            resource_version: "7".into(),
            claims: Vec::new(),
            more,
            lost_claims: Vec::new(),
        }
    }

    fn names(a: &v1::Assignment) -> Vec<&str> {
        a.pods
            .iter()
            .map(|p| p.metadata.as_ref().map_or("", |m| m.name.as_str()))
            .collect()
    }

    #[test]
    fn snapshot_parts_are_joined_before_they_apply() {
        let mut parts = SnapshotParts::default();
        assert!(parts.take(part("SNAPSHOT", &["a", "b"], true)).is_none());
        assert!(parts.take(part("SNAPSHOT", &["c"], true)).is_none());
        let whole = parts.take(part("SNAPSHOT", &["d"], false)).unwrap();
        assert_eq!(names(&whole), ["a", "b", "c", "d"]);
        // The next snapshot starts empty; changes pass through untouched.
        let next = parts.take(part("SNAPSHOT", &[], false)).unwrap();
        assert!(next.pods.is_empty());
        let change = parts.take(part("MODIFIED", &["x"], false)).unwrap();
        assert_eq!(names(&change), ["x"]);
    }

    #[test]
    fn only_the_history_running_out_is_too_old() {
        assert!(is_too_old(&Status::out_of_range(
            "too old resource version: 3 (oldest available is 9, current is 12); relist and watch again"
        )));
        assert!(!is_too_old(&Status::out_of_range(
            "Error, decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes"
        )));
        assert!(!is_too_old(&Status::unavailable(
            "too old resource version"
        )));
    }

    #[test]
    fn claim_assignments() {
        let k = |s: &str| ClaimKey::parse(s).unwrap();
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            claim_action(
                "CLAIMS",
                &list(&["database/data-0", "web/cache"]),
                &list(&["database/data-1"])
            ),
            Some(ClaimAction::Retain(
                [k("database/data-0"), k("web/cache")].into_iter().collect(),
                [k("database/data-1")].into_iter().collect()
            ))
        );
        assert_eq!(
            claim_action("CLAIMS", &[], &[]),
            Some(ClaimAction::Retain(BTreeSet::new(), BTreeSet::new())),
            "an explicit empty list means no claim is bound here"
        );
        assert!(matches!(
            claim_action("CLAIMS", &list(&["database/data-0", "no-namespace"]), &[]),
            Some(ClaimAction::Ignore(_))
        ));
        assert!(
            matches!(
                claim_action("CLAIMS", &list(&["database/data-0"]), &list(&["bad"])),
                Some(ClaimAction::Ignore(_))
            ),
            "a malformed lost claim must not make its folder look unlisted (deleted)"
        );
        assert_eq!(
            claim_action("CLAIM_DELETED", &list(&["database/data-1", "../x"]), &[]),
            Some(ClaimAction::Delete(vec![k("database/data-1")]))
        );
        assert_eq!(
            claim_action("CLAIM_LOST", &list(&["database/data-1"]), &[]),
            Some(ClaimAction::Lost(vec![k("database/data-1")]))
        );
        assert_eq!(claim_action("SNAPSHOT", &[], &[]), None);
    }

    #[test]
    fn sync_is_reported_only_once_it_has_failed_for_longer_than_the_grace() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let grace = Duration::from_secs(10);
        let mut st = SyncState::new(t0);
        assert_eq!(st.not_synced(at(5), grace), None, "within the grace");
        assert_eq!(
            st.not_synced(at(11), grace).as_deref(),
            Some("no snapshot of its assignments received yet")
        );
        st.opened(at(11));
        st.applied();
        assert_eq!(st.not_synced(at(12), grace), None);

        // A break that heals within the grace never shows.
        st.failed(at(20), "Unavailable: connection refused".into());
        assert_eq!(st.not_synced(at(25), grace), None);
        st.opened(at(26));
        st.applied();
        assert_eq!(st.not_synced(at(40), grace), None);

        // A stream that keeps breaking right after it opens: out of sync since the first
        // failure, with the latest error.
        st.failed(at(50), "first".into());
        for s in [51, 53, 57, 60] {
            st.opened(at(s));
            st.failed(at(s), format!("over the limit at {s}"));
        }
        assert_eq!(
            st.not_synced(at(61), grace).as_deref(),
            Some("over the limit at 60")
        );
        // A resumed stream that stays quiet and open counts as in sync once settled.
        st.opened(at(62));
        assert!(st.not_synced(at(62), grace).is_some());
        assert_eq!(st.not_synced(at(63), grace), None);
        // Then a change is applied: in sync for good.
        st.applied();
        assert_eq!(st.not_synced(at(100), grace), None);

        // The control plane goes away for longer than the grace (heartbeats fail too):
        // out of sync counts from its return, so a prompt resume never shows.
        st.failed(at(200), "Unavailable: connection refused".into());
        for s in 201..=230 {
            st.unreachable(at(s));
        }
        st.failed(at(231), "Unavailable: connection refused".into());
        assert_eq!(st.not_synced(at(233), grace), None);
        st.opened(at(233));
        assert_eq!(st.not_synced(at(235), grace), None);
        // But a sync that keeps failing while heartbeats get through does show.
        st.failed(at(236), "still failing".into());
        assert_eq!(
            st.not_synced(at(241), grace).as_deref(),
            Some("still failing")
        );
    }

    #[test]
    fn receive_limit_errors_are_told_apart_and_said_plainly() {
        let over = Status::out_of_range(
            "Error, decoded message length too large: found 300123 bytes, the limit is: 65536 bytes",
        );
        assert!(is_over_receive_limit(&over) && !is_too_old(&over));
        assert_eq!(
            sync_error(&over),
            "an assignment of 300123 bytes is over the agent's receive limit of 65536 bytes"
        );
        let gone = Status::unavailable("connection refused");
        assert!(!is_over_receive_limit(&gone));
        assert_eq!(
            sync_error(&gone),
            "the assignment stream failed: Unavailable: connection refused"
        );
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let seen: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(seen, [100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
