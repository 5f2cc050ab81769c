//! Defines a request on the wire as both protocols carry it: what the
//! worker knows of it while it is in flight ([`InFlight`]), and how it
//! ended ([`Ended`]). HTTP/1.1 connections carry one at a time, HTTP/2
//! connections many; the worker records either the same way.

use std::time::Instant;

use hammer_core::recorder::ErrorKind;

use crate::response::Done;

/// The request a busy connection is carrying.
#[derive(Debug, Clone, Copy)]
pub struct InFlight {
    /// Index of the prepared request.
    pub req: usize,
    /// When the pacer wanted it sent.
    pub intended: Instant,
    /// When the worker started it.
    pub sent: Instant,
    /// Bytes of the request written so far.
    pub written: usize,
    /// Response bytes received so far.
    pub bytes_in: u64,
}

/// How a request on the connection ended.
#[derive(Debug)]
pub enum Ended {
    /// A complete response.
    Response(InFlight, Done),
    /// A failure of this request only.
    Failed(InFlight, ErrorKind),
}
