//! Admission of TCP connections: the bounded pool of connections still in the link stage
//! (oldest evicted first), the slots of linked channels, and rate-limited logging for flood
//! events. See [`crate::session::ConnectionLimits`] for the policy.
//!
//! The pool and the slots are separate, so connections that never authenticate cannot take
//! what linked clients hold, and a new connection is never refused because idle ones fill the
//! pool: the oldest pending connection makes room instead.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::session::ConnectionLimits;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a pending connection was closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Eviction {
    /// The pool was full and a newer connection was accepted.
    PoolFull,
    /// `accept` failed for want of file descriptors.
    NoFds,
}

/// A connection's place in the pending pool: its id and the signal that it was evicted.
#[derive(Debug)]
pub(crate) struct PendingSlot {
    pub id: u64,
    pub evicted: oneshot::Receiver<Eviction>,
}

/// The pending pool and the linked slots of one server.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: ConnectionLimits,
    /// Pending connections by id; ids grow with accept order, so the first is the oldest.
    pending: Mutex<BTreeMap<u64, oneshot::Sender<Eviction>>>,
    next_id: AtomicU64,
    linked: Arc<Semaphore>,
    /// Rate limits of the flood log lines.
    pub logs: FloodLogs,
}

impl Admission {
    pub(crate) fn new(limits: ConnectionLimits) -> Self {
        Admission {
            limits,
            pending: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            linked: Arc::new(Semaphore::new(limits.max_linked)),
            logs: FloodLogs::default(),
        }
    }

    /// The limits in force.
    pub(crate) fn limits(&self) -> &ConnectionLimits {
        &self.limits
    }

    /// Enters a newly accepted connection into the pool. If the pool was full, the oldest
    /// pending connection is told to close; returns whether that happened.
    pub(crate) fn admit(&self) -> (PendingSlot, bool) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut pool = lock(&self.pending);
        let mut evicted = false;
        while pool.len() >= self.limits.max_pending.max(1) {
            let Some((_, oldest)) = pool.pop_first() else {
                break;
            };
            // the receiver may be gone already (its task ended): nothing to close then
            let _ = oldest.send(Eviction::PoolFull);
            evicted = true;
        }
        pool.insert(id, tx);
        (PendingSlot { id, evicted: rx }, evicted)
    }

    /// Tells the oldest pending connection to close (to free its file descriptor). Returns
    /// false when no connection is pending.
    pub(crate) fn evict_oldest(&self, why: Eviction) -> bool {
        match lock(&self.pending).pop_first() {
            Some((_, oldest)) => {
                let _ = oldest.send(why);
                true
            }
            None => false,
        }
    }

    /// Takes connection `id` out of the pool (its link stage ended). Returns false if it had
    /// been evicted meanwhile.
    pub(crate) fn leave(&self, id: u64) -> bool {
        lock(&self.pending).remove(&id).is_some()
    }

    /// Connections in the link stage now.
    pub(crate) fn pending(&self) -> usize {
        lock(&self.pending).len()
    }

    /// A linked-channel slot, held for the life of the channel; `None` when all are taken.
    pub(crate) fn linked_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.linked.clone().try_acquire_owned().ok()
    }

    /// Linked channels now.
    pub(crate) fn linked(&self) -> usize {
        self.limits
            .max_linked
            .saturating_sub(self.linked.available_permits())
    }
}

/// Lets a few log lines of one kind through per second, and says how many were held back, so
/// a flood of hostile connections cannot flood the log too.
#[derive(Debug)]
pub(crate) struct LogLimit {
    per_second: u32,
    state: Mutex<(Instant, u32, u64)>,
}

impl LogLimit {
    pub(crate) fn new(per_second: u32) -> Self {
        LogLimit {
            per_second,
            state: Mutex::new((Instant::now(), 0, 0)),
        }
    }

    /// `Some(suppressed)` if this event may be logged, where `suppressed` counts the events of
    /// this kind not logged since the last line; `None` to stay quiet.
    pub(crate) fn allow(&self) -> Option<u64> {
        let mut st = lock(&self.state);
        let now = Instant::now();
        if now.duration_since(st.0) >= Duration::from_secs(1) {
            st.0 = now;
            st.1 = 0;
        }
        if st.1 < self.per_second {
            st.1 += 1;
            let suppressed = st.2;
            st.2 = 0;
            Some(suppressed)
        } else {
            st.2 += 1;
            None
        }
    }
}

/// One [`LogLimit`] per kind of flood event.
#[derive(Debug)]
pub(crate) struct FloodLogs {
    pub timeout: LogLimit,
    pub evicted: LogLimit,
    pub linked_full: LogLimit,
    pub accept: LogLimit,
    pub refused: LogLimit,
    /// TLS handshake and WebSocket upgrade failures
    pub transport: LogLimit,
}

impl Default for FloodLogs {
    fn default() -> Self {
        FloodLogs {
            timeout: LogLimit::new(5),
            evicted: LogLimit::new(5),
            linked_full: LogLimit::new(5),
            accept: LogLimit::new(5),
            refused: LogLimit::new(10),
            transport: LogLimit::new(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_pending: usize, max_linked: usize) -> ConnectionLimits {
        ConnectionLimits {
            link_timeout: Duration::from_secs(1),
            max_pending,
            max_linked,
        }
    }

    #[test]
    fn full_pool_evicts_the_oldest_pending_connection() {
        let a = Admission::new(limits(2, 1));
        let (mut s0, e0) = a.admit();
        let (mut s1, e1) = a.admit();
        assert!(!e0 && !e1);
        let (mut s2, e2) = a.admit();
        assert!(e2);
        assert_eq!(s0.evicted.try_recv().ok(), Some(Eviction::PoolFull));
        assert!(s1.evicted.try_recv().is_err());
        assert_eq!(a.pending(), 2);
        // s1 links: it leaves the pool and can no longer be evicted
        assert!(a.leave(s1.id));
        assert!(!a.leave(s0.id), "s0 was evicted");
        assert!(a.evict_oldest(Eviction::NoFds));
        assert_eq!(s2.evicted.try_recv().ok(), Some(Eviction::NoFds));
        assert!(!a.evict_oldest(Eviction::NoFds));
        assert_eq!(a.pending(), 0);
    }

    #[test]
    fn linked_slots_are_bounded_and_returned() {
        let a = Admission::new(limits(4, 2));
        let p1 = a.linked_slot().unwrap();
        let _p2 = a.linked_slot().unwrap();
        assert!(a.linked_slot().is_none());
        assert_eq!(a.linked(), 2);
        drop(p1);
        assert_eq!(a.linked(), 1);
        assert!(a.linked_slot().is_some());
    }

    #[test]
    fn log_limit_lets_a_few_through_and_counts_the_rest() {
        let l = LogLimit::new(2);
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), None);
        assert_eq!(l.allow(), None);
        l.state.lock().unwrap().0 -= Duration::from_secs(2);
        assert_eq!(l.allow(), Some(2));
    }
}
