//! Provides the incremental HTTP/1.1 response reader of the engine.
//!
//! Bytes arrive in whatever pieces the socket gives; the reader finds the end
//! of one response (Content-Length, chunked, or close-delimited) without
//! keeping the body. Headers are parsed by `httparse` straight from the read
//! buffer, and copied only when they straddle two reads.

/// Headers beyond this many make the response a bad response.
const MAX_HEADERS: usize = 64;
/// A response head longer than this is a bad response.
const MAX_HEAD: usize = 64 * 1024;

/// Why a response was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BadResponse {
    /// The head was not valid HTTP/1.x.
    #[error("invalid response head: {0}")]
    Head(String),
    /// The head was larger than 64 KiB.
    #[error("response head over 64 KiB")]
    HeadTooLarge,
    /// A chunk size line was invalid.
    #[error("invalid chunked encoding")]
    Chunk,
    /// The Content-Length header was invalid.
    #[error("invalid content-length")]
    ContentLength,
}

/// The result of feeding bytes to the reader.
#[derive(Debug, PartialEq)]
pub enum Feed {
    /// The response is not complete yet.
    More,
    /// The response is complete.
    Done(Done),
}

/// A complete response.
#[derive(Debug, PartialEq, Clone, Copy)]
pub struct Done {
    /// HTTP status code.
    pub status: u16,
    /// Whether the connection may carry another request.
    pub keep_alive: bool,
}

#[derive(Debug, PartialEq)]
enum State {
    Head,
    Body { left: u64 },
    ChunkSize,
    ChunkData { left: u64 },
    ChunkCrlf { left: u8 },
    Trailers { line: usize },
    UntilClose,
}

/// Reads one response at a time; call [`ResponseReader::reset`] between them.
#[derive(Debug)]
pub struct ResponseReader {
    state: State,
    /// Head or chunk-size bytes that did not arrive in one piece.
    pending: Vec<u8>,
    status: u16,
    keep_alive: bool,
}

impl Default for ResponseReader {
    fn default() -> Self {
        Self {
            state: State::Head,
            pending: Vec::new(),
            status: 0,
            keep_alive: true,
        }
    }
}

struct Head {
    len: usize,
    status: u16,
    keep_alive: bool,
    body: State,
}

fn parse_head(bytes: &[u8], head_request: bool) -> Result<Option<Head>, BadResponse> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let len = match res.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(BadResponse::Head(e.to_string())),
    };
    let status = res.code.unwrap_or(0);
    let mut keep_alive = res.version == Some(1);
    let mut length = None;
    let mut chunked = false;
    for h in res.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(h.value).map_err(|_| BadResponse::ContentLength)?;
            length = Some(
                text.trim()
                    .parse::<u64>()
                    .map_err(|_| BadResponse::ContentLength)?,
            );
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked is always the last coding when present.
            chunked = last_token(h.value).eq_ignore_ascii_case(b"chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            if has_token(h.value, b"close") {
                keep_alive = false;
            } else if has_token(h.value, b"keep-alive") {
                keep_alive = true;
            }
        }
    }
    let bodiless = head_request || status == 204 || status == 304 || (100..200).contains(&status);
    let body = if bodiless {
        State::Body { left: 0 }
    } else if chunked {
        State::ChunkSize
    } else if let Some(left) = length {
        State::Body { left }
    } else {
        keep_alive = false;
        State::UntilClose
    };
    Ok(Some(Head {
        len,
        status,
        keep_alive,
        body,
    }))
}

/// The comma-separated tokens of a header value, trimmed. Compared without
/// allocating: this runs for every response.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token))
}

fn last_token(value: &[u8]) -> &[u8] {
    tokens(value).last().unwrap_or_default()
}

impl ResponseReader {
    /// Prepares for the next response on the same connection.
    pub fn reset(&mut self) {
        self.state = State::Head;
        self.pending.clear();
        self.keep_alive = true;
    }

    /// Feeds bytes read from the socket. `head_request` says the request was
    /// a HEAD, whose response has no body whatever its headers say.
    pub fn feed(&mut self, mut data: &[u8], head_request: bool) -> Result<Feed, BadResponse> {
        loop {
            match self.state {
                State::Head => {
                    if !self.pending.is_empty() {
                        return self.feed_split_head(data, head_request);
                    }
                    let Some(head) = parse_head(data, head_request)? else {
                        if data.len() > MAX_HEAD {
                            return Err(BadResponse::HeadTooLarge);
                        }
                        self.pending.extend_from_slice(data);
                        return Ok(Feed::More);
                    };
                    data = &data[head.len..];
                    self.start_body(head);
                }
                State::Body { left } => {
                    // Bytes past the end of the body are ignored: hammer
                    // never pipelines, so nothing else can be in flight.
                    let take = left.min(data.len() as u64);
                    if take == left {
                        return Ok(Feed::Done(self.done()));
                    }
                    self.state = State::Body { left: left - take };
                    return Ok(Feed::More);
                }
                State::ChunkSize => {
                    let Some(nl) = data.iter().position(|&b| b == b'\n') else {
                        self.pending.extend_from_slice(data);
                        if self.pending.len() > 1024 {
                            return Err(BadResponse::Chunk);
                        }
                        return Ok(Feed::More);
                    };
                    self.pending.extend_from_slice(&data[..=nl]);
                    data = &data[nl + 1..];
                    let size = match httparse::parse_chunk_size(&self.pending) {
                        Ok(httparse::Status::Complete((_, size))) => size,
                        _ => return Err(BadResponse::Chunk),
                    };
                    self.pending.clear();
                    self.state = if size == 0 {
                        State::Trailers { line: 0 }
                    } else {
                        State::ChunkData { left: size }
                    };
                }
                State::ChunkData { left } => {
                    let take = left.min(data.len() as u64);
                    data = &data[take as usize..];
                    if take < left {
                        self.state = State::ChunkData { left: left - take };
                        return Ok(Feed::More);
                    }
                    self.state = State::ChunkCrlf { left: 2 };
                }
                State::ChunkCrlf { left } => {
                    let take = usize::from(left).min(data.len());
                    data = &data[take..];
                    if take < usize::from(left) {
                        self.state = State::ChunkCrlf {
                            left: left - take as u8,
                        };
                        return Ok(Feed::More);
                    }
                    self.state = State::ChunkSize;
                }
                State::Trailers { mut line } => {
                    for &b in data {
                        match b {
                            b'\n' if line == 0 => return Ok(Feed::Done(self.done())),
                            b'\n' => line = 0,
                            b'\r' => {}
                            _ => line += 1,
                        }
                    }
                    self.state = State::Trailers { line };
                    return Ok(Feed::More);
                }
                State::UntilClose => return Ok(Feed::More),
            }
        }
    }

    /// The peer closed the connection: the response is complete only when it
    /// was delimited by the close.
    pub fn eof(&mut self) -> Option<Done> {
        (self.state == State::UntilClose).then(|| self.done())
    }

    /// Whether any byte of the current response has arrived.
    pub fn started(&self) -> bool {
        self.state != State::Head || !self.pending.is_empty()
    }

    fn done(&mut self) -> Done {
        Done {
            status: self.status,
            keep_alive: self.keep_alive,
        }
    }

    /// The head began in an earlier read: parse it from `pending` with the
    /// new bytes appended, then feed whatever followed it as body.
    fn feed_split_head(&mut self, data: &[u8], head_request: bool) -> Result<Feed, BadResponse> {
        self.pending.extend_from_slice(data);
        let Some(head) = parse_head(&self.pending, head_request)? else {
            if self.pending.len() > MAX_HEAD {
                return Err(BadResponse::HeadTooLarge);
            }
            return Ok(Feed::More);
        };
        let buffered = std::mem::take(&mut self.pending);
        let len = head.len;
        self.start_body(head);
        self.feed(&buffered[len..], head_request)
    }

    fn start_body(&mut self, head: Head) {
        if (100..200).contains(&head.status) && head.status != 101 {
            // An interim response such as 100 Continue: the real one follows.
            self.state = State::Head;
            return;
        }
        self.status = head.status;
        self.keep_alive = head.keep_alive;
        self.state = head.body;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(pieces: &[&[u8]]) -> Result<Feed, BadResponse> {
        let mut r = ResponseReader::default();
        let mut last = Feed::More;
        for p in pieces {
            last = r.feed(p, false)?;
        }
        Ok(last)
    }

    const OK: Feed = Feed::Done(Done {
        status: 200,
        keep_alive: true,
    });

    /// Feeds `bytes` cut at `cuts` until the response ends or fails; the
    /// reader's buffer never holds more than the head limit and a read.
    fn feed_in_pieces(bytes: &[u8], cuts: &[usize], head: bool) -> Result<Feed, BadResponse> {
        let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(bytes.len())).collect();
        cuts.sort_unstable();
        cuts.push(bytes.len());
        let mut r = ResponseReader::default();
        let mut at = 0;
        for cut in cuts {
            let piece = &bytes[at..cut];
            at = cut;
            let fed = r.feed(piece, head);
            assert!(r.pending.len() <= MAX_HEAD + bytes.len().min(1 << 16));
            if !matches!(fed, Ok(Feed::More)) {
                return fed;
            }
        }
        Ok(Feed::More)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// Any bytes in any pieces: a response, more to read, or a bad
        /// response; never a panic.
        #[test]
        fn hostile_bytes_are_bad_responses(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1024),
            cuts in proptest::collection::vec(0usize..1024, 0..6),
            head in proptest::prelude::any::<bool>(),
        ) {
            let _ = feed_in_pieces(&bytes, &cuts, head);
        }

        /// Responses shaped like HTTP, with numbers of any size where
        /// numbers go (Content-Length past u64, chunk sizes past 2^64):
        /// the same ending whatever pieces they come in, and no panic.
        #[test]
        fn a_response_ends_the_same_in_any_pieces(
            text in "HTTP/1\\.[01] [0-9]{3} [A-Za-z]{0,6}\r\n((Content-Length: ?[0-9]{1,22}|Transfer-Encoding: (gzip, )?chunked|Connection: (close|keep-alive)|X-[a-z]{1,4}: [ -~]{0,12})\r\n){0,4}\r\n([0-9a-fA-F]{1,18}(;x=y)?\r\n[a-z]{0,24}\r\n){0,3}(0\r\n(T: v\r\n)?\r\n)?[a-z]{0,8}",
            cuts in proptest::collection::vec(0usize..400, 0..6),
        ) {
            let whole = feed_in_pieces(text.as_bytes(), &[], false);
            let split = feed_in_pieces(text.as_bytes(), &cuts, false);
            proptest::prop_assert_eq!(whole, split, "{:?} cut at {:?}", text, cuts);
        }
    }

    #[test]
    fn content_length_in_one_piece_and_byte_by_byte() {
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(read_all(&[resp]).unwrap(), OK);
        let bytes: Vec<&[u8]> = resp.chunks(1).collect();
        let mut r = ResponseReader::default();
        for (i, b) in bytes.iter().enumerate() {
            let f = r.feed(b, false).unwrap();
            assert_eq!(f == OK, i + 1 == bytes.len(), "byte {i}");
        }
    }

    #[test]
    fn chunked_with_trailers_split_anywhere() {
        let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n";
        for split in 1..resp.len() {
            let (a, b) = resp.split_at(split);
            assert_eq!(read_all(&[a, b]).unwrap(), OK, "split at {split}");
        }
    }

    #[test]
    fn close_delimited_and_connection_close() {
        let mut r = ResponseReader::default();
        assert_eq!(
            r.feed(b"HTTP/1.0 200 OK\r\n\r\nbody", false).unwrap(),
            Feed::More
        );
        assert_eq!(
            r.eof(),
            Some(Done {
                status: 200,
                keep_alive: false
            })
        );
        let f = read_all(&[b"HTTP/1.1 503 X\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"]);
        assert_eq!(
            f.unwrap(),
            Feed::Done(Done {
                status: 503,
                keep_alive: false
            })
        );
    }

    #[test]
    fn header_tokens_are_matched_whole_and_case_blind() {
        let head = |h: &str| {
            let text = format!("HTTP/1.1 200 OK\r\n{h}\r\nContent-Length: 0\r\n\r\n");
            match read_all(&[text.as_bytes()]).unwrap() {
                Feed::Done(d) => d.keep_alive,
                Feed::More => panic!("incomplete"),
            }
        };
        assert!(!head("Connection: Close"));
        assert!(!head("Connection: upgrade, close"));
        assert!(head("Connection: keep-alive"));
        assert!(head("Connection: closed-captions"));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(read_all(&[chunked]).unwrap(), OK);
    }

    #[test]
    fn interim_and_bodiless_responses() {
        let f = read_all(&[b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"]);
        assert_eq!(
            f.unwrap(),
            Feed::Done(Done {
                status: 204,
                keep_alive: true
            })
        );
        let mut r = ResponseReader::default();
        let f = r
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", true)
            .unwrap();
        assert_eq!(f, OK);
    }

    #[test]
    fn garbage_is_a_bad_response() {
        assert!(read_all(&[b"SSH-2.0-OpenSSH\r\n\r\n"]).is_err());
        assert!(read_all(&[b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"]).is_err());
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert_eq!(read_all(&[chunked]), Err(BadResponse::Chunk));
        let huge = vec![b'a'; MAX_HEAD + 10];
        assert!(read_all(&[b"HTTP/1.1 200 OK\r\nX: ", &huge]).is_err());
    }

    #[test]
    fn reset_reads_the_next_response() {
        let mut r = ResponseReader::default();
        assert_eq!(
            r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", false)
                .unwrap(),
            OK
        );
        r.reset();
        assert!(!r.started());
        assert_eq!(
            r.feed(b"HTTP/1.1 404 N\r\nContent-Length: 0\r\n\r\n", false)
                .unwrap(),
            Feed::Done(Done {
                status: 404,
                keep_alive: true
            })
        );
    }
}
