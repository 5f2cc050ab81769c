//! Provides the lines' wall-clock time: RFC 3339 UTC with microseconds,
//! taken from a monotonic reading anchored to the system clock once a
//! second per thread, its second's text made once.

use std::cell::RefCell;
use std::fmt;
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::format::Writer;

/// Writes the time now as RFC 3339 UTC with microseconds
/// (`2026-11-26T08:15:07.537005Z`).
pub(crate) fn timestamp(w: &mut Writer<'_>) -> fmt::Result {
    with_timestamp(|second, micros| {
        w.write_str(second)?;
        write!(w, "{micros:06}Z")
    })
}

/// Calls `f` with the time now as its part up to the second
/// (`2026-11-26T08:15:07.`, made once a second per thread) and its
/// microseconds.
pub(crate) fn with_timestamp<R>(f: impl FnOnce(&str, u32) -> R) -> R {
    with_timestamp_at(Instant::now(), f)
}

/// What a thread's lines take their wall-clock time from: a reading of the
/// system clock and of the monotonic clock taken together, at most a
/// second old, and the text of the second being written.
struct Clock {
    anchor: Option<(Instant, Duration)>,
    second: u64,
    prefix: String,
}

/// Calls `f` with the wall-clock time of `at` (a monotonic reading the
/// caller already made, such as the one a request's duration came from,
/// so a line costs no second clock read), as with [`with_timestamp`]. The
/// system clock is read again once a second: between two readings the
/// time moves with the monotonic clock, which NTP slews by at most 0.05%,
/// so a line's time is off by 0.5 ms at the very worst.
pub(crate) fn with_timestamp_at<R>(at: Instant, f: impl FnOnce(&str, u32) -> R) -> R {
    thread_local! {
        static CLOCK: RefCell<Clock> = const {
            RefCell::new(Clock { anchor: None, second: u64::MAX, prefix: String::new() })
        };
    }
    let read_system_clock = || {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (Instant::now(), wall)
    };
    let wall_at = |(when, wall): (Instant, Duration)| match at.checked_duration_since(when) {
        Some(after) => wall + after,
        None => wall.saturating_sub(when - at),
    };
    let mut f = Some(f);
    let mut call = |second: &str, micros| (f.take().expect("called once"))(second, micros);
    let cached = CLOCK.try_with(|clock| {
        let mut clock = clock.borrow_mut();
        let within_anchor_second = clock.anchor.and_then(|(when, wall)| {
            let after = at.checked_duration_since(when)?;
            (after < Duration::from_secs(1)).then(|| wall + after)
        });
        let now = within_anchor_second.unwrap_or_else(|| {
            let anchor = read_system_clock();
            clock.anchor = Some(anchor);
            wall_at(anchor)
        });
        let secs = now.as_secs();
        if clock.second != secs {
            clock.prefix = second_prefix(secs);
            clock.second = secs;
        }
        call(&clock.prefix, now.subsec_micros())
    });
    match cached {
        Ok(r) => r,
        // During thread teardown: made for this line.
        Err(_) => {
            let now = wall_at(read_system_clock());
            call(&second_prefix(now.as_secs()), now.subsec_micros())
        }
    }
}

/// `2026-11-26T08:15:07.` for a count of seconds since 1970.
pub(crate) fn second_prefix(secs: u64) -> String {
    let (y, mo, d) = civil_date(secs / 86_400);
    let t = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

pub(crate) fn push_timestamp(out: &mut Vec<u8>, at: Instant) {
    with_timestamp_at(at, |second, micros| {
        out.extend_from_slice(second.as_bytes());
        push_six_digits(out, micros);
        out.push(b'Z');
    });
}

/// `n` (below 10^6) in six digits, zeros in front.
pub(crate) fn push_six_digits(out: &mut Vec<u8>, mut n: u32) {
    let mut digits = [b'0'; 6];
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&digits);
}

/// The (year, month, day) of a count of days since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
pub(crate) fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}
