//! [`Test`]: the `aiotest` command line for a Rust binary's own user types.

use aiotest_core::lifecycle::{Hooks, SummaryHook};
use aiotest_core::scenario::Scenario;
use aiotest_core::shape::LoadUserShape;
use aiotest_core::user::UserType;
use aiotest_metrics::RequestRecord;
use aiotest_runner::Summary;
use aiotest_runner::output::{Output, RequestMetricsOutput};

/// A test defined in code: user types, optionally a load shape, a lifecycle and a summary
/// hook. [`Test::main`] gives it the whole `aiotest run` command line.
///
/// ```no_run
/// use aiotest_core::prelude::*;
///
/// struct Visitor;
/// async fn home(_: &mut Visitor) -> TaskResult { Ok(()) }
///
/// fn main() {
///     let visitor = UserType::builder("visitor", |_ctx| Visitor)
///         .task("home", 1, home)
///         .build()
///         .expect("a valid user type");
///     // my-binary run -H http://127.0.0.1:8080 -u 10 -t 30s
///     aiotest_cli::Test::new().user_type(visitor).main();
/// }
/// ```
///
/// A shape given here runs unless the command line sets the load itself (`-u`, `-t` or
/// `--stages`). With `--demo`, the user types test the embedded target (their host is
/// replaced by it, unless `-H` is given).
#[derive(Default)]
pub struct Test {
    pub(crate) user_types: Vec<UserType>,
    pub(crate) shape: Option<Box<dyn LoadUserShape>>,
    pub(crate) hooks: Hooks,
    pub(crate) summary_hook: Option<SummaryHook<Summary>>,
    pub(crate) outputs: Vec<Box<dyn Output>>,
    pub(crate) requests: RequestMetricsOutput,
    pub(crate) scenarios: Vec<Scenario>,
}

impl Test {
    /// An empty test.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a scenario (k6's `options.scenarios`): its user types run as its executor
    /// says, from its start time. A test with scenarios takes its load from them, not
    /// from `-u`, `-t` or a shape. The same binary run as a worker runs its part.
    pub fn scenario(mut self, scenario: Scenario) -> Self {
        self.scenarios.push(scenario);
        self
    }

    /// Adds a user type.
    pub fn user_type(mut self, user_type: UserType) -> Self {
        self.user_types.push(user_type);
        self
    }

    /// The load shape (default: the command line's `-u`, `-r`, `-t` or `--stages`).
    pub fn shape(mut self, shape: impl LoadUserShape + 'static) -> Self {
        self.shape = Some(Box::new(shape));
        self
    }

    /// Setup and teardown (`Lifecycle::<D>::new().setup(..).teardown(..)`, converted).
    pub fn lifecycle(mut self, hooks: impl Into<Hooks>) -> Self {
        self.hooks = hooks.into();
        self
    }

    /// Called with the final summary (k6's `handleSummary`); an error makes the exit code 1.
    pub fn on_summary(mut self, hook: SummaryHook<Summary>) -> Self {
        self.summary_hook = Some(hook);
        self
    }

    /// Adds an output (`aiotest_runner::output::Output`): it runs where the run's figures
    /// are, in a local run or on the master of a distributed one.
    pub fn output(mut self, output: impl Output + 'static) -> Self {
        self.outputs.push(Box::new(output));
        self
    }

    /// Adds a `request_metrics` handler with `priority` (higher runs first): it sees every
    /// request as it is recorded, where requests are made (a local run, or each worker).
    pub fn on_request<F>(mut self, priority: i32, handler: F) -> Self
    where
        F: Fn(&RequestRecord<'_>) + Send + Sync + 'static,
    {
        self.requests = self.requests.handler(priority, handler);
        self
    }

    /// Runs the command line of this process and exits with its exit code.
    pub fn main(self) -> ! {
        std::process::exit(self.run_args(std::env::args_os()))
    }

    /// Runs the command line `args` (program name first) and returns the exit code.
    pub fn run_args<I, T>(self, args: I) -> i32
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        crate::run_with(args, Some(self))
    }
}
