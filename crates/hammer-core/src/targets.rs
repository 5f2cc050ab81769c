//! Defines request targets and parses vegeta's text targets format:
//!
//! ```text
//! GET http://127.0.0.1:8080/mandelbrot
//! X-Trace: 1
//!
//! POST http://127.0.0.1:8080/find-by-age
//! Content-Type: application/json
//! @body.json
//! ```
//!
//! A target is a method and URL line, then header lines, then an optional
//! `@path` body line; blank lines separate targets and `#` starts a comment.
//! Reading body files is left to the caller.

use std::path::PathBuf;

/// One request to send: method, URL, headers and an optional body file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Target {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Header name and value pairs, in order.
    pub headers: Vec<(String, String)>,
    /// Path of a file whose contents are the body.
    pub body: Option<PathBuf>,
}

/// Why a targets file could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("targets line {line}: {why}")]
pub struct TargetsError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub why: String,
}

/// Splits a `Name: value` header; `None` when there is no colon or no name.
pub fn parse_header(text: &str) -> Option<(String, String)> {
    let (name, value) = text.split_once(':')?;
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    Some((name.to_string(), value.trim().to_string()))
}

fn is_method(word: &str) -> bool {
    !word.is_empty() && word.bytes().all(|b| b.is_ascii_uppercase())
}

/// Parses vegeta's text targets format.
pub fn parse_targets(text: &str) -> Result<Vec<Target>, TargetsError> {
    let mut targets: Vec<Target> = Vec::new();
    let mut current: Option<Target> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let err = |why: String| TargetsError { line: i + 1, why };
        if line.starts_with('#') {
            continue;
        }
        if line.is_empty() {
            targets.extend(current.take());
            continue;
        }
        match &mut current {
            None => {
                let (method, url) = line
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| err(format!("expected `METHOD URL`, got {line:?}")))?;
                if !is_method(method) {
                    return Err(err(format!("{method:?} is not an HTTP method")));
                }
                current = Some(Target {
                    method: method.into(),
                    url: url.trim().into(),
                    ..Target::default()
                });
            }
            Some(t) => {
                if let Some(path) = line.strip_prefix('@') {
                    if t.body.is_some() {
                        return Err(err("a target has at most one @body line".into()));
                    }
                    t.body = Some(PathBuf::from(path.trim()));
                } else if t.body.is_some() {
                    return Err(err("headers must come before the @body line".into()));
                } else {
                    let header = parse_header(line)
                        .ok_or_else(|| err(format!("expected `Name: value`, got {line:?}")))?;
                    t.headers.push(header);
                }
            }
        }
    }
    targets.extend(current);
    if targets.is_empty() {
        return Err(TargetsError {
            line: 0,
            why: "no targets found".into(),
        });
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_vegeta_format() {
        let text =
            "GET http://a/x\nX-A: 1\nX-B:  two words \n\n# comment\nPOST http://a/y\n@body.json\n";
        let t = parse_targets(text).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[0].headers,
            vec![
                ("X-A".into(), "1".into()),
                ("X-B".into(), "two words".into())
            ]
        );
        assert_eq!(t[1].method, "POST");
        assert_eq!(t[1].body, Some(PathBuf::from("body.json")));
    }

    #[test]
    fn reports_the_bad_line() {
        let e = parse_targets("GET http://a/\nnot a header\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(parse_targets("get http://a/").unwrap_err().line, 1);
        assert!(parse_targets("\n\n").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(text in ".{0,400}") {
            let _ = parse_targets(&text);
        }

        #[test]
        fn round_trips(paths in prop::collection::vec("/[a-z]{0,8}", 1..6), n in 0usize..3) {
            let text: String = paths.iter().map(|p| {
                let headers: String = (0..n).map(|i| format!("H{i}: v{i}\n")).collect();
                format!("GET http://h{p}\n{headers}\n")
            }).collect();
            let t = parse_targets(&text).unwrap();
            prop_assert_eq!(t.len(), paths.len());
            prop_assert!(t.iter().all(|t| t.headers.len() == n));
        }
    }
}
