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

/// Parses `value` as a number within `range`, or says why not.
pub fn bounded<T>(name: &str, value: &str, range: RangeInclusive<T>) -> Result<T, String>
where
    T: FromStr + PartialOrd + Display,
{
    value
        .parse::<T>()
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| {
            format!(
                "{name} must be between {} and {}, got {value:?}",
                range.start(),
                range.end()
            )
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
            bounded("seconds", "301", 1..=300u64),
            Err("seconds must be between 1 and 300, got \"301\"".to_string())
        );
        assert!(bounded("hz", "x", 1..=1000i32).is_err());
    }
}
