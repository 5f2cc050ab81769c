//! Provides one client connection of a worker and its request life cycle:
//! connect, write the prepared bytes, read until the response is complete.
//!
//! Each method does the socket calls one readiness event allows and reports
//! what happened as a [`Step`]; recording and bookkeeping stay in the worker.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use hammer_core::recorder::ErrorKind;
use mio::net::TcpStream;

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

/// A client connection.
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// Distinguishes this connection from earlier ones in the same slot.
    pub generation: u64,
    /// When the connect started, while it is still in progress.
    pub connecting_since: Option<Instant>,
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
    pub fn connect(addr: SocketAddr, generation: u64, now: Instant) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            generation,
            connecting_since: Some(now),
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
                self.connecting_since = None;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(connect_error(&e)),
        }
    }

    /// Writes as much of the request as the socket takes.
    pub fn write(&mut self, requests: &[Prepared]) -> Step {
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

    /// Reads what has arrived, into the worker's scratch buffer.
    pub fn read(&mut self, requests: &[Prepared], scratch: &mut [u8]) -> Step {
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

    /// Ends the current request and readies the reader for the next.
    pub fn finish(&mut self) -> Option<InFlight> {
        self.reader.reset();
        self.busy.take()
    }
}
