//! Provides the request a log line belongs to: a thread-local
//! [`RequestContext`] that the middleware sets while it polls the request
//! (ID, method, route, and the status once known), not a `tracing` span: a
//! span costs the registry an entry, its fields a formatted string and every
//! poll an enter and an exit, which was most of what a logged request cost.
//! Spans are still made while a trace capture runs, and are still written
//! (name and fields) when the service makes its own.

use std::cell::RefCell;

use axum::extract::MatchedPath;
use axum::http::Method;

use crate::request_id::RequestId;

/// What names a request on its log lines.
pub(crate) struct RequestContext {
    pub(crate) id: RequestId,
    pub(crate) method: Method,
    pub(crate) route: Option<MatchedPath>,
    /// 0 until the response is ready.
    pub(crate) status: u16,
}

impl RequestContext {
    pub(crate) fn route(&self) -> &str {
        self.route.as_ref().map_or("unmatched", MatchedPath::as_str)
    }

    pub(crate) fn id(&self) -> &str {
        self.id.as_str()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Box<RequestContext>>> = const { RefCell::new(None) };
}

/// Runs `f` with the context in `slot` as this thread's current request
/// (an empty slot leaves the thread's as it is), then puts the context back
/// in the slot and restores the one before, even on a panic. The context
/// is boxed and moves rather than being shared: a pointer in and out of
/// the thread-local per poll, no reference count.
pub(crate) fn with_request<R>(slot: &mut Option<Box<RequestContext>>, f: impl FnOnce() -> R) -> R {
    if slot.is_none() {
        return f();
    }
    let Ok(before) = CURRENT.try_with(|c| c.replace(slot.take())) else {
        return f();
    };
    struct Restore<'a> {
        slot: &'a mut Option<Box<RequestContext>>,
        before: Option<Box<RequestContext>>,
    }
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let before = self.before.take();
            let _ = CURRENT.try_with(|c| *self.slot = c.replace(before));
        }
    }
    let _restore = Restore { slot, before };
    f()
}

pub(crate) fn current_request<R>(f: impl FnOnce(Option<&RequestContext>) -> R) -> R {
    let mut f = Some(f);
    let mut call = |request: Option<&RequestContext>| (f.take().expect("called once"))(request);
    // During thread teardown the context is gone: no request.
    match CURRENT.try_with(|c| c.try_borrow().ok().map(|c| call(c.as_deref()))) {
        Ok(Some(r)) => r,
        _ => call(None),
    }
}

/// The middleware's own span, which the context replaces on a line.
pub(crate) fn is_request_span(meta: &tracing::Metadata<'_>) -> bool {
    meta.name() == "request" && meta.target() == "hammer_diag::middleware"
}
