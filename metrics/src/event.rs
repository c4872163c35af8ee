//! The `request_metrics` event: user code that sees every request record as it happens.
//!
//! Handlers run in priority order (higher first; equal priorities in registration order)
//! on the recording user's task, so they must be quick: count, filter, forward to a
//! bounded channel. A handler that panics is caught and logged, and the others still run.
//! With no handler registered, firing costs one relaxed atomic load and a branch.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::record::RequestRecord;

type HandlerFn = dyn Fn(&RequestRecord<'_>) + Send + Sync;

struct Handler {
    priority: i32,
    seq: u64,
    f: Arc<HandlerFn>,
}

#[derive(Default)]
struct Inner {
    active: AtomicBool,
    next_seq: AtomicU64,
    panics: AtomicU64,
    /// Replaced whole on registration, so firing clones one `Arc` under a read lock.
    handlers: RwLock<Arc<Vec<Handler>>>,
}

/// The `request_metrics` event. Cheap to clone; clones share handlers.
#[derive(Clone, Default)]
pub struct RequestMetricsEvent {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RequestMetricsEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestMetricsEvent")
            .field("handlers", &self.handler_count())
            .finish()
    }
}

impl RequestMetricsEvent {
    /// An event with no handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` with `priority` (higher runs first).
    pub fn add_handler<F>(&self, handler: F, priority: i32)
    where
        F: Fn(&RequestRecord<'_>) + Send + Sync + 'static,
    {
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        let mut guard = self
            .inner
            .handlers
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<Handler> = guard
            .iter()
            .map(|h| Handler {
                priority: h.priority,
                seq: h.seq,
                f: Arc::clone(&h.f),
            })
            .collect();
        list.push(Handler {
            priority,
            seq,
            f: Arc::new(handler),
        });
        list.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.seq.cmp(&b.seq)));
        *guard = Arc::new(list);
        self.inner.active.store(true, Ordering::Release);
    }

    /// The seed's decorator form, `handler(priority)`: the same as
    /// [`add_handler`](Self::add_handler) with the priority first.
    pub fn handler<F>(&self, priority: i32, handler: F)
    where
        F: Fn(&RequestRecord<'_>) + Send + Sync + 'static,
    {
        self.add_handler(handler, priority);
    }

    /// Whether any handler is registered.
    #[inline]
    pub fn is_active(&self) -> bool {
        self.inner.active.load(Ordering::Relaxed)
    }

    /// How many handlers are registered.
    pub fn handler_count(&self) -> usize {
        self.inner
            .handlers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// How many handler calls panicked so far.
    pub fn panics(&self) -> u64 {
        self.inner.panics.load(Ordering::Relaxed)
    }

    /// Calls every handler with `record`, in priority order.
    pub fn fire(&self, record: &RequestRecord<'_>) {
        if !self.is_active() {
            return;
        }
        let handlers = Arc::clone(
            &self
                .inner
                .handlers
                .read()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for h in handlers.iter() {
            // A handler's panic must not end the user that happened to record this request.
            if catch_unwind(AssertUnwindSafe(|| (h.f)(record))).is_err() {
                let n = self.inner.panics.fetch_add(1, Ordering::Relaxed) + 1;
                // Log the first few in full, then every thousandth, so a handler that
                // always panics does not flood the log.
                if n <= 5 || n.is_multiple_of(1000) {
                    tracing::error!(
                        priority = h.priority,
                        panics = n,
                        "a request_metrics handler panicked; the request is still counted"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn handlers_run_in_priority_order_then_registration_order() {
        let event = RequestMetricsEvent::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        for (name, prio) in [("low", -1), ("high", 10), ("mid-a", 0), ("mid-b", 0)] {
            let log = Arc::clone(&log);
            event.add_handler(
                move |_r: &RequestRecord<'_>| log.lock().unwrap().push(name),
                prio,
            );
        }
        let log2 = Arc::clone(&log);
        event.handler(5, move |r: &RequestRecord<'_>| {
            log2.lock()
                .unwrap()
                .push(if r.name == "/x" { "five" } else { "?" })
        });
        event.fire(&RequestRecord::ok("/x", "GET", 200, 10));
        assert_eq!(
            *log.lock().unwrap(),
            ["high", "five", "mid-a", "mid-b", "low"]
        );
        assert_eq!(event.handler_count(), 5);
    }

    #[test]
    fn a_panicking_handler_is_contained_and_the_rest_still_run() {
        let event = RequestMetricsEvent::new();
        let seen = Arc::new(AtomicU64::new(0));
        event.add_handler(|_r: &RequestRecord<'_>| panic!("handler bug"), 10);
        let s = Arc::clone(&seen);
        event.add_handler(
            move |_r: &RequestRecord<'_>| {
                s.fetch_add(1, Ordering::Relaxed);
            },
            0,
        );
        for _ in 0..3 {
            event.fire(&RequestRecord::ok("/", "GET", 200, 1));
        }
        assert_eq!(seen.load(Ordering::Relaxed), 3);
        assert_eq!(event.panics(), 3);
    }

    #[test]
    fn without_handlers_the_event_is_inactive() {
        let event = RequestMetricsEvent::new();
        assert!(!event.is_active());
        event.fire(&RequestRecord::ok("/", "GET", 200, 1));
        let clone = event.clone();
        clone.add_handler(|_r: &RequestRecord<'_>| {}, 0);
        assert!(event.is_active(), "clones share handlers");
    }
}
