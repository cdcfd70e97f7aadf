//! A pod network for the pod worker's unit tests: bridge mode with nothing on the
//! kernel's side; remembers what is attached, and can be told to fail.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use futures::future::BoxFuture;
use twinset_proto::Cidr;

use super::{
    Attached, Mode, NetworkError, NodeBridge, NodeRange, PodAttach, PodNetwork, RouteChanges,
};

/// The fake bridge network.
#[derive(Default)]
pub struct FakeNetwork {
    attached: Mutex<BTreeMap<String, PodAttach>>,
    fail_attach: Mutex<Option<String>>,
}

impl FakeNetwork {
    /// What is attached now, by pod uid.
    pub fn attached_now(&self) -> BTreeMap<String, PodAttach> {
        self.attached.lock().unwrap().clone()
    }

    /// Every attach from now on fails with `message`.
    pub fn fail_attach(&self, message: &str) {
        *self.fail_attach.lock().unwrap() = Some(message.to_string());
    }

    /// Attaches succeed again.
    pub fn heal(&self) {
        *self.fail_attach.lock().unwrap() = None;
    }

    /// The namespace pin of pod `uid`.
    pub fn netns(uid: &str) -> PathBuf {
        PathBuf::from("/fake/netns").join(uid)
    }
}

impl PodNetwork for FakeNetwork {
    fn mode(&self) -> Mode {
        Mode::Bridge
    }
    fn attach(&self, pod: &PodAttach) -> BoxFuture<'_, Result<Option<Attached>, NetworkError>> {
        let pod = pod.clone();
        Box::pin(async move {
            if let Some(m) = self.fail_attach.lock().unwrap().clone() {
                return Err(NetworkError::Netlink {
                    what: format!("add veth for pod {}", pod.uid),
                    message: m,
                });
            }
            let netns = Self::netns(&pod.uid);
            self.attached.lock().unwrap().insert(pod.uid.clone(), pod);
            Ok(Some(Attached {
                netns,
                host_veth: "tvfake".into(),
            }))
        })
    }
    fn detach(&self, uid: &str) -> BoxFuture<'_, Result<(), NetworkError>> {
        self.attached.lock().unwrap().remove(uid);
        Box::pin(async { Ok(()) })
    }
    fn attached(&self) -> BoxFuture<'_, Result<Vec<String>, NetworkError>> {
        let uids = self.attached.lock().unwrap().keys().cloned().collect();
        Box::pin(async move { Ok(uids) })
    }
    fn prepare_node(&self, _bridge: &NodeBridge) -> BoxFuture<'_, Result<(), NetworkError>> {
        Box::pin(async { Ok(()) })
    }
    fn sync_routes(
        &self,
        _ranges: &[NodeRange],
        _cluster: Option<Cidr>,
    ) -> BoxFuture<'_, Result<RouteChanges, NetworkError>> {
        Box::pin(async { Ok(RouteChanges::default()) })
    }
}
