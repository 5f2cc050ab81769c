//! Provides the log's options: line format, which request lines, and what
//! a line does when the writer falls behind; each parses from the word a
//! flag gives.

use std::str::FromStr;

/// How each line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `2026-11-26T07:43:14.123456Z  INFO request{method=GET ...}: request end ...`
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message`,
    /// the event's fields and those of the spans it is in.
    Json,
}

/// Which lines each request writes (at `info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequestLogs {
    /// One line when the response is ready: request ID, method, route,
    /// path, status and duration.
    #[default]
    End,
    /// A start line as the request arrives, then the end line: a request
    /// that never ends (a hang, a crash) still shows in the log.
    Both,
    /// Neither; other lines of a request still carry its ID.
    None,
}

/// What a request's line does when the writer thread has fallen behind by
/// the whole buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// The line is dropped and counted; the request does not wait.
    #[default]
    Drop,
    /// The request waits until the writer has room.
    Block,
}

/// How the service logs; see [`super::init_logging_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// Text or JSON lines.
    pub format: LogFormat,
    /// Which lines each request writes.
    pub requests: RequestLogs,
    /// Drop or wait when the writer falls behind.
    pub overflow: Overflow,
    /// Lines held for the writer thread before [`Overflow`] applies.
    pub buffer_lines: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            format: LogFormat::Text,
            requests: RequestLogs::End,
            overflow: Overflow::Drop,
            buffer_lines: 128_000,
        }
    }
}

/// A word that names none of an option's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not one of {allowed}")]
pub struct ParseOptionError {
    value: String,
    allowed: &'static str,
}

fn parse_word<T: Copy>(
    value: &str,
    words: &[(&str, T)],
    allowed: &'static str,
) -> Result<T, ParseOptionError> {
    crate::query::word(value, words).ok_or_else(|| ParseOptionError {
        value: value.to_string(),
        allowed,
    })
}

impl FromStr for LogFormat {
    type Err = ParseOptionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_word(
            s,
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
            "text, json",
        )
    }
}

impl FromStr for RequestLogs {
    type Err = ParseOptionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_word(
            s,
            &[
                ("end", RequestLogs::End),
                ("both", RequestLogs::Both),
                ("none", RequestLogs::None),
            ],
            "end, both, none",
        )
    }
}

impl FromStr for Overflow {
    type Err = ParseOptionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_word(
            s,
            &[("drop", Overflow::Drop), ("block", Overflow::Block)],
            "drop, block",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_words_parse_and_say_what_is_allowed() {
        assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("both".parse::<RequestLogs>(), Ok(RequestLogs::Both));
        assert_eq!("block".parse::<Overflow>(), Ok(Overflow::Block));
        assert_eq!(
            "yaml".parse::<LogFormat>().unwrap_err().to_string(),
            "\"yaml\" is not one of text, json"
        );
    }
}
