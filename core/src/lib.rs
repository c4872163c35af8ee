//! The aiotest model: everything a load test *is*, with none of the machinery that runs it.
//!
//! - [`state`]: [`RunnerState`](state::RunnerState) and the
//!   [`StateManager`](state::StateManager) holding the one transition table every runner
//!   obeys.
//! - [`clock`]: the [`RunClock`](clock::RunClock), run time excluding pauses.
//! - [`shape`]: [`LoadUserShape`](shape::LoadUserShape) and the built-in shapes
//!   (constant, k6-style stages, step, spike).
//! - [`user`]: user types, tasks, execution modes, and the erased
//!   [`UserInstance`](user::UserInstance) the runner drives.
//! - [`scenario`]: k6's scenarios and executors, arrival schedules and exact splits.
//! - [`wait`]: wait times between tasks.
//! - [`weights`]: exact, monotone splits of users over types, and weighted task choice.
//! - [`lifecycle`]: setup data, setup/teardown hooks with timeouts, the summary hook.
//! - [`url`]: the checks of hosts, ports and paths every front end shares.
//! - [`stop`]: a user's graceful stop, as its clients see it.
//! - [`size`]: sizes in bytes as people write them (`64MiB`).
//!
//! **Who should depend on this crate:** anyone writing user types or load shapes, and the
//! other aiotest crates. It does no I/O and pulls in no async runtime, HTTP or Redis
//! client: the runner (`aiotest-runner`) executes what is described here.
//!
//! ```
//! use std::time::Duration;
//! use aiotest_core::prelude::*;
//!
//! struct Visitor;
//! async fn home(_: &mut Visitor) -> TaskResult { Ok(()) }
//!
//! let visitor = UserType::builder("visitor", |_ctx| Visitor)
//!     .wait_time(WaitTime::between(1.0, 2.0))
//!     .task("home", 1, home)
//!     .build()?;
//! let mut shape = StagesShape::new(vec![
//!     Stage::new(Duration::from_secs(30), 100),
//!     Stage::new(Duration::from_secs(30), 0),
//! ])?;
//! assert_eq!(shape.tick(Duration::from_secs(15)), Some((50, 100.0 / 30.0)));
//! # let _ = visitor;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::future::Future;
use std::pin::Pin;

pub mod clock;
pub mod duration;
pub mod lifecycle;
pub mod scenario;
pub mod shape;
pub mod size;
pub mod state;
pub mod stop;
pub mod tag;
pub mod url;
pub mod user;
pub mod wait;
pub mod weights;

pub use fastrand;

/// A boxed, sendable future: what tasks and hooks are erased to.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The error type of user code (tasks and hooks): any error, so `?` works on anything.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The names most user code needs, in one import.
pub mod prelude {
    pub use crate::lifecycle::{Lifecycle, SetupContext, SetupData, SummaryHook};
    pub use crate::scenario::{Executor, RateStage, Scenario};
    pub use crate::shape::{
        ConstantShape, IMMEDIATE, LoadUserShape, MAX_USERS, SpikeShape, Stage, StagesShape,
        StepShape,
    };
    pub use crate::user::{ExecutionMode, TaskResult, UserContext, UserType};
    pub use crate::wait::WaitTime;
    pub use crate::{BoxError, BoxFuture};
}

#[cfg(test)]
mod testutil {
    //! A minimal executor for unit tests of futures that never touch a reactor.

    use std::future::Future;
    use std::pin::pin;
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    /// Polls `fut` to completion; panics if it would wait on something external.
    pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let mut fut = pin!(fut);
        for _ in 0..1_000 {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
        }
        panic!("future did not complete: it waits on something a unit test cannot drive");
    }
}
