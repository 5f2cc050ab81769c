//! Provides HTTP/2 for one client connection, without I/O of its own: the
//! connection writes the frames this state machine queues and feeds it the
//! bytes it reads, as it does for rustls.
//!
//! Requests are prepared once (see [`crate::request`]): their header block
//! uses HPACK's static table and literals *without indexing*, so it does not
//! depend on any connection's dynamic table and is copied, not encoded, per
//! request. Responses are decoded with a per-connection HPACK decoder
//! (httlib-hpack, whose Huffman decoding is table-driven; loona-hpack's
//! built a hash map per Huffman string, 80% of a request's CPU), which
//! keeps the server's dynamic table. The framing (nine
//! bytes of header per frame) is written here: no maintained crate frames
//! HTTP/2 without bringing its own runtime (h2 needs tokio's I/O traits).
//!
//! hammer tells the server its HPACK table size is 0 (SETTINGS_HEADER_
//! TABLE_SIZE): once the server has acknowledged that, its header blocks
//! cannot refer to earlier ones, and `:status` is always the first field
//! (RFC 9113 §8.3), so a block that opens with one of the seven statuses
//! of the static table (RFC 7541 Appendix A, indices 8–14) needs no
//! decoding at all; anything else goes through the decoder.
//!
//! What the client does: one SETTINGS (no push; no HPACK table; large
//! receive windows, so the server is never held up by this client's flow
//! control) and a
//! connection WINDOW_UPDATE after the preface; SETTINGS ACK and PING ACK
//! when asked; request bodies within the server's windows; WINDOW_UPDATE
//! as it consumes; RST_STREAM for a request that timed out. A server's
//! RST_STREAM ends that request (`rst_stream`); GOAWAY stops new streams
//! on the connection, ends those the server will not process (`goaway`)
//! and lets the rest finish.

use std::time::{Duration, Instant};

use hammer_core::recorder::ErrorKind;
use httlib_hpack::{Decoder, Encoder};

use super::conn::InFlight;
use super::request::Prepared;
use super::response::Done;

/// The client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
/// The statuses of HPACK's static table, indexed fields 0x88 to 0x8e.
const STATIC_STATUS: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;

/// RST_STREAM code for a request hammer gave up on.
const CANCEL: u32 = 0x8;
/// The largest frame hammer accepts (the protocol's default; hammer does
/// not raise it).
const MAX_FRAME: usize = 16_384;
/// hammer's receive windows, per stream and for the connection.
const RECEIVE_WINDOW: u32 = 1 << 30;
/// Window is given back once this much has been consumed.
const REPLENISH_AT: u64 = 1 << 29;
/// The window every peer starts with.
const DEFAULT_WINDOW: i64 = 65_535;
const LAST_STREAM_ID: u32 = (1 << 31) - 1;

/// How a request on the connection ended.
#[derive(Debug)]
pub enum Ended {
    /// A complete response.
    Response(InFlight, Done),
    /// A failure of this request only.
    Failed(InFlight, ErrorKind),
}

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
    decoder: Decoder<'static>,
    /// The decoder consumes a copy of each header block, into these.
    block_copy: Vec<u8>,
    fields: Vec<(Vec<u8>, Vec<u8>, u8)>,
    /// The last header block that left the HPACK table as it was, and its
    /// status: the same bytes against the same table decode the same, so a
    /// server that answers alike is not decoded again.
    last_block: Vec<u8>,
    last_status: Option<u16>,
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
            decoder: Decoder::with_dynamic_size(4096),
            block_copy: Vec::new(),
            fields: Vec::new(),
            last_block: Vec::new(),
            last_status: None,
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
            let head = &buf[at..at + 9];
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            if len > MAX_FRAME {
                break Err(ErrorKind::BadResponse);
            }
            if buf.len() - at - 9 < len {
                break Ok(());
            }
            let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & LAST_STREAM_ID;
            let payload = &buf[at + 9..at + 9 + len];
            if let Err(kind) = self.frame(head[3], head[4], id, payload, requests, ended) {
                break Err(kind);
            }
            at += 9 + len;
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

    fn frame(
        &mut self,
        kind: u8,
        flags: u8,
        id: u32,
        payload: &[u8],
        requests: &[Prepared],
        ended: &mut Vec<Ended>,
    ) -> Result<(), ErrorKind> {
        if self.block_stream != 0 && kind != CONTINUATION {
            return Err(ErrorKind::BadResponse);
        }
        match kind {
            DATA => {
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
            }
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
            CONTINUATION => {
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
            }
            RST_STREAM => {
                if let Some(i) = self.find(id) {
                    let s = self.streams.swap_remove(i);
                    ended.push(Ended::Failed(s.flight, ErrorKind::RstStream));
                }
            }
            SETTINGS if flags & ACK != 0 => self.acked = true,
            SETTINGS => {
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
            }
            PING if flags & ACK == 0 => {
                self.frame_head(payload.len(), PING, ACK, 0);
                self.out.extend_from_slice(payload);
            }
            GOAWAY => {
                let last = payload
                    .get(..4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & LAST_STREAM_ID)
                    .ok_or(ErrorKind::BadResponse)?;
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
            }
            WINDOW_UPDATE => {
                let inc = payload
                    .get(..4)
                    .map(|b| {
                        i64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & LAST_STREAM_ID)
                    })
                    .ok_or(ErrorKind::BadResponse)?;
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

    /// A complete header block for stream `id`. Every block is decoded,
    /// even for a stream hammer has given up, to keep the HPACK table right.
    fn headers(
        &mut self,
        id: u32,
        block: &[u8],
        ends: bool,
        ended: &mut Vec<Ended>,
    ) -> Result<(), ErrorKind> {
        let status = match block.first() {
            Some(&first) if self.acked && (0x88..=0x8e).contains(&first) => {
                STATIC_STATUS[usize::from(first - 0x88)]
            }
            _ => match self.last_status {
                Some(status) if self.last_block == block => status,
                _ => self.decode(block)?,
            },
        };
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

    /// Decodes a header block for its `:status` (0 without one), keeping
    /// the HPACK table in step with the server's.
    fn decode(&mut self, block: &[u8]) -> Result<u16, ErrorKind> {
        if !well_framed(block) {
            return Err(ErrorKind::BadResponse);
        }
        self.block_copy.clear();
        self.block_copy.extend_from_slice(block);
        self.fields.clear();
        self.last_status = None;
        self.decoder
            .decode(&mut self.block_copy, &mut self.fields)
            .map_err(|_| ErrorKind::BadResponse)?;
        let status = self
            .fields
            .iter()
            .find(|(name, _, _)| name == b":status")
            .and_then(|(_, value, _)| std::str::from_utf8(value).ok()?.parse().ok())
            .unwrap_or(0u16);
        // A block that inserted into the table, or resized it, changed what
        // the next one means: only a block that did neither is remembered.
        let resized = block.first().is_some_and(|b| b & 0xE0 == 0x20);
        let inserted = self
            .fields
            .iter()
            .any(|(_, _, flags)| flags & Decoder::WITH_INDEXING != 0);
        if !resized && !inserted {
            self.last_block.clear();
            self.last_block.extend_from_slice(block);
            self.last_status = Some(status);
        }
        Ok(status)
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
        let len = len as u32;
        self.out
            .extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
        self.out.extend_from_slice(&id.to_be_bytes());
    }

    fn window_update(&mut self, id: u32, n: u32) {
        self.frame_head(4, WINDOW_UPDATE, 0, id);
        self.out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Whether every representation in an HPACK header block is complete:
/// each prefixed integer ends within five octets and each string's bytes
/// are all there (RFC 7541, sections 5 and 6). Only the framing is checked,
/// nothing is decoded; httlib-hpack indexes past the end of a truncated
/// block (a literal whose value is missing panics it), so a server that
/// sends one must get a connection error, not a panic.
fn well_framed(block: &[u8]) -> bool {
    /// The octets an integer with an `n`-bit prefix takes at `at`.
    fn integer(block: &[u8], at: usize, n: u32) -> Option<(usize, u64)> {
        let max = (1u64 << n) - 1;
        let first = u64::from(*block.get(at)?) & max;
        if first < max {
            return Some((1, first));
        }
        let mut value = max;
        for i in 1..=5 {
            let b = *block.get(at + i)?;
            value += u64::from(b & 0x7f) << (7 * (i - 1));
            if b & 0x80 == 0 {
                return Some((i + 1, value));
            }
        }
        None
    }
    /// The octets a string literal takes at `at`.
    fn string(block: &[u8], at: usize) -> Option<usize> {
        let (n, len) = integer(block, at, 7)?;
        let end = at.checked_add(n)?.checked_add(usize::try_from(len).ok()?)?;
        (end <= block.len()).then_some(end - at)
    }
    let mut at = 0;
    while at < block.len() {
        let b = block[at];
        let step = if b & 0x80 != 0 {
            integer(block, at, 7).map(|(n, _)| n)
        } else if b & 0x20 != 0 && b & 0x40 == 0 {
            integer(block, at, 5).map(|(n, _)| n)
        } else {
            // A literal: 6-bit name index with incremental indexing, else 4.
            let prefix = if b & 0x40 != 0 { 6 } else { 4 };
            integer(block, at, prefix).and_then(|(n, index)| {
                let name = if index == 0 {
                    string(block, at + n)?
                } else {
                    0
                };
                let value = string(block, at + n + name)?;
                Some(n + name + value)
            })
        };
        match step {
            Some(n) => at += n,
            None => return false,
        }
    }
    true
}

/// Whether the server at `addr` speaks HTTP/2 with prior knowledge (h2c):
/// sends the preface and SETTINGS and reads the first frame back. `Err`
/// says what it answered instead.
pub fn probe_h2c(addr: std::net::SocketAddr, timeout: Duration) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e} (is the service running?)"))?;
    tcp.set_read_timeout(Some(timeout)).ok();
    let h2 = H2::new(1);
    tcp.write_all(h2.pending())
        .map_err(|e| format!("writing the HTTP/2 preface to {addr}: {e}"))?;
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < 9 {
        match tcp.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if got >= 9 && head[3] == SETTINGS && head[4] & ACK == 0 {
        return Ok(());
    }
    let answer = String::from_utf8_lossy(&head[..got]);
    let first = answer.lines().next().unwrap_or("").trim();
    Err(format!(
        "the server at {addr} does not speak HTTP/2 with prior knowledge (h2c){}",
        if first.is_empty() {
            String::from(": it closed the connection")
        } else {
            format!(": it answered {first:?}")
        }
    ))
}

/// The payload of a frame without its padding.
fn unpad(flags: u8, payload: &[u8]) -> Result<&[u8], ErrorKind> {
    if flags & PADDED == 0 {
        return Ok(payload);
    }
    let (&pad, rest) = payload.split_first().ok_or(ErrorKind::BadResponse)?;
    rest.len()
        .checked_sub(usize::from(pad))
        .map(|end| &rest[..end])
        .ok_or(ErrorKind::BadResponse)
}

/// The HPACK header block of a request, independent of any connection: a
/// fresh encoder that never indexes refers only to the static table.
pub fn header_block(
    method: &str,
    scheme: &str,
    authority: &str,
    path: &str,
    headers: &[(String, String)],
) -> Vec<u8> {
    let mut encoder = Encoder::with_dynamic_size(0);
    let mut out = Vec::new();
    let pseudo = [
        (":method", method),
        (":scheme", scheme),
        (":authority", authority),
        (":path", path),
    ];
    let all = pseudo
        .into_iter()
        .chain(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    for (name, value) in all {
        let field = (
            name.to_ascii_lowercase().into_bytes(),
            value.as_bytes().to_vec(),
            Encoder::BEST_FORMAT,
        );
        // Only an index past the table can fail, and the encoder chose it.
        encoder
            .encode(field, &mut out)
            .expect("a literal always encodes");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prepared_header_block_decodes_to_the_request() {
        let block = header_block(
            "POST",
            "https",
            "example.com:8443",
            "/find?x=1",
            &[("Content-Type".into(), "application/json".into())],
        );
        let mut fields = Vec::new();
        Decoder::with_dynamic_size(4096)
            .decode(&mut block.clone(), &mut fields)
            .unwrap();
        let text: Vec<(String, String)> = fields
            .into_iter()
            .map(|(n, v, _)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
            .collect();
        let want = [
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", "example.com:8443"),
            (":path", "/find?x=1"),
            ("content-type", "application/json"),
        ];
        assert_eq!(
            text,
            want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
        );
    }

    fn requests() -> Vec<Prepared> {
        let target = hammer_core::targets::Target {
            method: "GET".into(),
            url: "http://127.0.0.1:1/".into(),
            ..Default::default()
        };
        let loaded = crate::request::Loaded {
            target,
            body: vec![],
        };
        crate::request::prepare(&[loaded], true).unwrap().1
    }

    fn flight() -> InFlight {
        let now = Instant::now();
        InFlight {
            req: 0,
            intended: now,
            sent: now,
            written: 0,
            bytes_in: 0,
        }
    }

    fn frame(kind: u8, flags: u8, id: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn outcomes(ended: &mut Vec<Ended>) -> Vec<Result<u16, ErrorKind>> {
        ended
            .drain(..)
            .map(|e| match e {
                Ended::Response(_, done) => Ok(done.status),
                Ended::Failed(_, kind) => Err(kind),
            })
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// A server that sends anything: frames of every type with any
        /// flags, stream ids and payloads (HPACK blocks included), then raw
        /// bytes, in any pieces: the connection fails or goes on, streams
        /// end or wait; never a panic.
        #[test]
        fn hostile_frames_are_connection_errors(
            frames in proptest::collection::vec(
                (0u8..12, proptest::prelude::any::<u8>(), 0u32..9, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..48)),
                0..12,
            ),
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            piece in 1usize..64,
        ) {
            let reqs = requests();
            let mut h2 = H2::new(4);
            h2.sent(h2.pending().len());
            for _ in 0..4 {
                h2.start(flight(), &reqs);
            }
            let mut bytes = Vec::new();
            for (kind, flags, id, payload) in &frames {
                bytes.extend(frame(*kind, *flags, *id, payload));
            }
            bytes.extend(&tail);
            let mut ended = Vec::new();
            for chunk in bytes.chunks(piece) {
                if h2.receive(chunk, &reqs, &mut ended).is_err() {
                    break;
                }
                let pending = h2.pending().len();
                h2.sent(pending);
            }
            proptest::prop_assert!(ended.len() <= 4);
        }
    }

    /// The frames a server sends, one by one and split at every byte: what
    /// each stream ends with, and what hammer answers.
    #[test]
    fn a_connection_follows_the_servers_frames() {
        let reqs = requests();
        let mut h2 = H2::new(4);
        h2.sent(h2.pending().len());
        for _ in 0..4 {
            h2.start(flight(), &reqs);
        }
        assert_eq!(h2.free(), 0);
        h2.sent(h2.pending().len());
        let mut ended = Vec::new();
        let mut from_server = Vec::new();
        // SETTINGS: at most 2 streams; then PING.
        from_server.extend(frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 2]));
        from_server.extend(frame(PING, 0, 0, b"12345678"));
        // Stream 1: a 503 as a literal (decoded) in HEADERS + CONTINUATION.
        let mut status_503 = Vec::new();
        Encoder::with_dynamic_size(0)
            .encode((b":status".to_vec(), b"503".to_vec(), 0), &mut status_503)
            .unwrap();
        let (a, b) = status_503.split_at(2);
        from_server.extend(frame(HEADERS, END_STREAM, 1, a));
        from_server.extend(frame(CONTINUATION, END_HEADERS, 1, b));
        // hammer's SETTINGS acknowledged: stream 3 is 0x88, a 200, with a body.
        from_server.extend(frame(SETTINGS, ACK, 0, &[]));
        from_server.extend(frame(HEADERS, END_HEADERS, 3, &[0x88]));
        from_server.extend(frame(DATA, PADDED | END_STREAM, 3, &[1, b'o', b'k', 0]));
        // Stream 5 reset; GOAWAY with last stream 5 ends stream 7.
        from_server.extend(frame(RST_STREAM, 0, 5, &2u32.to_be_bytes()));
        from_server.extend(frame(GOAWAY, 0, 0, &[0, 0, 0, 5, 0, 0, 0, 0]));
        for byte in from_server.chunks(1) {
            h2.receive(byte, &reqs, &mut ended).unwrap();
        }
        assert_eq!(
            outcomes(&mut ended),
            vec![
                Ok(503),
                Ok(200),
                Err(ErrorKind::RstStream),
                Err(ErrorKind::GoAway)
            ]
        );
        assert_eq!((h2.in_flight(), h2.free()), (0, 0));
        assert!(h2.going_away());
        // hammer answered: SETTINGS ACK, then PING ACK with the same payload.
        let answer = h2.pending().to_vec();
        assert_eq!(&answer[..9], &frame(SETTINGS, ACK, 0, &[])[..]);
        assert_eq!(&answer[9..], &frame(PING, ACK, 0, b"12345678")[..]);
    }

    #[test]
    fn a_frame_larger_than_allowed_fails_the_connection() {
        let reqs = requests();
        let mut h2 = H2::new(1);
        let mut ended = Vec::new();
        let head = [0x00, 0x40, 0x01, DATA, 0, 0, 0, 0, 1];
        assert_eq!(
            h2.receive(&head, &reqs, &mut ended),
            Err(ErrorKind::BadResponse)
        );
    }

    #[test]
    fn padding_is_removed_and_bad_padding_refused() {
        assert_eq!(unpad(PADDED, &[2, b'a', b'b', 0, 0]).unwrap(), b"ab");
        assert_eq!(unpad(0, b"ab").unwrap(), b"ab");
        assert!(unpad(PADDED, &[5, b'a']).is_err());
        assert!(unpad(PADDED, &[]).is_err());
    }
}
