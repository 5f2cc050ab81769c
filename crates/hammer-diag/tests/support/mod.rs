//! Test support: a real service on loopback built with hammer-diag, a
//! raw HTTP/1.1 client over TCP, and a log capture.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use hammer_diag::{Diag, Options, Shutdown};

/// Every log line written by this test process.
pub fn logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Capture(writer.clone()))
            .init();
        buf
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A running service.
pub struct Service {
    pub public: SocketAddr,
    pub diag: SocketAddr,
    pub shutdown: Shutdown,
    pub diag_handle: Diag,
    pub done: std::sync::mpsc::Receiver<std::io::Result<()>>,
}

/// The service's own routes: fast, slow, panicking, logging.
pub fn app() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello\n" }))
        .route(
            "/slow/{ms}",
            get(
                |axum::extract::Path(ms): axum::extract::Path<u64>| async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    "slow\n"
                },
            ),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("boom in a handler");
                }
                "unreachable\n"
            }),
        )
        .route(
            "/log",
            get(|| async {
                tracing::info!("inside the handler");
                "logged\n"
            }),
        )
}

/// Starts the service on its own runtime thread.
pub fn start(options: Options) -> Service {
    log_buffer();
    let (tx, rx) = std::sync::mpsc::channel();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let diag = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let d = Diag::new("1.0.42-abc1234-20261125.101500", options);
            addr_tx
                .send((
                    public.local_addr().unwrap(),
                    diag.local_addr().unwrap(),
                    d.clone(),
                ))
                .unwrap();
            let _ = tx.send(d.serve(app(), public, Some(diag)).await);
        });
    });
    let (public, diag, d) = addr_rx.recv().unwrap();
    // Wait until the accept loop runs.
    for _ in 0..200 {
        if d.is_ready() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Service {
        public,
        diag,
        shutdown: d.shutdown_handle(),
        diag_handle: d,
        done: rx,
    }
}

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One keep-alive connection.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends a GET and reads its response; `Err` when the connection ends first.
    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.stream
            .write_all(req.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        self.read_response()
    }

    fn read_response(&mut self) -> Result<Response, String> {
        let mut chunk = [0u8; 4096];
        loop {
            let mut hs = [httparse::EMPTY_HEADER; 32];
            let mut res = httparse::Response::new(&mut hs);
            if let httparse::Status::Complete(head) =
                res.parse(&self.buf).map_err(|e| e.to_string())?
            {
                let headers: Vec<(String, String)> = res
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().unwrap());
                if self.buf.len() >= head + len {
                    let body = String::from_utf8_lossy(&self.buf[head..head + len]).into_owned();
                    let status = res.code.unwrap();
                    self.buf.drain(..head + len);
                    return Ok(Response {
                        status,
                        headers,
                        body,
                    });
                }
            }
            match self.stream.read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => return Err("closed before a response".into()),
                Ok(0) => {
                    return Err(format!(
                        "closed mid-response after {} bytes",
                        self.buf.len()
                    ))
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }
}

/// One request on a new connection.
pub fn fetch(addr: SocketAddr, path: &str) -> Response {
    Client::connect(addr).get(path, &[]).unwrap()
}
