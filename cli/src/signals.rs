//! Ctrl-C and SIGTERM: the first stops the run gracefully, the second stops it at once.
//! Both end in the summary and every export: SIGTERM is what `timeout`, docker, systemd
//! and CI cancellation send, and a run they end must still say what it measured.

use aiotest_runner::RunnerHandle;

/// The stop signals, listened to from creation on so that none is missed between waits.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        Signals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    /// The next Ctrl-C or SIGTERM.
    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(term) = self.term.as_mut() {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Resolves at the next Ctrl-C or SIGTERM.
pub(crate) async fn first_signal() {
    Signals::new().next().await;
}

/// First signal: graceful stop. Second: stop at once. `signalled` is set at the first.
pub(crate) async fn stop_on_signals(
    handle: RunnerHandle,
    quiet: bool,
    signalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut signals = Signals::new();
    signals.next().await;
    signalled.store(true, std::sync::atomic::Ordering::SeqCst);
    if !quiet {
        eprintln!("\naiotest: stopping (Ctrl-C again to stop at once)");
    }
    handle.stop().await;
    signals.next().await;
    if !quiet {
        eprintln!("\naiotest: stopping at once");
    }
    handle.abort().await;
}
