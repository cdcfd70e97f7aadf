//! Bounds on concurrent Watch streams, per connection and in all, so that one client
//! cannot hold the control plane's memory and tasks with streams it opens and never
//! reads. A stream takes a slot for as long as it lives; over a bound the call fails with
//! RESOURCE_EXHAUSTED and a message that names the bound.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tonic::Status;

/// Watch streams one connection may hold at once (kube-apiserver's default number of
/// HTTP/2 streams per connection).
pub const DEFAULT_PER_CONNECTION: usize = 1000;
/// Watch streams the control plane holds at once.
pub const DEFAULT_TOTAL: usize = 10_000;

/// The slots of every live Watch stream.
#[derive(Debug)]
pub struct WatchSlots {
    per_connection: usize,
    total: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    by_peer: HashMap<Option<SocketAddr>, usize>,
    total: usize,
}

/// One live stream's slot; given back when dropped.
#[derive(Debug)]
pub struct WatchSlot {
    slots: Arc<WatchSlots>,
    peer: Option<SocketAddr>,
}

impl WatchSlots {
    /// Slots for at most `per_connection` streams per peer address and `total` in all.
    pub fn new(per_connection: usize, total: usize) -> Arc<WatchSlots> {
        Arc::new(WatchSlots {
            per_connection,
            total,
            held: Mutex::new(Held::default()),
        })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        // Counts stay consistent through a panic elsewhere (each change is one step).
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new stream from `peer` (a connection's remote address), or the
    /// refusal when a bound is reached.
    pub fn acquire(self: &Arc<Self>, peer: Option<SocketAddr>) -> Result<WatchSlot, Status> {
        let mut held = self.held();
        if held.total >= self.total {
            return Err(Status::resource_exhausted(format!(
                "too many watches: the control plane serves at most {} at once",
                self.total
            )));
        }
        let mine = held.by_peer.entry(peer).or_insert(0);
        if *mine >= self.per_connection {
            return Err(Status::resource_exhausted(format!(
                "too many watches on this connection: at most {} at once",
                self.per_connection
            )));
        }
        *mine += 1;
        held.total += 1;
        Ok(WatchSlot {
            slots: self.clone(),
            peer,
        })
    }

    /// Live streams in all.
    pub fn in_use(&self) -> usize {
        self.held().total
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut held = self.slots.held();
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                held.by_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn each_connection_and_the_whole_have_a_bound() {
        let slots = WatchSlots::new(2, 3);
        let a1 = slots.acquire(peer(1)).unwrap();
        let _a2 = slots.acquire(peer(1)).unwrap();
        let e = slots.acquire(peer(1)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            e.message(),
            "too many watches on this connection: at most 2 at once"
        );
        let _b1 = slots.acquire(peer(2)).unwrap();
        let e = slots.acquire(peer(3)).unwrap_err();
        assert_eq!(
            e.message(),
            "too many watches: the control plane serves at most 3 at once"
        );
        // A stream that ends gives its slot back.
        drop(a1);
        assert_eq!(slots.in_use(), 2);
        assert!(slots.acquire(peer(1)).is_ok());
        assert_eq!(
            slots.in_use(),
            2,
            "the slot taken above went back when dropped"
        );
    }
}
