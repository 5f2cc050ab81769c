//! Provides request IDs: the client's `x-request-id` when it sent a usable
//! one, else 16 hex digits made up here, and the rule for which responses
//! carry them.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;

/// The header that carries request IDs in and out.
pub const REQUEST_ID: &str = "x-request-id";
static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static(REQUEST_ID);

/// Two hex digits for each byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let digits = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        pairs[i] = [digits[i >> 4], digits[i & 0xf]];
        i += 1;
    }
    pairs
};

/// A semi-unique request ID: 16 hex digits, different across restarts.
fn new_request_id_bytes() -> [u8; 16] {
    /// Each thread counts in a range of its own (2^40 IDs), so making an ID
    /// takes no atomic operation.
    static RANGES: AtomicU64 = AtomicU64::new(0);
    static SEED: OnceLock<u64> = OnceLock::new();
    thread_local! {
        /// The thread's next count; 0 (mod 2^40) when it needs a range.
        static NEXT: Cell<u64> = const { Cell::new(0) };
    }
    let seed = *SEED.get_or_init(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        now.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
    });
    let take_range = || RANGES.fetch_add(1, Ordering::Relaxed) << 40;
    let count = NEXT
        .try_with(|next| {
            let mut n = next.get();
            if n % (1 << 40) == 0 {
                // First use, or this thread's range is spent.
                n = take_range();
            }
            next.set(n + 1);
            n
        })
        .unwrap_or_else(|_| take_range());
    // splitmix64: consecutive counters give unrelated-looking IDs.
    let mut z = seed.wrapping_add(count.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let mut out = [0u8; 16];
    for (pair, byte) in out.chunks_exact_mut(2).zip(z.to_be_bytes()) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
    out
}

/// The client's `x-request-id` when it is printable and at most 128 bytes.
fn given_header(req: &Request) -> Option<HeaderValue> {
    let headers = req.headers();
    // For the handful of headers most requests carry, comparing names
    // beats hashing the one looked for.
    let given = if headers.len() <= 8 {
        headers
            .iter()
            .find_map(|(name, value)| (*name == REQUEST_ID_HEADER).then_some(value))
    } else {
        headers.get(&REQUEST_ID_HEADER)
    }?;
    let bytes = given.as_bytes();
    (!bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(u8::is_ascii_graphic))
        .then(|| given.clone())
}

/// A request's ID: the client's, or one made up here (kept as its bytes
/// until the response needs a header: a `HeaderValue` made from bytes and
/// then shared costs two allocations).
#[derive(Clone)]
pub(crate) enum RequestId {
    Given(HeaderValue),
    Made([u8; 16]),
}

impl RequestId {
    /// The client's ID, when it sent one that can name a request.
    pub(crate) fn given(req: &Request) -> Option<Self> {
        given_header(req).map(RequestId::Given)
    }

    pub(crate) fn made() -> Self {
        RequestId::Made(new_request_id_bytes())
    }

    /// The ID's bytes: printable ASCII, whichever kind it is.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            RequestId::Given(value) => value.as_bytes(),
            RequestId::Made(bytes) => bytes,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            RequestId::Given(value) => value.to_str().unwrap_or("?"),
            RequestId::Made(bytes) => std::str::from_utf8(bytes).unwrap_or("?"),
        }
    }

    fn into_header_value(self) -> HeaderValue {
        match self {
            RequestId::Given(value) => value,
            RequestId::Made(bytes) => {
                HeaderValue::from_bytes(&bytes).expect("hex digits are a valid header value")
            }
        }
    }

    /// Puts the ID in the response's `x-request-id`: a client's always (it
    /// is echoed); one made up here on an error (status 400 and up), for
    /// the user to quote to whoever reads the log. On every success it
    /// would cost a header nobody reads (about 3% of a 5 µs request's
    /// throughput on `bench/diag-overhead.sh`).
    pub(crate) fn return_in(self, response: &mut Response) {
        let status = response.status();
        if matches!(self, RequestId::Given(_))
            || status.is_client_error()
            || status.is_server_error()
        {
            response
                .headers_mut()
                .insert(REQUEST_ID_HEADER.clone(), self.into_header_value());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_sixteen_hex_digits_and_differ() {
        let a = new_request_id_bytes();
        let b = new_request_id_bytes();
        assert_eq!(a.len(), 16);
        assert!(a.iter().all(|c| c.is_ascii_hexdigit()), "{a:?}");
        assert_ne!(a, b);
    }

    #[test]
    fn request_ids_made_on_many_threads_are_all_different() {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..10_000)
                        .map(|_| new_request_id_bytes())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = std::collections::HashSet::new();
        for t in threads {
            for id in t.join().unwrap() {
                assert!(
                    all.insert(id),
                    "{} made twice",
                    String::from_utf8_lossy(&id)
                );
            }
        }
        assert_eq!(all.len(), 40_000);
    }

    #[test]
    fn only_a_printable_client_id_of_at_most_128_bytes_is_taken() {
        let with = |v: &[u8]| {
            let req = Request::builder()
                .header(REQUEST_ID, HeaderValue::from_bytes(v).unwrap())
                .body(axum::body::Body::empty())
                .unwrap();
            given_header(&req)
        };
        assert_eq!(with(b"abc-123").unwrap(), "abc-123");
        assert_eq!(with(b"has space"), None);
        assert_eq!(with(&[b'x'; 129]), None);
        assert!(with(&[b'x'; 128]).is_some());
    }
}
