//! Provides the HTTP/2 state of one client connection, without I/O of its
//! own: the connection writes the frames this state machine queues and
//! feeds it the bytes it reads, as it does for rustls. Framing is
//! [`super::frame`]'s, header compression [`super::hpack`]'s.

use std::time::{Duration, Instant};

use hammer_core::recorder::ErrorKind;

use super::frame::*;
use super::hpack::StatusDecoder;
use crate::exchange::{Ended, InFlight};
use crate::request::Prepared;
use crate::response::Done;

#[derive(Debug)]
struct Stream {
    id: u32,
    flight: InFlight,
    /// Final status, once its HEADERS came (0 before).
    status: u16,
    /// Request body bytes sent.
    body_sent: usize,
    /// What the server's window for this stream still allows.
    window: i64,
    /// Bytes received on it since its window was last given back.
    unacked: u64,
}

/// The HTTP/2 state of one connection.
pub struct H2 {
    out: Vec<u8>,
    out_sent: usize,
    partial: Vec<u8>,
    statuses: StatusDecoder,
    streams: Vec<Stream>,
    next_id: u32,
    /// hammer's limit on streams per connection (`--streams`).
    cap: usize,
    /// The server's SETTINGS_MAX_CONCURRENT_STREAMS.
    peer_max: usize,
    send_window: i64,
    peer_initial_window: i64,
    peer_max_frame: usize,
    unacked: u64,
    settled: bool,
    /// The server has acknowledged hammer's SETTINGS (no HPACK table).
    acked: bool,
    goaway: bool,
    /// A header block that continues in CONTINUATION frames.
    block: Vec<u8>,
    block_stream: u32,
    block_ends_stream: bool,
}

impl H2 {
    /// A connection that will carry at most `cap` streams at once (fewer if
    /// the server says so), with the preface and SETTINGS queued.
    pub fn new(cap: usize) -> H2 {
        let mut h2 = H2 {
            out: Vec::with_capacity(4096),
            out_sent: 0,
            partial: Vec::new(),
            statuses: StatusDecoder::new(),
            streams: Vec::with_capacity(cap.min(128)),
            next_id: 1,
            cap: cap.max(1),
            peer_max: usize::MAX,
            send_window: DEFAULT_WINDOW,
            peer_initial_window: DEFAULT_WINDOW,
            peer_max_frame: MAX_FRAME,
            unacked: 0,
            settled: false,
            acked: false,
            goaway: false,
            block: Vec::new(),
            block_stream: 0,
            block_ends_stream: false,
        };
        h2.out.extend_from_slice(PREFACE);
        let settings: [(u16, u32); 3] = [
            (SETTINGS_HEADER_TABLE_SIZE, 0),
            (0x2, 0), // SETTINGS_ENABLE_PUSH
            (SETTINGS_INITIAL_WINDOW_SIZE, RECEIVE_WINDOW),
        ];
        h2.frame_head(6 * settings.len(), SETTINGS, 0, 0);
        for (id, value) in settings {
            h2.out.extend_from_slice(&id.to_be_bytes());
            h2.out.extend_from_slice(&value.to_be_bytes());
        }
        h2.window_update(0, RECEIVE_WINDOW - DEFAULT_WINDOW as u32);
        h2
    }

    /// Streams that may start now.
    pub fn free(&self) -> usize {
        if self.goaway || self.next_id > LAST_STREAM_ID {
            return 0;
        }
        self.cap
            .min(self.peer_max)
            .saturating_sub(self.streams.len())
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.streams.len()
    }

    /// Whether the server's SETTINGS have come.
    pub fn settled(&self) -> bool {
        self.settled
    }

    /// Whether the server said GOAWAY: the connection takes no new streams
    /// and closes once the rest are done.
    pub fn going_away(&self) -> bool {
        self.goaway
    }

    /// Bytes queued for the socket.
    pub fn pending(&self) -> &[u8] {
        &self.out[self.out_sent..]
    }

    /// `n` queued bytes went out.
    pub fn sent(&mut self, n: usize) {
        self.out_sent += n;
        if self.out_sent == self.out.len() {
            self.out.clear();
            self.out_sent = 0;
        }
    }

    /// Starts a request on a new stream: its prepared header block, and as
    /// much of its body as the server's windows allow.
    pub fn start(&mut self, flight: InFlight, requests: &[Prepared]) {
        let id = self.next_id;
        self.next_id += 2;
        let req = &requests[flight.req];
        let has_body = !req.body().is_empty();
        let block = &req.h2_block;
        let first = block.len().min(self.peer_max_frame);
        let mut flags = if has_body { 0 } else { END_STREAM };
        if first == block.len() {
            flags |= END_HEADERS;
        }
        self.frame_head(first, HEADERS, flags, id);
        self.out.extend_from_slice(&block[..first]);
        let mut at = first;
        while at < block.len() {
            let n = (block.len() - at).min(self.peer_max_frame);
            let flags = if at + n == block.len() {
                END_HEADERS
            } else {
                0
            };
            self.frame_head(n, CONTINUATION, flags, id);
            self.out.extend_from_slice(&block[at..at + n]);
            at += n;
        }
        self.streams.push(Stream {
            id,
            flight,
            status: 0,
            body_sent: 0,
            window: self.peer_initial_window,
            unacked: 0,
        });
        if has_body {
            self.send_bodies(requests);
        }
    }

    /// Sends what request bodies the windows allow.
    fn send_bodies(&mut self, requests: &[Prepared]) {
        for i in 0..self.streams.len() {
            let body = requests[self.streams[i].flight.req].body();
            loop {
                let s = &self.streams[i];
                let left = body.len() - s.body_sent;
                if left == 0 {
                    break;
                }
                let n = left
                    .min(self.peer_max_frame)
                    .min(s.window.max(0) as usize)
                    .min(self.send_window.max(0) as usize);
                if n == 0 {
                    break;
                }
                let (id, from) = (s.id, s.body_sent);
                let flags = if from + n == body.len() {
                    END_STREAM
                } else {
                    0
                };
                self.frame_head(n, DATA, flags, id);
                self.out.extend_from_slice(&body[from..from + n]);
                let s = &mut self.streams[i];
                s.body_sent += n;
                s.flight.written = s.body_sent;
                s.window -= n as i64;
                self.send_window -= n as i64;
            }
        }
    }

    /// Feeds bytes read from the connection; ended requests go to `ended`.
    /// An error is the connection's: every request on it has failed.
    pub fn receive(
        &mut self,
        data: &[u8],
        requests: &[Prepared],
        ended: &mut Vec<Ended>,
    ) -> Result<(), ErrorKind> {
        let mut partial = std::mem::take(&mut self.partial);
        let joined = !partial.is_empty();
        if joined {
            partial.extend_from_slice(data);
        }
        let buf: &[u8] = if joined { &partial } else { data };
        let mut at = 0;
        let result = loop {
            if buf.len() - at < 9 {
                break Ok(());
            }
            let head = Head::read(buf[at..at + 9].try_into().expect("nine bytes"));
            if head.len > MAX_FRAME {
                break Err(ErrorKind::BadResponse);
            }
            if buf.len() - at - 9 < head.len {
                break Ok(());
            }
            let payload = &buf[at + 9..at + 9 + head.len];
            if let Err(kind) = self.frame(head, payload, requests, ended) {
                break Err(kind);
            }
            at += 9 + head.len;
        };
        if joined {
            partial.drain(..at);
        } else {
            partial.clear();
            partial.extend_from_slice(&data[at..]);
        }
        self.partial = partial;
        result
    }

    /// One frame from the server.
    fn frame(
        &mut self,
        head: Head,
        payload: &[u8],
        requests: &[Prepared],
        ended: &mut Vec<Ended>,
    ) -> Result<(), ErrorKind> {
        let Head {
            kind, flags, id, ..
        } = head;
        if self.block_stream != 0 && kind != CONTINUATION {
            return Err(ErrorKind::BadResponse);
        }
        match kind {
            DATA => self.data(flags, id, payload, ended)?,
            HEADERS => {
                let mut block = unpad(flags, payload)?;
                if flags & PRIORITY != 0 {
                    block = block.get(5..).ok_or(ErrorKind::BadResponse)?;
                }
                let ends = flags & END_STREAM != 0;
                if flags & END_HEADERS != 0 {
                    self.headers(id, block, ends, ended)?;
                } else {
                    self.block.clear();
                    self.block.extend_from_slice(block);
                    (self.block_stream, self.block_ends_stream) = (id, ends);
                }
            }
            CONTINUATION => self.continuation(flags, id, payload, ended)?,
            RST_STREAM => {
                if let Some(i) = self.find(id) {
                    let s = self.streams.swap_remove(i);
                    ended.push(Ended::Failed(s.flight, ErrorKind::RstStream));
                }
            }
            SETTINGS if flags & ACK != 0 => self.acked = true,
            SETTINGS => self.settings(payload, requests)?,
            PING if flags & ACK == 0 => {
                self.frame_head(payload.len(), PING, ACK, 0);
                self.out.extend_from_slice(payload);
            }
            GOAWAY => self.goaway(payload, ended)?,
            WINDOW_UPDATE => {
                let inc = i64::from(u31(payload)?);
                if id == 0 {
                    self.send_window += inc;
                } else if let Some(i) = self.find(id) {
                    self.streams[i].window += inc;
                }
                self.send_bodies(requests);
            }
            // hammer said SETTINGS_ENABLE_PUSH = 0.
            PUSH_PROMISE => return Err(ErrorKind::BadResponse),
            // PRIORITY, acknowledgements, extensions.
            _ => {}
        }
        Ok(())
    }

    /// A DATA frame: counts the body, gives window back, ends the stream.
    fn data(
        &mut self,
        flags: u8,
        id: u32,
        payload: &[u8],
        ended: &mut Vec<Ended>,
    ) -> Result<(), ErrorKind> {
        self.unacked += payload.len() as u64;
        if self.unacked >= REPLENISH_AT {
            let n = self.unacked as u32;
            self.unacked = 0;
            self.window_update(0, n);
        }
        let body = unpad(flags, payload)?;
        if let Some(i) = self.find(id) {
            let s = &mut self.streams[i];
            s.flight.bytes_in += body.len() as u64;
            s.unacked += payload.len() as u64;
            if flags & END_STREAM != 0 {
                self.end(i, ended);
            } else if s.unacked >= REPLENISH_AT {
                let n = s.unacked as u32;
                s.unacked = 0;
                self.window_update(id, n);
            }
        }
        Ok(())
    }

    /// A CONTINUATION of the header block being received.
    fn continuation(
        &mut self,
        flags: u8,
        id: u32,
        payload: &[u8],
        ended: &mut Vec<Ended>,
    ) -> Result<(), ErrorKind> {
        if id != self.block_stream || id == 0 {
            return Err(ErrorKind::BadResponse);
        }
        self.block.extend_from_slice(payload);
        if flags & END_HEADERS != 0 {
            let block = std::mem::take(&mut self.block);
            let ends = self.block_ends_stream;
            self.block_stream = 0;
            let result = self.headers(id, &block, ends, ended);
            self.block = block;
            result?;
        }
        Ok(())
    }

    /// The server's SETTINGS: taken, acknowledged, and bodies that waited
    /// for them sent.
    fn settings(&mut self, payload: &[u8], requests: &[Prepared]) -> Result<(), ErrorKind> {
        if payload.len() % 6 != 0 {
            return Err(ErrorKind::BadResponse);
        }
        for entry in payload.chunks_exact(6) {
            let key = u16::from_be_bytes([entry[0], entry[1]]);
            let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
            match key {
                SETTINGS_MAX_CONCURRENT_STREAMS => self.peer_max = value as usize,
                SETTINGS_INITIAL_WINDOW_SIZE => {
                    let delta = i64::from(value) - self.peer_initial_window;
                    self.peer_initial_window = i64::from(value);
                    for s in &mut self.streams {
                        s.window += delta;
                    }
                }
                SETTINGS_MAX_FRAME_SIZE => {
                    self.peer_max_frame = (value as usize).clamp(MAX_FRAME, 1 << 24)
                }
                _ => {}
            }
        }
        self.frame_head(0, SETTINGS, ACK, 0);
        self.settled = true;
        self.send_bodies(requests);
        Ok(())
    }

    /// GOAWAY: no new streams; those past its last stream are not processed.
    fn goaway(&mut self, payload: &[u8], ended: &mut Vec<Ended>) -> Result<(), ErrorKind> {
        let last = u31(payload)?;
        self.goaway = true;
        let mut i = 0;
        while i < self.streams.len() {
            if self.streams[i].id > last {
                let s = self.streams.swap_remove(i);
                ended.push(Ended::Failed(s.flight, ErrorKind::GoAway));
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// A complete header block for stream `id`. Every block is decoded,
    /// even for a stream hammer has given up, to keep the HPACK table right.
    fn headers(
        &mut self,
        id: u32,
        block: &[u8],
        ends: bool,
        ended: &mut Vec<Ended>,
    ) -> Result<(), ErrorKind> {
        let status = self.statuses.status(block, self.acked)?;
        let Some(i) = self.find(id) else {
            return Ok(());
        };
        // 1xx: informational; the final response follows.
        if status >= 200 && self.streams[i].status == 0 {
            self.streams[i].status = status;
        }
        if ends {
            self.end(i, ended);
        }
        Ok(())
    }

    fn end(&mut self, i: usize, ended: &mut Vec<Ended>) {
        let s = self.streams.swap_remove(i);
        ended.push(match s.status {
            0 => Ended::Failed(s.flight, ErrorKind::BadResponse),
            status => Ended::Response(
                s.flight,
                Done {
                    status,
                    keep_alive: true,
                },
            ),
        });
    }

    /// Ends every request whose `timeout` has passed, telling the server.
    pub fn expire(&mut self, now: Instant, timeout: Duration, ended: &mut Vec<Ended>) {
        let mut i = 0;
        while i < self.streams.len() {
            if now.saturating_duration_since(self.streams[i].flight.sent) >= timeout {
                let s = self.streams.swap_remove(i);
                self.frame_head(4, RST_STREAM, 0, s.id);
                self.out.extend_from_slice(&CANCEL.to_be_bytes());
                ended.push(Ended::Failed(s.flight, ErrorKind::Timeout));
            } else {
                i += 1;
            }
        }
    }

    /// Whether a request has run past `timeout`.
    pub fn any_expired(&self, now: Instant, timeout: Duration) -> bool {
        self.streams
            .iter()
            .any(|s| now.saturating_duration_since(s.flight.sent) >= timeout)
    }

    /// Ends every request with `kind`: the connection is gone.
    pub fn fail_all(&mut self, kind: ErrorKind, ended: &mut Vec<Ended>) {
        ended.extend(
            self.streams
                .drain(..)
                .map(|s| Ended::Failed(s.flight, kind)),
        );
    }

    fn find(&self, id: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.id == id)
    }

    fn frame_head(&mut self, len: usize, kind: u8, flags: u8, id: u32) {
        write_head(&mut self.out, len, kind, flags, id);
    }

    fn window_update(&mut self, id: u32, n: u32) {
        self.frame_head(4, WINDOW_UPDATE, 0, id);
        self.out.extend_from_slice(&n.to_be_bytes());
    }
}
