//! Provides HTTP/2 for one client connection, without I/O of its own: the
//! connection writes the frames this state machine queues and feeds it the
//! bytes it reads, as it does for rustls. Floors: [`frame`] and [`hpack`]
//! at the bottom, [`connection`] (the state machine) above them, [`probe`]
//! on top.
//!
//! Requests are prepared once (see [`crate::request`]): their header block
//! uses HPACK's static table and literals *without indexing*, so it does not
//! depend on any connection's dynamic table and is copied, not encoded, per
//! request. Responses are decoded with a per-connection HPACK decoder
//! (httlib-hpack, whose Huffman decoding is table-driven; loona-hpack's
//! built a hash map per Huffman string, 80% of a request's CPU), which
//! keeps the server's dynamic table. The framing (nine
//! bytes of header per frame) is written here: no maintained crate frames
//! HTTP/2 without bringing its own runtime (h2 needs tokio's I/O traits).
//!
//! hammer tells the server its HPACK table size is 0 (SETTINGS_HEADER_
//! TABLE_SIZE): once the server has acknowledged that, its header blocks
//! cannot refer to earlier ones, and `:status` is always the first field
//! (RFC 9113 §8.3), so a block that opens with one of the seven statuses
//! of the static table (RFC 7541 Appendix A, indices 8–14) needs no
//! decoding at all; anything else goes through the decoder.
//!
//! What the client does: one SETTINGS (no push; no HPACK table; large
//! receive windows, so the server is never held up by this client's flow
//! control) and a
//! connection WINDOW_UPDATE after the preface; SETTINGS ACK and PING ACK
//! when asked; request bodies within the server's windows; WINDOW_UPDATE
//! as it consumes; RST_STREAM for a request that timed out. A server's
//! RST_STREAM ends that request (`rst_stream`); GOAWAY stops new streams
//! on the connection, ends those the server will not process (`goaway`)
//! and lets the rest finish.

mod connection;
mod frame;
mod hpack;
mod probe;
#[cfg(test)]
mod tests;

pub use connection::H2;
pub(crate) use hpack::header_block;
pub use probe::{probe_h2c, ProbeError};
