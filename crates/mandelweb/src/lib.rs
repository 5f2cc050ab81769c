//! mandelweb: the reference service of hammer's seeds. So far it holds the
//! CPU-bound half: `GET /mandelbrot` ([`service`]), a view of the plane
//! ([`view`]) rendered to a grayscale PNG ([`render`]) by a fast renderer
//! that is pixel-identical to a plain scalar oracle, served with
//! hammer-diag's diagnostics. The PostgreSQL `POST /find-by-age` half is to come.
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
pub mod service;
pub mod view;
