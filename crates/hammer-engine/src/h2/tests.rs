//! Tests of the HTTP/2 client against hand-made server frames.

use std::time::Instant;

use hammer_core::recorder::ErrorKind;
use httlib_hpack::{Decoder, Encoder};

use super::connection::H2;
use super::frame::*;
use super::hpack::header_block;
use crate::exchange::{Ended, InFlight};
use crate::request::Prepared;

#[test]
fn a_prepared_header_block_decodes_to_the_request() {
    let block = header_block(
        "POST",
        "https",
        "example.com:8443",
        "/find?x=1",
        &[("Content-Type".into(), "application/json".into())],
    );
    let mut fields = Vec::new();
    Decoder::with_dynamic_size(4096)
        .decode(&mut block.clone(), &mut fields)
        .unwrap();
    let text: Vec<(String, String)> = fields
        .into_iter()
        .map(|(n, v, _)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
        .collect();
    let want = [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "example.com:8443"),
        (":path", "/find?x=1"),
        ("content-type", "application/json"),
    ];
    assert_eq!(
        text,
        want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
    );
}

fn requests() -> Vec<Prepared> {
    let target = hammer_core::targets::Target {
        method: "GET".into(),
        url: "http://127.0.0.1:1/".into(),
        ..Default::default()
    };
    let loaded = crate::request::Loaded {
        target,
        body: vec![],
    };
    crate::request::prepare(&[loaded], true).unwrap().1
}

fn flight() -> InFlight {
    let now = Instant::now();
    InFlight {
        req: 0,
        intended: now,
        sent: now,
        written: 0,
        bytes_in: 0,
    }
}

fn frame(kind: u8, flags: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn outcomes(ended: &mut Vec<Ended>) -> Vec<Result<u16, ErrorKind>> {
    ended
        .drain(..)
        .map(|e| match e {
            Ended::Response(_, done) => Ok(done.status),
            Ended::Failed(_, kind) => Err(kind),
        })
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// A server that sends anything: frames of every type with any
    /// flags, stream ids and payloads (HPACK blocks included), then raw
    /// bytes, in any pieces: the connection fails or goes on, streams
    /// end or wait; never a panic.
    #[test]
    fn hostile_frames_are_connection_errors(
        frames in proptest::collection::vec(
            (0u8..12, proptest::prelude::any::<u8>(), 0u32..9, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..48)),
            0..12,
        ),
        tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        piece in 1usize..64,
    ) {
        let reqs = requests();
        let mut h2 = H2::new(4);
        h2.sent(h2.pending().len());
        for _ in 0..4 {
            h2.start(flight(), &reqs);
        }
        let mut bytes = Vec::new();
        for (kind, flags, id, payload) in &frames {
            bytes.extend(frame(*kind, *flags, *id, payload));
        }
        bytes.extend(&tail);
        let mut ended = Vec::new();
        for chunk in bytes.chunks(piece) {
            if h2.receive(chunk, &reqs, &mut ended).is_err() {
                break;
            }
            let pending = h2.pending().len();
            h2.sent(pending);
        }
        proptest::prop_assert!(ended.len() <= 4);
    }
}

/// The frames a server sends, one by one and split at every byte: what
/// each stream ends with, and what hammer answers.
#[test]
fn a_connection_follows_the_servers_frames() {
    let reqs = requests();
    let mut h2 = H2::new(4);
    h2.sent(h2.pending().len());
    for _ in 0..4 {
        h2.start(flight(), &reqs);
    }
    assert_eq!(h2.free(), 0);
    h2.sent(h2.pending().len());
    let mut ended = Vec::new();
    let mut from_server = Vec::new();
    // SETTINGS: at most 2 streams; then PING.
    from_server.extend(frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 2]));
    from_server.extend(frame(PING, 0, 0, b"12345678"));
    // Stream 1: a 503 as a literal (decoded) in HEADERS + CONTINUATION.
    let mut status_503 = Vec::new();
    Encoder::with_dynamic_size(0)
        .encode((b":status".to_vec(), b"503".to_vec(), 0), &mut status_503)
        .unwrap();
    let (a, b) = status_503.split_at(2);
    from_server.extend(frame(HEADERS, END_STREAM, 1, a));
    from_server.extend(frame(CONTINUATION, END_HEADERS, 1, b));
    // hammer's SETTINGS acknowledged: stream 3 is 0x88, a 200, with a body.
    from_server.extend(frame(SETTINGS, ACK, 0, &[]));
    from_server.extend(frame(HEADERS, END_HEADERS, 3, &[0x88]));
    from_server.extend(frame(DATA, PADDED | END_STREAM, 3, &[1, b'o', b'k', 0]));
    // Stream 5 reset; GOAWAY with last stream 5 ends stream 7.
    from_server.extend(frame(RST_STREAM, 0, 5, &2u32.to_be_bytes()));
    from_server.extend(frame(GOAWAY, 0, 0, &[0, 0, 0, 5, 0, 0, 0, 0]));
    for byte in from_server.chunks(1) {
        h2.receive(byte, &reqs, &mut ended).unwrap();
    }
    assert_eq!(
        outcomes(&mut ended),
        vec![
            Ok(503),
            Ok(200),
            Err(ErrorKind::RstStream),
            Err(ErrorKind::GoAway)
        ]
    );
    assert_eq!((h2.in_flight(), h2.free()), (0, 0));
    assert!(h2.going_away());
    // hammer answered: SETTINGS ACK, then PING ACK with the same payload.
    let answer = h2.pending().to_vec();
    assert_eq!(&answer[..9], &frame(SETTINGS, ACK, 0, &[])[..]);
    assert_eq!(&answer[9..], &frame(PING, ACK, 0, b"12345678")[..]);
}

#[test]
fn a_frame_larger_than_allowed_fails_the_connection() {
    let reqs = requests();
    let mut h2 = H2::new(1);
    let mut ended = Vec::new();
    let head = [0x00, 0x40, 0x01, DATA, 0, 0, 0, 0, 1];
    assert_eq!(
        h2.receive(&head, &reqs, &mut ended),
        Err(ErrorKind::BadResponse)
    );
}

#[test]
fn padding_is_removed_and_bad_padding_refused() {
    assert_eq!(unpad(PADDED, &[2, b'a', b'b', 0, 0]).unwrap(), b"ab");
    assert_eq!(unpad(0, b"ab").unwrap(), b"ab");
    assert!(unpad(PADDED, &[5, b'a']).is_err());
    assert!(unpad(PADDED, &[]).is_err());
}
