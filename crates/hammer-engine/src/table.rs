//! Provides a worker's connection table: the connections in a slab, each
//! with a generation (a slot is reused; an entry naming an old generation is
//! stale), the list of those that can take a request now, and the HTTP/2
//! connections with frames queued this turn.

use std::ops::{Index, IndexMut};

use hammer_core::recorder::ErrorKind;
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::conn::Conn;

/// A worker's connections.
#[derive(Default)]
pub struct Table {
    conns: Slab<Conn>,
    /// Connections that can take a request, as (slot, generation); stale
    /// entries are skipped when popped.
    idle: Vec<(usize, u64)>,
    next_generation: u64,
    /// HTTP/2 connections with frames queued by this turn's requests: they
    /// go out together, one write per connection, after the turn.
    unflushed: Vec<(usize, u64)>,
    /// Connections opened since the start.
    pub opened: u64,
    /// The most open at once.
    pub peak_open: usize,
}

impl Table {
    /// Connections open.
    #[inline]
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// The connection in `slot`, if any.
    #[inline]
    pub fn get(&self, slot: usize) -> Option<&Conn> {
        self.conns.get(slot)
    }

    /// The connection in `slot`, if any.
    #[inline]
    pub fn get_mut(&mut self, slot: usize) -> Option<&mut Conn> {
        self.conns.get_mut(slot)
    }

    /// The connection in `slot` if it is still the one of `generation`.
    #[inline]
    pub fn current(&mut self, slot: usize, generation: u64) -> Option<&mut Conn> {
        self.conns
            .get_mut(slot)
            .filter(|c| c.generation == generation)
    }

    /// Every connection with its slot.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Conn)> {
        self.conns.iter()
    }

    /// Whether some connection may take a request (stale entries are
    /// skipped later).
    #[inline]
    pub fn any_idle(&self) -> bool {
        !self.idle.is_empty()
    }

    /// A connection that can take a request now. An HTTP/2 connection stays
    /// listed while it has a free stream after this one.
    #[inline]
    pub fn pop_idle(&mut self) -> Option<usize> {
        while let Some(&(slot, generation)) = self.idle.last() {
            match self.conns.get_mut(slot) {
                Some(c) if c.generation == generation => {
                    let free = c.free();
                    if free <= 1 {
                        self.idle.pop();
                        c.listed = false;
                    }
                    if free > 0 {
                        return Some(slot);
                    }
                }
                _ => {
                    self.idle.pop();
                }
            }
        }
        None
    }

    /// Lists a connection as able to take a request, if it is and is not yet.
    #[inline]
    pub fn list(&mut self, slot: usize) {
        if let Some(c) = self.conns.get_mut(slot) {
            if !c.listed && c.free() > 0 {
                c.listed = true;
                self.idle.push((slot, c.generation));
            }
        }
    }

    /// Opens a connection with `connect` (given its generation) and
    /// registers it with the poll; returns its slot.
    pub fn open(
        &mut self,
        registry: &Registry,
        connect: impl FnOnce(u64) -> Result<Conn, ErrorKind>,
    ) -> Result<usize, ErrorKind> {
        let generation = self.next_generation;
        self.next_generation += 1;
        let mut conn = connect(generation)?;
        let entry = self.conns.vacant_entry();
        registry
            .register(
                &mut conn.stream,
                Token(entry.key()),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|_| ErrorKind::Connect)?;
        self.opened += 1;
        let slot = entry.key();
        entry.insert(conn);
        self.peak_open = self.peak_open.max(self.conns.len());
        Ok(slot)
    }

    /// Closes the connection in `slot` (closing the socket also removes it
    /// from the poll: no deregister call).
    pub fn remove(&mut self, slot: usize) {
        let generation = self.conns[slot].generation;
        self.idle.retain(|&(s, g)| (s, g) != (slot, generation));
        self.conns.remove(slot);
    }

    /// Notes that the HTTP/2 connection in `slot` has frames to write this turn.
    #[inline]
    pub fn queue_flush(&mut self, slot: usize) {
        let conn = &mut self.conns[slot];
        if !conn.unflushed && conn.connecting_since.is_none() {
            conn.unflushed = true;
            self.unflushed.push((slot, conn.generation));
        }
    }

    /// The connections [`Table::queue_flush`] noted, as (slot, generation),
    /// to hand back with [`Table::flushed`] (the list keeps its capacity).
    pub fn take_unflushed(&mut self) -> Vec<(usize, u64)> {
        std::mem::take(&mut self.unflushed)
    }

    /// Gives back the list [`Table::take_unflushed`] took, emptied.
    pub fn flushed(&mut self, mut list: Vec<(usize, u64)>) {
        list.clear();
        self.unflushed = list;
    }
}

impl Index<usize> for Table {
    type Output = Conn;

    #[inline]
    fn index(&self, slot: usize) -> &Conn {
        &self.conns[slot]
    }
}

impl IndexMut<usize> for Table {
    #[inline]
    fn index_mut(&mut self, slot: usize) -> &mut Conn {
        &mut self.conns[slot]
    }
}
