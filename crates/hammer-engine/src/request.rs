//! Provides request preparation: each target's bytes are built once before
//! the run, so the hot path only copies a slice into the socket.

use std::net::{SocketAddr, ToSocketAddrs};

use hammer_core::targets::Target;
use url::Url;

/// Why the targets cannot be attacked.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The URL did not parse.
    #[error("malformed URL {url:?}: {why}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// The parser's complaint.
        why: String,
    },
    /// A scheme other than http and https.
    #[error("unsupported scheme {0:?} in {1:?}: hammer speaks http:// and https://")]
    Scheme(String, String),
    /// The host did not resolve.
    #[error("cannot resolve {host:?}: {why}")]
    Resolve {
        /// Host name.
        host: String,
        /// Resolver error.
        why: String,
    },
    /// Targets pointed at more than one origin.
    #[error("all targets must share one origin (scheme, host and port): {0} differs from {1}")]
    MixedOrigins(String, String),
    /// A method that is not an HTTP token.
    #[error("invalid method {0:?}")]
    Method(String),
    /// A header with characters HTTP does not allow.
    #[error("invalid header {0:?}")]
    Header(String),
}

/// A target with its body read into memory.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Method, URL and headers.
    pub target: Target,
    /// The body bytes (empty for none).
    pub body: Vec<u8>,
}

/// A request ready to write, with its target's body.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The exact bytes of the request (HTTP/1.1: head and body).
    pub bytes: Box<[u8]>,
    /// A HEAD request: the response has no body.
    pub head: bool,
    /// Where the body starts in `bytes`.
    pub body_at: usize,
    /// HTTP/2: the request's HPACK header block, valid on any connection.
    pub h2_block: Box<[u8]>,
}

impl Prepared {
    /// The request body.
    pub fn body(&self) -> &[u8] {
        &self.bytes[self.body_at..]
    }
}

/// Headers HTTP/2 forbids (RFC 9113 §8.2.2); `host` becomes `:authority`.
const NOT_IN_H2: [&str; 6] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Where the requests go.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The resolved address connections are made to.
    pub addr: SocketAddr,
    /// `scheme://host:port`, for reports.
    pub display: String,
    /// The host as the URL names it (TLS server name).
    pub host: String,
    /// An https:// origin: connections speak TLS.
    pub https: bool,
}

fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn valid_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Parses and checks a target URL, returning it with its origin text.
pub fn parse_url(text: &str) -> Result<(Url, String), RequestError> {
    let url = Url::parse(text).map_err(|e| RequestError::BadUrl {
        url: text.into(),
        why: e.to_string(),
    })?;
    let scheme = url.scheme();
    if scheme != "http" && scheme != "https" {
        return Err(RequestError::Scheme(scheme.into(), text.into()));
    }
    let host = url.host_str().ok_or_else(|| RequestError::BadUrl {
        url: text.into(),
        why: "no host".into(),
    })?;
    let port = url.port_or_known_default().unwrap_or(80);
    Ok((url.clone(), format!("{scheme}://{host}:{port}")))
}

/// Builds the bytes of every target and resolves their common origin.
pub fn prepare(
    targets: &[Loaded],
    keepalive: bool,
) -> Result<(Origin, Vec<Prepared>), RequestError> {
    let mut origin: Option<(String, Url)> = None;
    let mut prepared = Vec::with_capacity(targets.len());
    for Loaded { target, body } in targets {
        let (url, display) = parse_url(&target.url)?;
        match &origin {
            Some((first, _)) if *first != display => {
                return Err(RequestError::MixedOrigins(display, first.clone()))
            }
            Some(_) => {}
            None => origin = Some((display, url.clone())),
        }
        prepared.push(build(target, &url, body, keepalive)?);
    }
    let (display, url) = origin.expect("parse_targets never yields an empty list");
    let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
    let port = url.port_or_known_default().unwrap_or(80);
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| RequestError::Resolve {
            host: host.into(),
            why: e.to_string(),
        })?
        .next()
        .ok_or_else(|| RequestError::Resolve {
            host: host.into(),
            why: "no addresses".into(),
        })?;
    Ok((
        Origin {
            addr,
            display,
            host: host.into(),
            https: url.scheme() == "https",
        },
        prepared,
    ))
}

fn build(
    target: &Target,
    url: &Url,
    body: &[u8],
    keepalive: bool,
) -> Result<Prepared, RequestError> {
    let method = target.method.to_ascii_uppercase();
    if !valid_token(&method) {
        return Err(RequestError::Method(target.method.clone()));
    }
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    let has = |name: &str| {
        target
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    if !has("host") {
        let host = url.host_str().unwrap_or_default();
        match url.port() {
            Some(p) => head.push_str(&format!("Host: {host}:{p}\r\n")),
            None => head.push_str(&format!("Host: {host}\r\n")),
        }
    }
    if !has("user-agent") {
        head.push_str(concat!(
            "User-Agent: hammer/",
            env!("CARGO_PKG_VERSION"),
            "\r\n"
        ));
    }
    for (name, value) in &target.headers {
        if !valid_token(name) || !valid_value(value) {
            return Err(RequestError::Header(format!("{name}: {value}")));
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let wants_length = !body.is_empty() || matches!(method.as_str(), "POST" | "PUT" | "PATCH");
    if wants_length && !has("content-length") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if !keepalive && !has("connection") {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let body_at = head.len();
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    Ok(Prepared {
        bytes: bytes.into_boxed_slice(),
        head: method == "HEAD",
        body_at,
        h2_block: h2_block(target, url, &method, &path, body, wants_length).into_boxed_slice(),
    })
}

/// The HTTP/2 header block of a target (see [`crate::h2::header_block`]).
fn h2_block(
    target: &Target,
    url: &Url,
    method: &str,
    path: &str,
    body: &[u8],
    wants_length: bool,
) -> Vec<u8> {
    let authority = target
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        });
    let mut headers: Vec<(String, String)> = target
        .headers
        .iter()
        .filter(|(n, v)| {
            let n = n.to_ascii_lowercase();
            !NOT_IN_H2.contains(&n.as_str()) && (n != "te" || v.eq_ignore_ascii_case("trailers"))
        })
        .cloned()
        .collect();
    let has = |headers: &[(String, String)], name: &str| {
        headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    if !has(&headers, "user-agent") {
        headers.push((
            "user-agent".into(),
            concat!("hammer/", env!("CARGO_PKG_VERSION")).into(),
        ));
    }
    if wants_length && !has(&headers, "content-length") {
        headers.push(("content-length".into(), body.len().to_string()));
    }
    crate::h2::header_block(method, url.scheme(), &authority, path, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(method: &str, url: &str, headers: &[(&str, &str)]) -> Target {
        Target {
            method: method.into(),
            url: url.into(),
            headers: headers
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            body: None,
        }
    }

    #[test]
    fn builds_a_post_with_body_and_headers() {
        let t = target(
            "POST",
            "http://127.0.0.1:8080/find?x=1",
            &[("Content-Type", "application/json")],
        );
        let loaded = Loaded {
            target: t,
            body: b"{\"age\":1}".to_vec(),
        };
        let (origin, reqs) = prepare(&[loaded], false).unwrap();
        assert_eq!(origin.display, "http://127.0.0.1:8080");
        let text = String::from_utf8(reqs[0].bytes.to_vec()).unwrap();
        assert!(
            text.starts_with("POST /find?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"),
            "{text}"
        );
        assert!(text.contains("Content-Type: application/json\r\nContent-Length: 9\r\nConnection: close\r\n\r\n{\"age\":1}"));
    }

    #[test]
    fn rejects_what_cannot_be_sent() {
        let load = |t: Target| Loaded {
            target: t,
            body: vec![],
        };
        let bad = |url: &str| prepare(&[load(target("GET", url, &[]))], true).unwrap_err();
        assert!(matches!(bad("not a url"), RequestError::BadUrl { .. }));
        assert!(matches!(bad("ftp://127.0.0.1/"), RequestError::Scheme(..)));
        let (https, _) = prepare(&[load(target("GET", "https://localhost/", &[]))], true).unwrap();
        assert!(
            https.https && https.display == "https://localhost:443" && https.host == "localhost"
        );
        let mixed = [
            load(target("GET", "http://127.0.0.1:1/", &[])),
            load(target("GET", "http://127.0.0.1:2/", &[])),
        ];
        assert!(matches!(
            prepare(&mixed, true),
            Err(RequestError::MixedOrigins(..))
        ));
        let t = target("GET", "http://127.0.0.1/", &[("X", "a\r\nb")]);
        assert!(matches!(
            prepare(&[load(t)], true),
            Err(RequestError::Header(_))
        ));
    }
}
