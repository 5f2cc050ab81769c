//! Test support: a keep-alive HTTP/1.1 server on loopback, on plain
//! threads, that counts the connections it accepts; over TCP, or over TLS
//! with a throwaway self-signed certificate.

#![allow(dead_code)]

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

thread_local! {
    /// Set on the server's threads, so that a counting allocator can leave
    /// the server's allocations out.
    pub static SERVER_THREAD: Cell<bool> = const { Cell::new(false) };
}

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
    serve(None)
}

/// The same over TLS, with a self-signed certificate for `localhost`
/// (clients need `--insecure`).
pub fn tls_server() -> Server {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    serve(Some(Arc::new(config)))
}

fn serve(tls: Option<Arc<rustls::ServerConfig>>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        SERVER_THREAD.with(|s| s.set(true));
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            let tls = tls.clone();
            std::thread::spawn(move || {
                SERVER_THREAD.with(|s| s.set(true));
                let _ = stream.set_nodelay(true);
                match tls {
                    None => answer(stream),
                    Some(config) => {
                        let Ok(session) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        answer(rustls::StreamOwned::new(session, stream));
                    }
                }
            });
        }
    });
    Server { addr, accepted }
}

/// An HTTP/2 (h2c) server: hyper on a tokio runtime whose threads are
/// marked as the server's.
pub fn h2_server() -> Server {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_start(|| SERVER_THREAD.with(|s| s.set(true)))
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        SERVER_THREAD.with(|s| s.set(true));
        runtime.block_on(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(hyper::body::Bytes::from_static(b"ok")),
                        ))
                    });
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
                });
            }
        });
    });
    Server { addr, accepted }
}

fn answer(mut stream: impl Read + Write) {
    let response = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok";
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
            if stream.write_all(response).is_err() || stream.flush().is_err() {
                return;
            }
        }
    }
}
