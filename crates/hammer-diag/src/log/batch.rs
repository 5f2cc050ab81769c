//! Provides the log's writer: formatted lines are appended to one shared
//! buffer under a mutex (a copy, no allocation, no system call) and a
//! writer thread takes the whole buffer every 10 ms, or sooner when it
//! passes 1 MiB, and writes it to stderr in one call. A request's line
//! therefore costs its formatting and a memcpy; a line-per-`write` logger
//! or a per-line channel wakes a thread or enters the kernel per line.
//! While lines keep coming the writer wakes by its own timer, once a
//! batch, and nobody wakes it: on a core that also serves requests each
//! wake-up preempts one, which cost a logged request more than its line
//! when the writer slept after each batch (the next line woke it) and
//! was woken under the lock (to block on it at once).
//! Bounded: past `limit` lines waiting, a line is dropped and counted, or
//! with `block` the logging thread waits for room. Closing writes out what
//! is buffered, then every later line goes straight to stderr.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// Longest a line waits in the buffer while the service is busy.
const FLUSH_EVERY: Duration = Duration::from_millis(10);

/// A buffer this large is written at once.
const HIGH_WATER: usize = 1 << 20;

/// Longest closing waits for the writer thread (a stderr nobody reads
/// must not hold the process).
const CLOSE_WAIT: Duration = Duration::from_secs(2);

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    /// Lines in `buf`.
    lines: usize,
    /// The writer waits for a first line (no timeout): wake it for one.
    writer_idle: bool,
    /// Threads waiting for room (block mode).
    blocked: usize,
    /// The writer has been told to finish.
    closing: bool,
}

struct Shared {
    state: Mutex<State>,
    /// The writer waits on it.
    wake: Condvar,
    /// Blocked loggers wait on it.
    room: Condvar,
    dropped: AtomicU64,
    /// Times a logger woke the writer.
    wakes: AtomicU64,
    limit: usize,
    block: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a buffer still worth writing.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, line: &[u8]) {
        self.push_with(|buf| buf.extend_from_slice(line));
    }

    /// Appends the line `write` adds to a buffer (one whole line).
    fn push_with(&self, write: impl FnOnce(&mut Vec<u8>)) {
        let mut st = self.lock();
        if st.lines >= self.limit && !st.closing {
            if !self.block {
                drop(st);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            st.blocked += 1;
            st = self
                .room
                .wait_while(st, |st| st.lines >= self.limit && !st.closing)
                .unwrap_or_else(|e| e.into_inner());
            st.blocked -= 1;
        }
        if st.closing {
            drop(st);
            let mut line = Vec::new();
            write(&mut line);
            let _ = std::io::stderr().lock().write_all(&line);
            return;
        }
        let before = st.buf.len();
        write(&mut st.buf);
        st.lines += 1;
        let crossed = st.buf.len() >= HIGH_WATER && before < HIGH_WATER;
        let wake = st.writer_idle || crossed;
        st.writer_idle = false;
        // Woken while this thread held the lock, the writer would run only
        // to block on it again: two more context switches, on a busy core
        // each one taken from the requests.
        drop(st);
        if wake {
            self.wakes.fetch_add(1, Ordering::Relaxed);
            self.wake.notify_one();
        }
    }
}

/// The writer thread and the handle loggers write through.
#[derive(Clone)]
pub(crate) struct Batcher {
    shared: Arc<Shared>,
}

/// Stops the writer thread when dropped, after it has written everything.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Batcher {
    /// Starts the writer thread over `out`: at most `limit` lines wait;
    /// past it, `block` waits for room and otherwise the line is dropped.
    pub(crate) fn start(
        out: impl Write + Send + 'static,
        limit: usize,
        block: bool,
    ) -> std::io::Result<(Batcher, Writer)> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            room: Condvar::new(),
            dropped: AtomicU64::new(0),
            wakes: AtomicU64::new(0),
            limit: limit.max(1),
            block,
        });
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_batches(&for_thread, out))?;
        Ok((
            Batcher {
                shared: shared.clone(),
            },
            Writer {
                shared,
                thread: Some(thread),
            },
        ))
    }

    /// Hands the writer the whole line `write` appends to its buffer
    /// (formatted in place, under the buffer's lock: no copy).
    pub(crate) fn push_with(&self, write: impl FnOnce(&mut Vec<u8>)) {
        self.shared.push_with(write);
    }

    /// Lines dropped because the writer was `limit` lines behind.
    pub(crate) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

fn write_batches(shared: &Shared, mut out: impl Write) {
    let mut spare = Vec::with_capacity(HIGH_WATER * 2);
    loop {
        let closing = {
            let mut st = shared.lock();
            // Let a batch gather: FLUSH_EVERY, or until it is large.
            if !st.closing && st.buf.len() < HIGH_WATER {
                st = shared
                    .wake
                    .wait_timeout_while(st, FLUSH_EVERY, |st| {
                        st.buf.len() < HIGH_WATER && !st.closing
                    })
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            // A whole period without a line: sleep until the next one (then
            // gather again). Only then: a writer that went to sleep after
            // every batch would be woken by the next line, a wake-up (and
            // on a busy core a preemption) per batch for nothing.
            if st.buf.is_empty() && !st.closing {
                st.writer_idle = true;
                st = shared
                    .wake
                    .wait_while(st, |st| st.buf.is_empty() && !st.closing)
                    .unwrap_or_else(|e| e.into_inner());
                st.writer_idle = false;
                continue;
            }
            std::mem::swap(&mut st.buf, &mut spare);
            st.lines = 0;
            if st.blocked > 0 {
                shared.room.notify_all();
            }
            st.closing
        };
        if !spare.is_empty() {
            // A failed write (stderr closed) loses this batch, not the process.
            let _ = out.write_all(&spare).and_then(|()| out.flush());
            spare.clear();
        }
        if closing && shared.lock().buf.is_empty() {
            return;
        }
    }
}

impl Writer {
    /// Writes out what is buffered and stops the thread (waiting up to 2 s
    /// for a slow stderr); later lines go straight to stderr.
    pub(crate) fn close(&mut self) {
        {
            let mut st = self.shared.lock();
            st.closing = true;
            self.shared.wake.notify_one();
            self.shared.room.notify_all();
        }
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + CLOSE_WAIT;
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

/// One event's line, handed over whole by the fmt layer's single
/// `write_all`.
pub(crate) struct Line<'a>(&'a Shared);

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Batcher {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line(&self.shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the test can read and slow down.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let mut s = self.0.lock().unwrap();
            s.0.extend_from_slice(b);
            s.1 += 1;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_written_in_batches_and_all_of_them_on_close() {
        let sink = Sink::default();
        let (batcher, mut writer) = Batcher::start(sink.clone(), 100_000, false).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let b = batcher.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        b.make_writer()
                            .write_all(format!("t{t} line {i}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        writer.close();
        let (bytes, writes) = std::mem::take(&mut *sink.0.lock().unwrap());
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text.lines().count(), 20_000);
        for t in 0..4 {
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("t{t} ")))
                .collect();
            assert_eq!(mine.len(), 5_000);
            assert!(
                mine.windows(2).all(|w| {
                    let n = |l: &str| l.rsplit(' ').next().unwrap().parse::<u32>().unwrap();
                    n(w[0]) < n(w[1])
                }),
                "each thread's lines in order"
            );
        }
        assert!(writes < 2_000, "{writes} writes for 20,000 lines");
        assert_eq!(batcher.dropped(), 0);
    }

    #[test]
    fn a_steady_stream_of_lines_wakes_the_writer_once() {
        let sink = Sink::default();
        let (batcher, mut writer) = Batcher::start(sink.clone(), 100_000, false).unwrap();
        // A line every 0.2 ms for 0.3 s: about 30 batches, none of them
        // large, and never a whole period without a line.
        let begin = Instant::now();
        let mut sent = 0;
        while begin.elapsed() < FLUSH_EVERY * 30 {
            batcher.make_writer().write_all(b"a line\n").unwrap();
            sent += 1;
            std::thread::sleep(Duration::from_micros(200));
        }
        let wakes = batcher.shared.wakes.load(Ordering::Relaxed);
        writer.close();
        let (bytes, writes) = std::mem::take(&mut *sink.0.lock().unwrap());
        assert_eq!(bytes.len(), sent * b"a line\n".len());
        assert!(
            writes >= 5,
            "{writes} writes: lines are written as they come"
        );
        // The writer waits a period for each batch; only the first line
        // (the writer asleep since it started) needs to wake it.
        assert!(
            wakes <= 3,
            "the writer was woken {wakes} times for {writes} batches"
        );
    }

    #[test]
    fn past_the_limit_lines_are_dropped_and_counted() {
        /// Blocks every write until the test lets it go.
        struct Stuck(Arc<(Mutex<bool>, Condvar)>);
        impl Write for Stuck {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                let (lock, cv) = &*self.0;
                let _g = cv.wait_while(lock.lock().unwrap(), |go| !*go).unwrap();
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let (batcher, mut writer) = Batcher::start(Stuck(gate.clone()), 10, false).unwrap();
        batcher.make_writer().write_all(b"first\n").unwrap();
        // The writer takes the first batch and blocks in write.
        std::thread::sleep(FLUSH_EVERY * 5);
        for _ in 0..25 {
            batcher.make_writer().write_all(b"more\n").unwrap();
        }
        assert_eq!(batcher.dropped(), 15);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        writer.close();
    }
}
