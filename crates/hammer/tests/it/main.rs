//! hammer's integration tests: the real binary against real servers on
//! loopback, one module per area. One test binary, so that
//! [`support::exclusive`] keeps every timing-sensitive test of every area
//! off the others' CPU, and the suite links hammer's dependencies once.

mod attack;
mod deploy;
mod http2;
mod lab;
mod overload;
mod pauses;
mod shards;
mod support;
mod tls;
