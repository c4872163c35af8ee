//! aiotest's runners: they execute what `aiotest-core` describes.
//!
//! **Status:** this crate is a placeholder in the workspace layout; its contents arrive
//! with the local-run work. It will hold the `UserManager` (reaching each load-shape
//! target at its spawn rate, stopping the newest users first, replacing users that
//! panic), the `LocalRunner`, `MasterRunner` and `WorkerRunner` (`initialize`, `start`,
//! `stop`, `pause`, `resume`, `quit`), the k6 lifecycle (setup, teardown, summary hook)
//! and the control and `/metrics` HTTP server.
//!
//! **Who should depend on it:** programs that embed a load test; most users go through
//! `aiotest-cli` instead.
