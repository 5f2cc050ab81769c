//! Provides the built-in demo target: a small keep-alive HTTP/1.1 server on
//! a loopback port, so `hammer attack` runs on a fresh machine with no
//! service of one's own. One thread per connection; it answers every
//! request with a short 200.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

const BODY: &[u8] = b"hello from hammer's demo target\n";

/// Starts the demo target on 127.0.0.1 and returns its address.
pub fn spawn() -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name("demo-accept".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = std::thread::Builder::new()
                    .name("demo-conn".into())
                    .spawn(move || serve(stream));
            }
        })?;
    Ok(addr)
}

fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut len = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let head = match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if len < buf.len() => {
                let n = stream.read(&mut buf[len..])?;
                if n == 0 {
                    return Ok(());
                }
                len += n;
                continue;
            }
            _ => {
                stream.write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )?;
                return Ok(());
            }
        };
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
        };
        let body_len: usize = header("content-length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let close = header("connection").is_some_and(|v| v.contains("close"));
        // Read and drop the request body.
        let mut left = (head + body_len).saturating_sub(len);
        while left > 0 {
            let n = stream.read(&mut buf[..left.min(16 * 1024)])?;
            if n == 0 {
                return Ok(());
            }
            left -= n;
        }
        let used = (head + body_len).min(len);
        buf.copy_within(used..len, 0);
        len -= used;
        let connection = if close { "close" } else { "keep-alive" };
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
            BODY.len()
        )
        .into_bytes();
        response.extend_from_slice(BODY);
        stream.write_all(&response)?;
        if close {
            return Ok(());
        }
    }
}
