//! The `mandelweb` binary; the program itself is [`mandelweb::app`].

/// jemalloc, for memory that stays flat: what the service frees goes back
/// to the system within a second or so (a background thread purges dirty
/// pages after 1 s), so RSS returns near idle after a burst of connections
/// closes (glibc's malloc kept 64 MiB after 10,000 had closed, from 7 MiB
/// idle). It also gives `/debug/pprof/heap` its sampled heap profile.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads its options from this symbol at start: purge freed
/// pages after 1 s on a background thread; profile the heap, sampling
/// every 512 KiB allocated (a cost too small to measure).
// SAFETY: a NUL-terminated static string, read once by jemalloc.
#[allow(non_upper_case_globals, unsafe_code)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,prof:true,prof_active:true,lg_prof_sample:19\0";

fn main() -> anyhow::Result<()> {
    mandelweb::app::main_from(std::env::args_os())
}
