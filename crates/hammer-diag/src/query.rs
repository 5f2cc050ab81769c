//! Provides the parsing shared by the diagnostics endpoints' query strings:
//! `name=value` pairs, and numbers that must lie in a range (a 400 otherwise).

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// The `name=value` pairs of a query string (`name` alone gives an empty value).
pub fn pairs(query: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// Why a diagnostics endpoint refused its query string (a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum QueryError {
    /// A number outside its range, or not a number.
    #[error("{name} must be between {min} and {max}, got {value:?}")]
    OutOfRange {
        name: &'static str,
        value: String,
        min: String,
        max: String,
    },
    /// A value that is none of the allowed words.
    #[error("{name} must be {allowed}, got {value:?}")]
    NotOneOf {
        name: &'static str,
        value: String,
        allowed: &'static str,
    },
    /// A parameter the endpoint does not take.
    #[error("unknown parameter {name:?}: use {known}")]
    Unknown { name: String, known: &'static str },
}

/// Parses `value` as a number within `range`, or says why not.
pub(crate) fn bounded<T>(
    name: &'static str,
    value: &str,
    range: RangeInclusive<T>,
) -> Result<T, QueryError>
where
    T: FromStr + PartialOrd + Display,
{
    value
        .parse::<T>()
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| QueryError::OutOfRange {
            name,
            value: value.to_string(),
            min: range.start().to_string(),
            max: range.end().to_string(),
        })
}

/// The value `words` names by `value` (any case), if any: the one lookup
/// behind `format=` and the log options' words.
pub fn word<T: Copy>(value: &str, words: &[(&str, T)]) -> Option<T> {
    words
        .iter()
        .find(|(w, _)| w.eq_ignore_ascii_case(value))
        .map(|&(_, v)| v)
}

/// Parses `value` as one of `words`, or says which are allowed (a 400).
pub(crate) fn one_of<T: Copy>(
    name: &'static str,
    value: &str,
    words: &[(&str, T)],
    allowed: &'static str,
) -> Result<T, QueryError> {
    word(value, words).ok_or_else(|| QueryError::NotOneOf {
        name,
        value: value.to_string(),
        allowed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_bounds() {
        let got: Vec<_> = pairs(Some("a=1&&b&c=x=y")).collect();
        assert_eq!(got, vec![("a", "1"), ("b", ""), ("c", "x=y")]);
        assert_eq!(bounded("seconds", "5", 1..=300u64), Ok(5));
        assert_eq!(
            bounded("seconds", "301", 1..=300u64)
                .unwrap_err()
                .to_string(),
            "seconds must be between 1 and 300, got \"301\""
        );
        assert!(bounded("hz", "x", 1..=1000i32).is_err());
    }
}
