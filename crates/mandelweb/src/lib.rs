//! mandelweb: the reference service of hammer's seeds. This crate so far
//! holds its CPU-bound half, the Mandelbrot renderer behind
//! `GET /mandelbrot`: a view of the plane ([`view`]) rendered to a grayscale
//! PNG ([`render`]) by a fast renderer that is pixel-identical to a plain
//! scalar oracle.
//!
//! ```
//! use mandelweb::render::{fast, oracle};
//! use mandelweb::view::View;
//!
//! let view = View { width: 32, height: 32, ..View::default() };
//! let counts = fast::escape_counts(&view, fast::Threads::All, fast::Kernel::Auto);
//! assert_eq!(counts, oracle::escape_counts(&view));
//! ```

pub mod render;
pub mod view;
