//! Provides the blocking h2c probe the CLI runs before a run: whether a
//! server speaks HTTP/2 with prior knowledge, and if not, what it said.

use std::net::SocketAddr;
use std::time::Duration;

use super::connection::H2;
use super::frame::{ACK, SETTINGS};

/// Why a server is not one to send h2c to.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No connection.
    #[error("cannot connect to {addr}: {source} (is the service running?)")]
    Connect {
        /// The server.
        addr: SocketAddr,
        /// What connecting said.
        source: std::io::Error,
    },
    /// The preface could not be written.
    #[error("writing the HTTP/2 preface to {addr}: {source}")]
    Write {
        /// The server.
        addr: SocketAddr,
        /// What writing said.
        source: std::io::Error,
    },
    /// It answered something other than SETTINGS, or closed.
    #[error("the server at {addr} does not speak HTTP/2 with prior knowledge (h2c): {}", match answer { Some(a) => format!("it answered {a:?}"), None => "it closed the connection".into() })]
    NotH2c {
        /// The server.
        addr: SocketAddr,
        /// The first line it answered, if any.
        answer: Option<String>,
    },
}

/// Whether the server at `addr` speaks HTTP/2 with prior knowledge (h2c):
/// sends the preface and SETTINGS and reads the first frame back. `Err`
/// says what it answered instead.
pub fn probe_h2c(addr: SocketAddr, timeout: Duration) -> Result<(), ProbeError> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|source| ProbeError::Connect { addr, source })?;
    tcp.set_read_timeout(Some(timeout)).ok();
    let h2 = H2::new(1);
    tcp.write_all(h2.pending())
        .map_err(|source| ProbeError::Write { addr, source })?;
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
    Err(ProbeError::NotH2c {
        addr,
        answer: (!first.is_empty()).then(|| first.to_string()),
    })
}
