//! An in-memory [`Store`] for unit tests: the same write rules and watch as the
//! durable engine, without a disk.

use super::state::{Op, State};
use super::{Hub, Keep, Key, Result, Store, Watcher};
use std::sync::Mutex;
use twinset_proto::v1::Object;
use twinset_proto::Kind;

/// A store that lives and dies with the process.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    hub: Hub,
}

impl MemoryStore {
    /// An empty store keeping `history` changes for watches.
    pub fn new(history: usize) -> MemoryStore {
        MemoryStore {
            state: Mutex::new(State::default()),
            hub: Hub::new(history, super::hub::DEFAULT_HISTORY_BYTES, 0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, op: Op) -> Result<Object> {
        let mut state = self.state();
        let p = state.prepare(op, &twinset_proto::time::now())?;
        state.commit(&p);
        let out = p.result();
        // Published under the state lock, so watchers see revisions in order.
        self.hub.publish([p.event]);
        Ok(out)
    }
}

#[tonic::async_trait]
impl Store for MemoryStore {
    fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Object> {
        self.state().get(kind, namespace, name).cloned()
    }

    fn list(&self, kind: Kind, namespace: Option<&str>) -> (Vec<Object>, u64) {
        let state = self.state();
        (state.list(kind, namespace), state.rev())
    }

    fn list_where(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        keep: &dyn Fn(&Object) -> bool,
    ) -> Vec<Object> {
        self.state().list_where(kind, namespace, keep)
    }

    async fn create(&self, object: Object) -> Result<Object> {
        self.write(Op::Create(object))
    }

    async fn update(&self, object: Object, expected_rv: Option<u64>) -> Result<Object> {
        self.write(Op::Update(object, expected_rv))
    }

    async fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        expected_rv: Option<u64>,
    ) -> Result<Object> {
        self.write(Op::Delete(Key::new(kind, namespace, name), expected_rv))
    }

    fn current_revision(&self) -> u64 {
        self.state().rev()
    }

    fn watch_where(&self, from_rev: u64, keep: Option<Keep>) -> Result<Watcher> {
        let state = self.state();
        self.hub.watch(from_rev, state.rev(), keep)
    }

    async fn close(&self) {
        self.hub.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    #[tokio::test]
    async fn conformance() {
        testing::conformance(&MemoryStore::new(4)).await;
    }
}
