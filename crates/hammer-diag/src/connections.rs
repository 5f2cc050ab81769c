//! Provides the registry of open client connections behind `/connections`:
//! who is connected, for how long, how many requests each has sent, and
//! whether one is in flight (the Uptime talk's "who is currently connected?").

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

/// Counters of one open connection, shared with its request handler.
#[derive(Debug)]
pub struct ConnStats {
    id: u64,
    peer: SocketAddr,
    opened: Instant,
    requests: AtomicU64,
    in_flight: AtomicU64,
}

impl ConnStats {
    /// Marks a request started; the guard marks it finished when dropped
    /// (also when the client goes away mid-request).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A request in flight on a connection.
pub struct InFlight(Arc<ConnStats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// All open connections.
#[derive(Debug, Default)]
pub struct Connections {
    next_id: AtomicU64,
    total: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<ConnStats>>>,
}

/// Keeps a connection listed until dropped.
pub struct Registered {
    registry: Arc<Connections>,
    /// The connection's counters.
    pub stats: Arc<ConnStats>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.stats.id);
    }
}

/// One row of `/connections`.
#[derive(Debug, Serialize)]
pub struct ConnectionInfo {
    /// Connection number since start.
    pub id: u64,
    /// Client address.
    pub peer: String,
    /// Seconds since the connection opened.
    pub age_s: f64,
    /// Requests it has sent.
    pub requests: u64,
    /// `active` with a request in flight, else `idle`.
    pub state: &'static str,
}

/// The `/connections` document.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// Connections open now.
    pub open: usize,
    /// Connections accepted since start.
    pub accepted_total: u64,
    /// Each open connection.
    pub connections: Vec<ConnectionInfo>,
}

impl Connections {
    /// Lists a new connection.
    pub fn register(self: &Arc<Self>, peer: SocketAddr) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(ConnStats {
            id,
            peer,
            opened: Instant::now(),
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
        });
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, stats.clone());
        Registered {
            registry: self.clone(),
            stats,
        }
    }

    /// Connections open now.
    pub fn open_count(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Connections accepted since start.
    pub fn accepted_total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// What `/connections` shows.
    pub fn snapshot(&self) -> Snapshot {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let connections: Vec<ConnectionInfo> = open
            .values()
            .map(|c| ConnectionInfo {
                id: c.id,
                peer: c.peer.to_string(),
                age_s: c.opened.elapsed().as_secs_f64(),
                requests: c.requests.load(Ordering::Relaxed),
                state: if c.in_flight.load(Ordering::Relaxed) > 0 {
                    "active"
                } else {
                    "idle"
                },
            })
            .collect();
        Snapshot {
            open: connections.len(),
            accepted_total: self.accepted_total(),
            connections,
        }
    }
}
