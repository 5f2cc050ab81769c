//! Provides `/debug/pprof/trace?seconds=N`, the counterpart of Go's short
//! execution trace: the spans of one capture window ([`crate::trace`])
//! returned as Chrome trace-event JSON, which Perfetto UI and
//! chrome://tracing open.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::query::{self, QueryError};
use crate::reply::error_response;
use crate::state::Shared;
use crate::trace::{capture, epoch, Recorded, MAX_SECONDS};

fn parse_seconds(query: Option<&str>) -> Result<u64, QueryError> {
    let mut seconds = 1;
    for (k, v) in query::pairs(query) {
        match k {
            "seconds" => seconds = query::bounded("seconds", v, 1..=MAX_SECONDS)?,
            _ => {
                return Err(QueryError::Unknown {
                    name: k.to_string(),
                    known: "seconds",
                })
            }
        }
    }
    Ok(seconds)
}

pub(crate) async fn trace(
    State(_shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> Response {
    let seconds = match parse_seconds(query.as_deref()) {
        Ok(s) => s,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match capture(seconds).await {
        Ok(w) => Json(chrome_trace(&w.spans, w.begin, w.dropped)).into_response(),
        Err(busy) => busy,
    }
}

/// Chrome trace-event JSON: one complete (`X`) event per span, timestamps in
/// microseconds from the start of the window, a name row per thread, and a
/// flow arrow (`s` → `f`) from each span's parent to it: from a
/// connection's accept to each of its requests, from a request to the
/// handler work it started, across threads.
fn chrome_trace(spans: &[Recorded], begin: Instant, dropped: u64) -> Value {
    let _ = epoch();
    let mut events: Vec<Value> = Vec::with_capacity(spans.len() + 8);
    let mut threads: Vec<&(u64, String)> = spans.iter().map(|s| &s.thread).collect();
    threads.sort();
    threads.dedup();
    for (tid, name) in threads {
        events.push(
            json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": {"name": name}}),
        );
    }
    for s in spans {
        let args: Map<String, Value> = s
            .fields
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
            .collect();
        let ts = s.start.saturating_duration_since(begin).as_secs_f64() * 1e6;
        events.push(json!({
            "name": s.name, "cat": "span", "ph": "X", "pid": 1, "tid": s.thread.0,
            "ts": ts, "dur": s.duration.as_secs_f64() * 1e6, "args": args,
        }));
        if let Some(p) = &s.parent {
            let from = p.start.saturating_duration_since(begin).as_secs_f64() * 1e6;
            events.push(json!({
                "name": "flow", "cat": "flow", "ph": "s", "id": s.seq, "pid": 1,
                "tid": p.thread, "ts": from,
            }));
            events.push(json!({
                "name": "flow", "cat": "flow", "ph": "f", "bp": "e", "id": s.seq, "pid": 1,
                "tid": s.thread.0, "ts": ts,
            }));
        }
    }
    json!({ "traceEvents": events, "displayTimeUnit": "ms", "otherData": { "dropped_spans": dropped } })
}
