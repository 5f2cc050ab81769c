//! Provides HTTP/2's header compression as this client needs it (RFC
//! 7541): a request's header block made once, independent of any
//! connection ([`header_block`]), and a response's `:status` read from its
//! block ([`StatusDecoder`]) — from the static table with no decoding at
//! all when it can be, else through a per-connection decoder
//! (httlib-hpack, table-driven Huffman) that keeps the server's dynamic
//! table, with the last block remembered so a server that answers alike is
//! not decoded again.

use hammer_core::recorder::ErrorKind;
use httlib_hpack::{Decoder, Encoder};

/// The statuses of HPACK's static table, indexed fields 0x88 to 0x8e.
const STATIC_STATUS: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];

/// Reads the `:status` of a connection's response header blocks.
pub(super) struct StatusDecoder {
    decoder: Decoder<'static>,
    /// The decoder consumes a copy of each header block, into these.
    block_copy: Vec<u8>,
    fields: Vec<(Vec<u8>, Vec<u8>, u8)>,
    /// The last header block that left the HPACK table as it was, and its
    /// status: the same bytes against the same table decode the same, so a
    /// server that answers alike is not decoded again.
    last_block: Vec<u8>,
    last_status: Option<u16>,
}

impl StatusDecoder {
    /// A decoder with HPACK's default table size.
    pub(super) fn new() -> Self {
        Self {
            decoder: Decoder::with_dynamic_size(4096),
            block_copy: Vec::new(),
            fields: Vec::new(),
            last_block: Vec::new(),
            last_status: None,
        }
    }

    /// The status of a complete header block (0 without one). `table_off`:
    /// the server has acknowledged hammer's table size of 0, so its blocks
    /// cannot refer to earlier ones, and a block that opens with a static
    /// status (`:status` comes first, RFC 9113 §8.3) needs no decoding.
    #[inline]
    pub(super) fn status(&mut self, block: &[u8], table_off: bool) -> Result<u16, ErrorKind> {
        match block.first() {
            Some(&first) if table_off && (0x88..=0x8e).contains(&first) => {
                Ok(STATIC_STATUS[usize::from(first - 0x88)])
            }
            _ => match self.last_status {
                Some(status) if self.last_block == block => Ok(status),
                _ => self.decode(block),
            },
        }
    }

    /// Decodes a header block for its `:status` (0 without one), keeping
    /// the HPACK table in step with the server's.
    fn decode(&mut self, block: &[u8]) -> Result<u16, ErrorKind> {
        if !well_framed(block) {
            return Err(ErrorKind::BadResponse);
        }
        self.block_copy.clear();
        self.block_copy.extend_from_slice(block);
        self.fields.clear();
        self.last_status = None;
        self.decoder
            .decode(&mut self.block_copy, &mut self.fields)
            .map_err(|_| ErrorKind::BadResponse)?;
        let status = self
            .fields
            .iter()
            .find(|(name, _, _)| name == b":status")
            .and_then(|(_, value, _)| std::str::from_utf8(value).ok()?.parse().ok())
            .unwrap_or(0u16);
        // A block that inserted into the table, or resized it, changed what
        // the next one means: only a block that did neither is remembered.
        let resized = block.first().is_some_and(|b| b & 0xE0 == 0x20);
        let inserted = self
            .fields
            .iter()
            .any(|(_, _, flags)| flags & Decoder::WITH_INDEXING != 0);
        if !resized && !inserted {
            self.last_block.clear();
            self.last_block.extend_from_slice(block);
            self.last_status = Some(status);
        }
        Ok(status)
    }
}

/// Whether every representation in an HPACK header block is complete:
/// each prefixed integer ends within five octets and each string's bytes
/// are all there (RFC 7541, sections 5 and 6). Only the framing is checked,
/// nothing is decoded; httlib-hpack indexes past the end of a truncated
/// block (a literal whose value is missing panics it), so a server that
/// sends one must get a connection error, not a panic.
fn well_framed(block: &[u8]) -> bool {
    /// The octets an integer with an `n`-bit prefix takes at `at`.
    fn integer(block: &[u8], at: usize, n: u32) -> Option<(usize, u64)> {
        let max = (1u64 << n) - 1;
        let first = u64::from(*block.get(at)?) & max;
        if first < max {
            return Some((1, first));
        }
        let mut value = max;
        for i in 1..=5 {
            let b = *block.get(at + i)?;
            value += u64::from(b & 0x7f) << (7 * (i - 1));
            if b & 0x80 == 0 {
                return Some((i + 1, value));
            }
        }
        None
    }
    /// The octets a string literal takes at `at`.
    fn string(block: &[u8], at: usize) -> Option<usize> {
        let (n, len) = integer(block, at, 7)?;
        let end = at.checked_add(n)?.checked_add(usize::try_from(len).ok()?)?;
        (end <= block.len()).then_some(end - at)
    }
    let mut at = 0;
    while at < block.len() {
        let b = block[at];
        let step = if b & 0x80 != 0 {
            integer(block, at, 7).map(|(n, _)| n)
        } else if b & 0x20 != 0 && b & 0x40 == 0 {
            integer(block, at, 5).map(|(n, _)| n)
        } else {
            // A literal: 6-bit name index with incremental indexing, else 4.
            let prefix = if b & 0x40 != 0 { 6 } else { 4 };
            integer(block, at, prefix).and_then(|(n, index)| {
                let name = if index == 0 {
                    string(block, at + n)?
                } else {
                    0
                };
                let value = string(block, at + n + name)?;
                Some(n + name + value)
            })
        };
        match step {
            Some(n) => at += n,
            None => return false,
        }
    }
    true
}

/// The HPACK header block of a request, independent of any connection: a
/// fresh encoder that never indexes refers only to the static table.
pub(crate) fn header_block(
    method: &str,
    scheme: &str,
    authority: &str,
    path: &str,
    headers: &[(String, String)],
) -> Vec<u8> {
    let mut encoder = Encoder::with_dynamic_size(0);
    let mut out = Vec::new();
    let pseudo = [
        (":method", method),
        (":scheme", scheme),
        (":authority", authority),
        (":path", path),
    ];
    let all = pseudo
        .into_iter()
        .chain(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    for (name, value) in all {
        let field = (
            name.to_ascii_lowercase().into_bytes(),
            value.as_bytes().to_vec(),
            Encoder::BEST_FORMAT,
        );
        // Only an index past the table can fail, and the encoder chose it.
        encoder
            .encode(field, &mut out)
            .expect("a literal always encodes");
    }
    out
}
