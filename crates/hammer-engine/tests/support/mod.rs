//! Test support: a keep-alive HTTP/1.1 server on loopback, on plain
//! threads, that counts the connections it accepts.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A running server.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    accepted: Arc<AtomicU64>,
}

impl Server {
    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A keep-alive server that answers each request head with a fixed
/// response, from buffers allocated once per connection.
pub fn server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut stream = stream;
                let _ = stream.set_nodelay(true);
                let response =
                    b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok";
                let mut buf = [0u8; 4096];
                let mut seen = 0;
                loop {
                    let Ok(n) = stream.read(&mut buf[seen..]) else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen += n;
                    // hammer never pipelines: one head ends each read burst.
                    if buf[..seen].ends_with(b"\r\n\r\n") {
                        seen = 0;
                        if stream.write_all(response).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Server { addr, accepted }
}
