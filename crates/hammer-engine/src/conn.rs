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

/// The request a busy connection is carrying.
#[derive(Debug, Clone, Copy)]
pub struct InFlight {
    /// Index of the prepared request.
    pub req: usize,
    /// When the pacer wanted it sent.
    pub intended: Instant,
    /// When the worker started it.
    pub sent: Instant,
    /// Bytes of the request written so far.
    pub written: usize,
    /// Response bytes received so far.
    pub bytes_in: u64,
}

/// Set-up times of a connection not yet recorded.
#[derive(Debug, Default, Clone, Copy)]
pub struct Setup {
    /// TCP connect.
    pub connect: Option<Duration>,
    /// TLS handshake, from connected to the handshake's end.
    pub handshake: Option<Duration>,
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
    /// Set-up times for the worker to record.
    pub setup: Setup,
    /// The request in flight, if any.
    pub busy: Option<InFlight>,
    /// Whether the target has answered on this connection yet.
    pub answered: bool,
    reader: ResponseReader,
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
    pub fn connect(
        addr: SocketAddr,
        tls: Option<&Tls>,
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
            setup: Setup::default(),
            busy: None,
            answered: false,
            reader: ResponseReader::default(),
        })
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
        let Some(tls) = self.tls.as_deref_mut() else {
            return Step::Wait;
        };
        let handshaking = self.handshaking_since.is_some();
        loop {
            if let Some(f) = &mut self.busy {
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
                    Err(_) if self.busy.is_none() => return Step::Drop,
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
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An error on an idle connection ends only the connection.
                Err(_) if self.busy.is_none() => return Step::Drop,
                Err(e) => return Step::Fail(io_error(&e)),
            };
            let Some(f) = &mut self.busy else {
                // The peer closed an idle keep-alive connection, or sent bytes
                // nobody asked for: either way the connection is done.
                return Step::Drop;
            };
            if n == 0 {
                return match self.reader.eof() {
                    Some(done) => Step::Complete(done),
                    None => Step::Fail(ErrorKind::Closed),
                };
            }
            f.bytes_in += n as u64;
            match self.reader.feed(&scratch[..n], requests[f.req].head) {
                Ok(Feed::Done(done)) => return Step::Complete(done),
                Ok(Feed::More) if n < scratch.len() => return Step::Wait,
                Ok(Feed::More) => {}
                Err(_) => return Step::Fail(ErrorKind::BadResponse),
            }
        }
    }

    /// Over TLS: reads records, lets the session process them (answering
    /// handshake messages), and feeds the plaintext to the response reader.
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
                Err(_) if self.busy.is_none() => return Step::Drop,
                Err(e) => return Step::Fail(io_error(&e)),
            }
            let handshaking = self.handshaking_since.is_some();
            if tls.process_new_packets().is_err() {
                // The session has queued an alert for the peer; send it on
                // the way out, as a courtesy.
                let _ = tls.write_tls(&mut self.stream);
                return match self.busy {
                    None if !handshaking => Step::Drop,
                    _ => Step::Fail(tls_error(handshaking)),
                };
            }
            if let Some(since) = self.handshaking_since {
                if !tls.is_handshaking() {
                    self.handshaking_since = None;
                    self.setup.handshake = Some(since.elapsed());
                }
            }
            if tls.wants_write()
                || self
                    .busy
                    .is_some_and(|f| f.written < requests[f.req].bytes.len())
            {
                match self.write_tls(requests) {
                    Step::Wait => {}
                    other => return other,
                }
            }
            let Some(tls) = self.tls.as_deref_mut() else {
                return Step::Wait;
            };
            loop {
                let n = match tls.reader().read(scratch) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // The peer closed the socket without close_notify, as
                    // most HTTP servers do: an end of stream like any other.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
                    Err(_) => return Step::Fail(ErrorKind::TlsAlert),
                };
                let Some(f) = &mut self.busy else {
                    return Step::Drop;
                };
                if n == 0 {
                    return match self.reader.eof() {
                        Some(done) => Step::Complete(done),
                        None => Step::Fail(ErrorKind::Closed),
                    };
                }
                f.bytes_in += n as u64;
                match self.reader.feed(&scratch[..n], requests[f.req].head) {
                    Ok(Feed::Done(done)) => return Step::Complete(done),
                    Ok(Feed::More) => {}
                    Err(_) => return Step::Fail(ErrorKind::BadResponse),
                }
            }
            if closed {
                return match (&self.busy, self.reader.eof()) {
                    (None, _) => Step::Drop,
                    (Some(_), Some(done)) => Step::Complete(done),
                    (Some(_), None) if self.handshaking_since.is_some() => {
                        Step::Fail(ErrorKind::TlsHandshake)
                    }
                    (Some(_), None) => Step::Fail(ErrorKind::Closed),
                };
            }
            if blocked {
                return Step::Wait;
            }
        }
    }

    /// Ends the current request and readies the reader for the next.
    pub fn finish(&mut self) -> Option<InFlight> {
        self.reader.reset();
        self.busy.take()
    }
}
