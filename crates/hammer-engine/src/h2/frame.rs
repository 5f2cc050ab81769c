//! Defines HTTP/2's framing as this client uses it (RFC 9113 §4, §6): the
//! frame types, flags and settings it knows, its limits, and how a frame's
//! nine-byte head is read and written.

use hammer_core::recorder::ErrorKind;

/// The client connection preface.
pub(super) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub(super) const DATA: u8 = 0x0;
pub(super) const HEADERS: u8 = 0x1;
pub(super) const RST_STREAM: u8 = 0x3;
pub(super) const SETTINGS: u8 = 0x4;
pub(super) const PUSH_PROMISE: u8 = 0x5;
pub(super) const PING: u8 = 0x6;
pub(super) const GOAWAY: u8 = 0x7;
pub(super) const WINDOW_UPDATE: u8 = 0x8;
pub(super) const CONTINUATION: u8 = 0x9;

pub(super) const END_STREAM: u8 = 0x1;
pub(super) const ACK: u8 = 0x1;
pub(super) const END_HEADERS: u8 = 0x4;
pub(super) const PADDED: u8 = 0x8;
pub(super) const PRIORITY: u8 = 0x20;

pub(super) const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub(super) const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub(super) const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub(super) const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;

/// RST_STREAM code for a request hammer gave up on.
pub(super) const CANCEL: u32 = 0x8;
/// The largest frame hammer accepts (the protocol's default; hammer does
/// not raise it).
pub(super) const MAX_FRAME: usize = 16_384;
/// hammer's receive windows, per stream and for the connection.
pub(super) const RECEIVE_WINDOW: u32 = 1 << 30;
/// Window is given back once this much has been consumed.
pub(super) const REPLENISH_AT: u64 = 1 << 29;
/// The window every peer starts with.
pub(super) const DEFAULT_WINDOW: i64 = 65_535;
pub(super) const LAST_STREAM_ID: u32 = (1 << 31) - 1;

/// A frame's head: payload length, type, flags and stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    pub(super) len: usize,
    pub(super) kind: u8,
    pub(super) flags: u8,
    pub(super) id: u32,
}

impl Head {
    /// Reads the nine bytes of a frame's head.
    #[inline]
    pub(super) fn read(b: &[u8; 9]) -> Head {
        Head {
            len: usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            id: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & LAST_STREAM_ID,
        }
    }
}

/// Appends a frame's head to `out`.
#[inline]
pub(super) fn write_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, id: u32) {
    let len = len as u32;
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&id.to_be_bytes());
}

/// The first four bytes of a payload as a 31-bit number (a stream ID or a
/// window increment), or a connection error when they are missing.
#[inline]
pub(super) fn u31(payload: &[u8]) -> Result<u32, ErrorKind> {
    payload
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & LAST_STREAM_ID)
        .ok_or(ErrorKind::BadResponse)
}

/// The payload of a frame without its padding.
pub(super) fn unpad(flags: u8, payload: &[u8]) -> Result<&[u8], ErrorKind> {
    if flags & PADDED == 0 {
        return Ok(payload);
    }
    let (&pad, rest) = payload.split_first().ok_or(ErrorKind::BadResponse)?;
    rest.len()
        .checked_sub(usize::from(pad))
        .map(|end| &rest[..end])
        .ok_or(ErrorKind::BadResponse)
}
