//! mandelweb's integration tests, one module per area: the service over
//! real HTTP, and its PostgreSQL half against a real cluster.

mod postgres;
mod service;
mod support;
