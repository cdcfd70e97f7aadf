//! Bounds on concurrent Watch streams, per connection, per user and in all, so that one
//! client cannot hold the control plane's memory and tasks with streams it opens and never
//! reads, nor take every slot by opening many connections with one certificate. A stream takes a slot for as long as it lives; over a bound the call fails with
//! RESOURCE_EXHAUSTED and a message that names the bound.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tonic::Status;

/// Watch streams one connection may hold at once (kube-apiserver's default number of
/// HTTP/2 streams per connection).
pub const DEFAULT_PER_CONNECTION: usize = 1000;
/// Watch streams one user (the name in its client certificate) may hold at once, over all
/// its connections. kube-apiserver has no exact equivalent: this stands in for its API
/// priority and fairness per user, so that one identity cannot take every slot of the total.
pub const DEFAULT_PER_USER: usize = 5000;
/// Watch streams the control plane holds at once.
pub const DEFAULT_TOTAL: usize = 10_000;

/// The slots of every live Watch stream.
#[derive(Debug)]
pub struct WatchSlots {
    per_connection: usize,
    per_user: usize,
    total: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    by_peer: HashMap<Option<SocketAddr>, usize>,
    by_user: HashMap<String, usize>,
    total: usize,
}

/// One live stream's slot; given back when dropped.
#[derive(Debug)]
pub struct WatchSlot {
    slots: Arc<WatchSlots>,
    peer: Option<SocketAddr>,
    user: String,
}

impl WatchSlots {
    /// Slots for at most `per_connection` streams per peer address, `per_user` per user
    /// (over all its connections) and `total` in all.
    pub fn new(per_connection: usize, per_user: usize, total: usize) -> Arc<WatchSlots> {
        Arc::new(WatchSlots {
            per_connection,
            per_user,
            total,
            held: Mutex::new(Held::default()),
        })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        // Counts stay consistent through a panic elsewhere (each change is one step).
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new stream from `peer` (a connection's remote address) for `user` (the
    /// caller's name from its verified certificate, `Identity::user`), or the refusal when
    /// a bound is reached.
    pub fn acquire(
        self: &Arc<Self>,
        peer: Option<SocketAddr>,
        user: &str,
    ) -> Result<WatchSlot, Status> {
        let mut held = self.held();
        if held.total >= self.total {
            return Err(Status::resource_exhausted(format!(
                "too many watches: the control plane serves at most {} at once",
                self.total
            )));
        }
        if held.by_user.get(user).copied().unwrap_or(0) >= self.per_user {
            return Err(Status::resource_exhausted(format!(
                "too many watches for user {user:?}: at most {} at once",
                self.per_user
            )));
        }
        if held.by_peer.get(&peer).copied().unwrap_or(0) >= self.per_connection {
            return Err(Status::resource_exhausted(format!(
                "too many watches on this connection: at most {} at once",
                self.per_connection
            )));
        }
        *held.by_peer.entry(peer).or_insert(0) += 1;
        *held.by_user.entry(user.to_owned()).or_insert(0) += 1;
        held.total += 1;
        Ok(WatchSlot {
            slots: self.clone(),
            peer,
            user: user.to_owned(),
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
        if let Some(n) = held.by_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                held.by_user.remove(&self.user);
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
        let slots = WatchSlots::new(2, 10, 3);
        let a1 = slots.acquire(peer(1), "admin").unwrap();
        let _a2 = slots.acquire(peer(1), "admin").unwrap();
        let e = slots.acquire(peer(1), "admin").unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            e.message(),
            "too many watches on this connection: at most 2 at once"
        );
        let _b1 = slots.acquire(peer(2), "admin").unwrap();
        let e = slots.acquire(peer(3), "system:node:node1").unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            e.message(),
            "too many watches: the control plane serves at most 3 at once"
        );
        // A stream that ends gives its slot back.
        drop(a1);
        assert_eq!(slots.in_use(), 2);
        assert!(slots.acquire(peer(1), "admin").is_ok());
        assert_eq!(
            slots.in_use(),
            2,
            "the slot taken above went back when dropped"
        );
    }

    #[test]
    fn each_user_has_a_bound_over_all_its_connections() {
        let slots = WatchSlots::new(10, 3, 100);
        // One user over three connections.
        let a1 = slots.acquire(peer(1), "admin").unwrap();
        let _a2 = slots.acquire(peer(1), "admin").unwrap();
        let _a3 = slots.acquire(peer(2), "admin").unwrap();
        let e = slots.acquire(peer(3), "admin").unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            e.message(),
            "too many watches for user \"admin\": at most 3 at once"
        );
        // Another user is not held back by the first, not even on the same connection.
        let n1 = slots.acquire(peer(1), "system:node:node1").unwrap();
        assert_eq!(slots.in_use(), 4);
        // A refusal takes nothing.
        let e = slots.acquire(peer(1), "admin").unwrap_err();
        assert_eq!(
            e.message(),
            "too many watches for user \"admin\": at most 3 at once"
        );
        assert_eq!(slots.in_use(), 4);
        // A stream that ends gives its user's slot back, on any connection.
        drop(a1);
        let _a4 = slots.acquire(peer(4), "admin").unwrap();
        drop(n1);
        assert_eq!(slots.in_use(), 3);
    }

    #[test]
    fn every_slot_goes_back_when_its_streams_end() {
        let slots = WatchSlots::new(2, 2, 2);
        let taken: Vec<_> = [(1, "admin"), (2, "system:node:node1")]
            .into_iter()
            .map(|(p, u)| slots.acquire(peer(p), u).unwrap())
            .collect();
        assert!(slots.acquire(peer(3), "admin").is_err());
        drop(taken);
        assert_eq!(slots.in_use(), 0);
        {
            let held = slots.held();
            assert!(held.by_peer.is_empty(), "{:?}", held.by_peer);
            assert!(held.by_user.is_empty(), "{:?}", held.by_user);
        }
        // Every bound is whole again: one user on one connection may take them all.
        let _again: Vec<_> = (0..2)
            .map(|_| slots.acquire(peer(1), "admin").unwrap())
            .collect();
        assert_eq!(slots.in_use(), 2);
    }
}
