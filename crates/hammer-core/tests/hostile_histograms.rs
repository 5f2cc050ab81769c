//! A result file's histogram cannot make `hammer report` allocate what the
//! file declares: HdrHistogram's V2 deserializer sizes a buffer by the
//! payload length in the header and the counts by the declared bounds, so
//! a few dozen bytes could ask for gigabytes. This binary's allocator
//! records the largest single allocation while such input is decoded.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use hammer_core::histogram::decode_histogram;

struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only noting sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Largest = Largest;

const V2: u32 = 0x1c84_9313;
const V2_DEFLATE: u32 = 0x1c84_9314;

/// An uncompressed V2 header (40 bytes) with the given fields, no payload.
fn header(payload_len: u32, digits: u32, high: u64) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(V2.to_be_bytes());
    b.extend(payload_len.to_be_bytes());
    b.extend(0u32.to_be_bytes());
    b.extend(digits.to_be_bytes());
    b.extend(1u64.to_be_bytes());
    b.extend(high.to_be_bytes());
    b.extend(1.0f64.to_be_bytes());
    b
}

fn deflated(plain: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(plain).unwrap();
    let body = z.finish().unwrap();
    let mut b = V2_DEFLATE.to_be_bytes().to_vec();
    b.extend((body.len() as u32).to_be_bytes());
    b.extend(body);
    b
}

#[test]
fn a_histogram_header_cannot_make_the_decoder_allocate_what_it_declares() {
    let cases = [
        ("payload of 4 GiB", header(u32::MAX, 3, 1_000_000)),
        (
            "payload of 4 GiB, deflated",
            deflated(&header(u32::MAX, 3, 1_000_000)),
        ),
        ("range to 2^64 at 5 digits", header(0, 5, u64::MAX)),
        (
            "9 significant digits",
            [header(8, 9, 1_000_000), vec![0; 8]].concat(),
        ),
        (
            "a deflate bomb",
            deflated(&[header(0, 3, 1_000_000), vec![0; 64 << 20]].concat()),
        ),
    ];
    for (what, bytes) in cases {
        let text = base64::engine::general_purpose::STANDARD.encode(&bytes);
        LARGEST.store(0, Ordering::Relaxed);
        assert!(decode_histogram(&text, "histogram").is_err(), "{what}");
        let largest = LARGEST.load(Ordering::Relaxed);
        assert!(
            largest < 32 << 20,
            "{what}: {} bytes of input made the decoder allocate {largest} bytes at once",
            bytes.len()
        );
    }
}

/// Within the bounds, histograms still decode: hammer's own (compressed)
/// and one written uncompressed by another tool.
#[test]
fn histograms_within_the_bounds_decode() {
    use hdrhistogram::serialization::{Serializer as _, V2Serializer};
    let mut h = hammer_core::recorder::new_histogram();
    for v in [1, 10, 100] {
        h.record(v).unwrap();
    }
    let ours = hammer_core::histogram::encode_histogram(&h);
    assert_eq!(decode_histogram(&ours, "h").unwrap().len(), 3);
    let mut plain = Vec::new();
    V2Serializer::new().serialize(&h, &mut plain).unwrap();
    let text = base64::engine::general_purpose::STANDARD.encode(&plain);
    assert_eq!(decode_histogram(&text, "h").unwrap().len(), 3);
}
