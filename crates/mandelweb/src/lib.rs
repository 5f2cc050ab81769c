//! mandelweb: the reference service of hammer's seeds, served with
//! hammer-diag's diagnostics ([`service`]). Its CPU-bound half is
//! `GET /mandelbrot`: a view of the plane ([`view`]) rendered to a grayscale
//! PNG ([`render`]) by a fast renderer that is pixel-identical to a plain
//! scalar oracle. Its PostgreSQL-bound half is `POST /find-by-age` ([`db`]),
//! with or without a connection pool, as in the seed's tuning experiment.
//! It sits on `hammer-diag`; the `hammer` binary sits above it (`hammer
//! mandelweb`, the lab's built-in target).
//!
//! ```
//! use mandelweb::render::{fast, oracle};
//! use mandelweb::view::View;
//!
//! let view = View { width: 32, height: 32, ..View::default() };
//! let counts = fast::escape_counts(&view, fast::Threads::All, fast::Kernel::Auto);
//! assert_eq!(counts, oracle::escape_counts(&view));
//! ```

pub mod app;
pub mod db;
pub mod render;
pub mod service;
pub mod view;
