//! Test support shared by hammer's crates: a raw HTTP/1.1 client over a
//! plain TCP stream, so tests see exactly what a client would (complete
//! responses, connections closed before or in the middle of one), and a
//! throwaway PostgreSQL cluster ([`postgres::Cluster`]), the judge of a
//! Prometheus exposition ([`promtool_check_metrics`]), and a wait for a
//! child process's exit ([`exit_within`]), and a server that pauses on a
//! schedule and measures each request's residence itself, the truth latency
//! is graded against ([`pause_server`]). It is a dev-dependency of the
//! crates whose tests start servers; no crate's library sits above it.
//! Its own test (`tests/floors.rs`) checks the workspace's module floors.

pub mod pause_server;
pub mod postgres;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of this name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One keep-alive connection.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// The error text when the peer closed before any byte of a response.
pub const CLOSED_BEFORE_RESPONSE: &str = "closed before a response";

impl Client {
    /// Connects, with a 10 s read timeout.
    pub fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr, Duration::from_secs(10)).expect("connect")
    }

    /// Connects within `timeout`, with a 10 s read timeout; `Err` when
    /// nothing answers.
    pub fn try_connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Client {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends a GET and reads its response; `Err` when the connection ends first.
    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
        self.request("GET", path, headers, &[])
    }

    /// Sends a request with a body (with its Content-Length when not empty)
    /// and reads its response; `Err` when the connection ends first.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, String> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || method != "GET" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.stream
            .write_all(&bytes)
            .map_err(|e| format!("write: {e}"))?;
        self.read_response()
    }

    fn read_response(&mut self) -> Result<Response, String> {
        let mut chunk = [0u8; 16 * 1024];
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
                if let Some((body, used)) = framed_body(&headers, &self.buf[head..])? {
                    let status = res.code.unwrap_or(0);
                    self.buf.drain(..head + used);
                    return Ok(Response {
                        status,
                        headers,
                        body,
                    });
                }
            }
            match self.stream.read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => return Err(CLOSED_BEFORE_RESPONSE.into()),
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

/// The body that follows a response head with these `headers`, and the
/// bytes it took, once it is all in `rest`: chunked or `Content-Length`
/// framed (none: empty).
fn framed_body(
    headers: &[(String, String)],
    rest: &[u8],
) -> Result<Option<(Vec<u8>, usize)>, String> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return dechunk(rest);
    }
    let len: usize = header("content-length").map_or(Ok(0), |v| {
        v.parse().map_err(|_| "bad content-length".to_string())
    })?;
    Ok((rest.len() >= len).then(|| (rest[..len].to_vec(), len)))
}

/// A chunked body's data and the bytes it took, once it is all in `buf`
/// (trailers are not supported).
fn dechunk(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let (size_len, size) = match httparse::parse_chunk_size(&buf[at..]) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err("bad chunk size".into()),
        };
        let size = usize::try_from(size).map_err(|_| "chunk too large".to_string())?;
        let data = at + size_len;
        if buf.len() < data + size + 2 {
            return Ok(None);
        }
        if &buf[data + size..data + size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        body.extend_from_slice(&buf[data..data + size]);
        at = data + size + 2;
        if size == 0 {
            return Ok(Some((body, at)));
        }
    }
}

/// One GET on a new connection; panics if it fails.
pub fn fetch(addr: SocketAddr, path: &str) -> Response {
    Client::connect(addr)
        .get(path, &[])
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// One GET on a new connection (connecting within 2 s), or `None` when
/// nothing answers or the connection ends before a whole response.
pub fn try_fetch(addr: SocketAddr, path: &str) -> Option<Response> {
    Client::try_connect(addr, Duration::from_secs(2))
        .ok()?
        .get(path, &[])
        .ok()
}

/// One POST of `body` on a new connection; panics if it fails.
pub fn post(addr: SocketAddr, path: &str, body: &[u8]) -> Response {
    Client::connect(addr)
        .request("POST", path, &[("Content-Type", "application/json")], body)
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// `promtool check metrics` (Debian `prometheus`; `./test` installs it)
/// judges a Prometheus text exposition: it must pass with no lint finding.
pub fn promtool_check_metrics(text: &str) {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is needed: apt-get install prometheus (./test does)");
    child
        .stdin
        .take()
        .expect("a piped stdin")
        .write_all(text.as_bytes())
        .expect("promtool reads its input");
    let out = child.wait_with_output().expect("promtool runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
}

/// Waits for `child` to exit and returns its status; fails the test,
/// saying `what` did not exit, when it is still running after `limit`.
pub fn exit_within(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("the child can be waited on") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
