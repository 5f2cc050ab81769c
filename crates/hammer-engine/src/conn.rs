//! Provides one client connection of a worker and its request life cycle:
//! connect, handshake (TLS), write the prepared bytes, read until the
//! response is complete.
//!
//! Each method does the socket calls one readiness event allows and reports
//! what happened as a [`Step`]; recording and bookkeeping stay in the worker.
//! Over TLS the same calls go through a rustls session: request bytes are
//! handed to it (it holds them until the handshake is done), its records are
//! written and read on the socket, and the response reader is fed the
//! plaintext.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hammer_core::recorder::ErrorKind;
use mio::net::TcpStream;
use rustls::ClientConnection;

use super::exchange::{Ended, InFlight};
use super::h2::H2;
use super::tls::Tls;

use super::request::Prepared;
use super::response::{Done, Feed, ResponseReader};

/// What a connection's I/O produced.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Nothing final yet: wait for the next readiness event.
    Wait,
    /// The response is complete.
    Complete(Done),
    /// The request failed; the connection must be closed.
    Fail(ErrorKind),
    /// An idle connection was closed by the peer (or sent junk): close it.
    Drop,
}

/// Set-up times of a connection not yet recorded.
#[derive(Debug, Default, Clone, Copy)]
pub struct Setup {
    /// TCP connect.
    pub connect: Option<Duration>,
    /// TLS handshake, from connected to the handshake's end.
    pub handshake: Option<Duration>,
    /// HTTP/2: from ready (connected, handshake done) to the server's
    /// first SETTINGS.
    pub settings: Option<Duration>,
}

/// A client connection.
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// The TLS session, for https.
    tls: Option<Box<ClientConnection>>,
    /// Distinguishes this connection from earlier ones in the same slot.
    pub generation: u64,
    /// When the connect started, while it is still in progress.
    pub connecting_since: Option<Instant>,
    /// TLS: when the handshake started, while it is still in progress.
    pub handshaking_since: Option<Instant>,
    /// HTTP/2: when the connection was ready, until the server's SETTINGS.
    settling_since: Option<Instant>,
    /// Set-up times for the worker to record.
    pub setup: Setup,
    /// The request in flight, if any.
    pub busy: Option<InFlight>,
    /// Whether the target has answered on this connection yet.
    pub answered: bool,
    /// Whether the worker lists it as able to take a request.
    pub listed: bool,
    /// HTTP/2: whether the worker will write its queued frames this turn.
    pub unflushed: bool,
    reader: ResponseReader,
    /// HTTP/2: the connection's streams and frames.
    h2: Option<Box<H2>>,
    /// HTTP/2: requests that ended, for the worker to record.
    pub ended: Vec<Ended>,
}

/// The kind of a failed connect.
pub fn connect_error(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ErrorKind::Refused,
        _ => ErrorKind::Connect,
    }
}

/// The kind of a TLS failure: in the handshake, or after it.
fn tls_error(handshaking: bool) -> ErrorKind {
    if handshaking {
        ErrorKind::TlsHandshake
    } else {
        ErrorKind::TlsAlert
    }
}

/// The kind of a failed read or write on an established connection.
fn io_error(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ErrorKind::Refused,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted => ErrorKind::Reset,
        _ => ErrorKind::Io,
    }
}

impl Conn {
    /// Starts a non-blocking connect.
    /// With `h2_streams`, the connection speaks HTTP/2 and carries at most
    /// that many requests at once.
    pub fn connect(
        addr: SocketAddr,
        tls: Option<&Tls>,
        h2_streams: Option<usize>,
        generation: u64,
        now: Instant,
    ) -> io::Result<Conn> {
        let tls = tls.map(|t| t.session().map(Box::new)).transpose()?;
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            tls,
            generation,
            connecting_since: Some(now),
            handshaking_since: None,
            settling_since: None,
            setup: Setup::default(),
            busy: None,
            answered: false,
            listed: false,
            unflushed: false,
            reader: ResponseReader::default(),
            h2: h2_streams.map(|n| Box::new(H2::new(n))),
            ended: Vec::new(),
        })
    }

    /// Requests it may take now.
    pub fn free(&self) -> usize {
        match &self.h2 {
            Some(h2) => h2.free(),
            None => usize::from(self.busy.is_none() && self.connecting_since.is_none()),
        }
    }

    /// Requests it carries.
    pub fn in_flight(&self) -> usize {
        match &self.h2 {
            Some(h2) => h2.in_flight(),
            None => usize::from(self.busy.is_some()),
        }
    }

    /// HTTP/2 after GOAWAY with nothing left in flight: done.
    pub fn spent(&self) -> bool {
        self.h2
            .as_ref()
            .is_some_and(|h2| h2.going_away() && h2.in_flight() == 0)
    }

    /// Takes a request (the caller checked [`Conn::free`]); the bytes go out
    /// with the next [`Conn::write`].
    pub fn start(&mut self, flight: InFlight, requests: &[Prepared]) {
        match &mut self.h2 {
            Some(h2) => h2.start(flight, requests),
            None => self.busy = Some(flight),
        }
    }

    /// HTTP/2: ends requests past `timeout` (they go to `ended`).
    pub fn expire(&mut self, now: Instant, timeout: Duration) {
        if let Some(h2) = &mut self.h2 {
            h2.expire(now, timeout, &mut self.ended);
        }
    }

    /// Whether a request on it has run past `timeout`.
    pub fn late(&self, now: Instant, timeout: Duration) -> bool {
        match &self.h2 {
            Some(h2) => h2.any_expired(now, timeout),
            None => self
                .busy
                .is_some_and(|f| now.saturating_duration_since(f.sent) >= timeout),
        }
    }

    /// HTTP/2: ends every request on it with `kind`.
    pub fn fail_all(&mut self, kind: ErrorKind) {
        if let Some(h2) = &mut self.h2 {
            h2.fail_all(kind, &mut self.ended);
        }
    }

    /// Hands plaintext from the server to the protocol. `Some` ends the
    /// read: a response is complete (HTTP/1.1) or the connection failed.
    fn take(&mut self, data: &[u8], requests: &[Prepared]) -> Option<Step> {
        if let Some(h2) = &mut self.h2 {
            let failed = h2.receive(data, requests, &mut self.ended).err();
            if let Some(since) = self.settling_since.filter(|_| h2.settled()) {
                self.settling_since = None;
                self.setup.settings = Some(since.elapsed());
            }
            return failed.map(Step::Fail);
        }
        let Some(f) = &mut self.busy else {
            // The peer closed an idle keep-alive connection, or sent bytes
            // nobody asked for: either way the connection is done.
            return Some(Step::Drop);
        };
        f.bytes_in += data.len() as u64;
        match self.reader.feed(data, requests[f.req].head) {
            Ok(Feed::Done(done)) => Some(Step::Complete(done)),
            Ok(Feed::More) => None,
            Err(_) => Some(Step::Fail(ErrorKind::BadResponse)),
        }
    }

    /// The server closed its side.
    fn at_eof(&mut self) -> Step {
        if self.h2.is_some() {
            return if self.in_flight() > 0 {
                Step::Fail(ErrorKind::Closed)
            } else {
                Step::Drop
            };
        }
        match (&self.busy, self.reader.eof()) {
            (None, _) => Step::Drop,
            (Some(_), Some(done)) => Step::Complete(done),
            (Some(_), None) => Step::Fail(ErrorKind::Closed),
        }
    }

    /// Checks a pending connect after a readiness event; `Ok(true)` once connected.
    pub fn finish_connect(&mut self) -> Result<bool, ErrorKind> {
        if let Some(e) = self.stream.take_error().map_err(|e| connect_error(&e))? {
            return Err(connect_error(&e));
        }
        match self.stream.peer_addr() {
            Ok(_) => {
                let now = Instant::now();
                if let Some(since) = self.connecting_since.take() {
                    self.setup.connect = Some(now.saturating_duration_since(since));
                }
                if self.tls.is_some() {
                    self.handshaking_since = Some(now);
                } else if self.h2.is_some() {
                    self.settling_since = Some(now);
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(connect_error(&e)),
        }
    }

    /// Writes as much of the request as the socket takes (over TLS: hands
    /// it to the session and writes what records it has).
    pub fn write(&mut self, requests: &[Prepared]) -> Step {
        if self.tls.is_some() {
            return self.write_tls(requests);
        }
        if let Some(h2) = &mut self.h2 {
            while !h2.pending().is_empty() {
                match self.stream.write(h2.pending()) {
                    Ok(0) => return Step::Fail(ErrorKind::Reset),
                    Ok(n) => h2.sent(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Step::Fail(io_error(&e)),
                }
            }
            return Step::Wait;
        }
        let Some(f) = &mut self.busy else {
            return Step::Wait;
        };
        let bytes = &requests[f.req].bytes;
        while f.written < bytes.len() {
            match self.stream.write(&bytes[f.written..]) {
                Ok(0) => return Step::Fail(ErrorKind::Reset),
                Ok(n) => f.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Step::Fail(io_error(&e)),
            }
        }
        Step::Wait
    }

    /// Over TLS: hands the session what it takes of the request, and
    /// writes its records until the socket would block or all are out.
    fn write_tls(&mut self, requests: &[Prepared]) -> Step {
        let idle = self.in_flight() == 0;
        let Some(tls) = self.tls.as_deref_mut() else {
            return Step::Wait;
        };
        let handshaking = self.handshaking_since.is_some();
        loop {
            if let Some(h2) = &mut self.h2 {
                if !h2.pending().is_empty() {
                    match tls.writer().write(h2.pending()) {
                        Ok(n) => h2.sent(n),
                        Err(_) => return Step::Fail(ErrorKind::Io),
                    }
                }
            } else if let Some(f) = &mut self.busy {
                let bytes = &requests[f.req].bytes;
                if f.written < bytes.len() {
                    match tls.writer().write(&bytes[f.written..]) {
                        Ok(n) => f.written += n,
                        Err(_) => return Step::Fail(ErrorKind::Io),
                    }
                }
            }
            if !tls.wants_write() {
                return Step::Wait;
            }
            while tls.wants_write() {
                match tls.write_tls(&mut self.stream) {
                    Ok(0) => return Step::Fail(ErrorKind::Reset),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) if idle => return Step::Drop,
                    Err(e) if handshaking => {
                        return Step::Fail(match io_error(&e) {
                            ErrorKind::Io => ErrorKind::TlsHandshake,
                            kind => kind,
                        })
                    }
                    Err(e) => return Step::Fail(io_error(&e)),
                }
            }
        }
    }

    /// Reads what has arrived, into the worker's scratch buffer.
    pub fn read(&mut self, requests: &[Prepared], scratch: &mut [u8]) -> Step {
        if self.tls.is_some() {
            return self.read_tls(requests, scratch);
        }
        loop {
            let n = match self.stream.read(scratch) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An error on an idle connection ends only the connection.
                Err(_) if self.in_flight() == 0 => return Step::Drop,
                Err(e) => return Step::Fail(io_error(&e)),
            };
            if n == 0 {
                return self.at_eof();
            }
            if let Some(step) = self.take(&scratch[..n], requests) {
                return step;
            }
            if n < scratch.len() {
                break;
            }
        }
        self.answer(requests)
    }

    /// HTTP/2: writes what reading queued (acknowledgements, window updates,
    /// request bodies the server's window now allows).
    fn answer(&mut self, requests: &[Prepared]) -> Step {
        match &self.h2 {
            Some(h2) if !h2.pending().is_empty() => self.write(requests),
            _ => Step::Wait,
        }
    }

    /// Over TLS: reads records, lets the session process them (answering
    /// handshake messages), and hands the plaintext to the protocol.
    fn read_tls(&mut self, requests: &[Prepared], scratch: &mut [u8]) -> Step {
        loop {
            let Some(tls) = self.tls.as_deref_mut() else {
                return Step::Wait;
            };
            let (mut closed, mut blocked) = (false, false);
            match tls.read_tls(&mut self.stream) {
                Ok(0) => closed = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => blocked = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) if self.busy.is_none() && self.h2.is_none() => return Step::Drop,
                Err(e) => return Step::Fail(io_error(&e)),
            }
            let handshaking = self.handshaking_since.is_some();
            if tls.process_new_packets().is_err() {
                // The session has queued an alert for the peer; send it on
                // the way out, as a courtesy.
                let _ = tls.write_tls(&mut self.stream);
                return if self.in_flight() == 0 && !handshaking {
                    Step::Drop
                } else {
                    Step::Fail(tls_error(handshaking))
                };
            }
            if let Some(since) = self.handshaking_since {
                if !tls.is_handshaking() {
                    self.handshaking_since = None;
                    self.setup.handshake = Some(since.elapsed());
                    if self.h2.is_some() {
                        self.settling_since = Some(Instant::now());
                    }
                }
            }
            let unsent = match (&self.h2, &self.busy) {
                (Some(h2), _) => !h2.pending().is_empty(),
                (None, Some(f)) => f.written < requests[f.req].bytes.len(),
                (None, None) => false,
            };
            if tls.wants_write() || unsent {
                match self.write_tls(requests) {
                    Step::Wait => {}
                    other => return other,
                }
            }
            loop {
                let Some(tls) = self.tls.as_deref_mut() else {
                    return Step::Wait;
                };
                let n = match tls.reader().read(scratch) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // The peer closed the socket without close_notify, as
                    // most HTTP servers do: an end of stream like any other.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
                    Err(_) => return Step::Fail(ErrorKind::TlsAlert),
                };
                if n == 0 {
                    return self.at_eof();
                }
                if let Some(step) = self.take(&scratch[..n], requests) {
                    return step;
                }
            }
            if closed {
                if self.handshaking_since.is_some() && self.in_flight() > 0 {
                    return Step::Fail(ErrorKind::TlsHandshake);
                }
                return self.at_eof();
            }
            if blocked {
                return self.answer(requests);
            }
        }
    }

    /// Ends the current request and readies the reader for the next.
    pub fn finish(&mut self) -> Option<InFlight> {
        self.reader.reset();
        self.busy.take()
    }
}
