//! Every call the pod worker and the supervisor make into the agent's own stores:
//! pod IPs ([`crate::ipam`]), the pod records a restarted agent adopts from
//! ([`crate::state`]) and the registry of readable logs ([`crate::logs`]). Kept in
//! one place so a change of those stores touches only this file.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::logs::{self, PodLogs};
use crate::state::PodRecord;

/// A pod IP for the pod `uid` (its own, or a new one no socket on the host holds), with
/// the free addresses skipped because something on the host held them.
pub fn allocate_ip(ctx: &Shared, uid: &str) -> Result<(String, Vec<String>), String> {
    let known = match ctx.ipam.lock() {
        Ok(ipam) => ipam.get(uid),
        Err(poisoned) => poisoned.into_inner().get(uid),
    };
    if let Some(ip) = known {
        return Ok((ip.to_string(), Vec::new()));
    }
    // Read outside the lock: the socket tables can be long on a busy host. In bridge
    // mode pod addresses live in the pods' own namespaces, never on the host.
    let held = match ctx.network.mode() {
        crate::network::Mode::Loopback => ctx.runtime.bound_ipv4(),
        crate::network::Mode::Bridge => Default::default(),
    };
    let res = match ctx.ipam.lock() {
        Ok(mut ipam) => ipam.allocate(uid, &held),
        Err(poisoned) => poisoned.into_inner().allocate(uid, &held),
    };
    res.map(|(ip, skipped)| {
        (
            ip.to_string(),
            skipped.iter().map(ToString::to_string).collect(),
        )
    })
    .map_err(|e| e.to_string())
}

/// Gives the pod `uid`'s IP back.
pub fn release_ip(ctx: &Shared, uid: &str) {
    let released = match ctx.ipam.lock() {
        Ok(mut ipam) => ipam.release(uid),
        Err(poisoned) => poisoned.into_inner().release(uid),
    };
    if let Err(e) = released {
        tracing::warn!(error = %e, "cannot release pod IP");
    }
}

/// Records what the pod runs (for adoption by a restarted agent).
pub fn save(ctx: &Shared, record: &PodRecord) {
    if let Err(e) = ctx.state.save(record) {
        tracing::warn!(error = %e, "cannot record pod state");
    }
}

/// Forgets the pod's record.
pub fn forget(ctx: &Shared, uid: &str) {
    if let Err(e) = ctx.state.remove(uid) {
        tracing::warn!(error = %e, "cannot remove pod state");
    }
}

/// The pod's folder (logs, volumes of its own, its /etc files).
pub fn pod_dir(ctx: &Shared, namespace: &str, name: &str, uid: &str) -> PathBuf {
    logs::pod_dir(&ctx.data_dir, namespace, name, uid)
}

/// Makes the pod's logs readable.
pub fn register_logs(
    ctx: &Shared,
    namespace: &str,
    name: &str,
    uid: &str,
    dir: PathBuf,
    containers: Vec<String>,
) {
    ctx.logs.insert(
        namespace,
        name,
        PodLogs {
            uid: uid.to_string(),
            dir,
            containers,
            gone: CancellationToken::new(),
        },
    );
}

/// The pod is gone: its logs are no longer served.
pub fn unregister_logs(ctx: &Shared, namespace: &str, name: &str, uid: &str) {
    ctx.logs.remove(namespace, name, uid);
}

/// Opens the output of a new run of `container` (its log FIFO, drained into rotated
/// files); hold it until the runtime has started the process.
pub fn open_output(ctx: &Shared, dir: &Path, container: &str) -> std::io::Result<logs::Output> {
    ctx.logs.open_output(dir, container)
}

/// Drains an adopted container's output again (its FIFO outlived the earlier agent).
pub fn resume_output(ctx: &Shared, dir: &Path, container: &str) {
    if let Err(e) = ctx.logs.resume_output(dir, container) {
        tracing::warn!(container, error = %e, "cannot drain the adopted container's log");
    }
}
