//! The k6 test lifecycle as types: `setup` once, its data shared read-only with every user,
//! `teardown(data)` once, then the summary hook.
//!
//! The runner only executes these: it calls setup (under [`Lifecycle::setup_timeout`])
//! before starting users, hands each user the [`SetupData`], calls teardown after users
//! stop unless [`teardown_runs`] says otherwise, and passes the final summary to the
//! [`SummaryHook`].
//!
//! Setup data is serialized to JSON as soon as setup returns, on one machine as on many,
//! so a value that cannot travel to workers fails the same way everywhere (k6 has the
//! same rule: only data, never functions, passes from setup to the users).

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{BoxError, BoxFuture};

/// Default time allowed for setup and for teardown, as in k6.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// A lifecycle failure, with the phase it happened in.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// Setup returned data that does not serialize to JSON.
    #[error("setup data does not serialize to JSON: {0}")]
    Serialize(#[source] serde_json::Error),
    /// Setup data received from elsewhere (a master) does not decode as the expected type.
    #[error("setup data does not decode as {type_name}: {source}")]
    Decode {
        /// The Rust type expected.
        type_name: &'static str,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// A hook returned an error.
    #[error("{phase} failed: {source}")]
    Failed {
        /// Which hook.
        phase: Phase,
        /// The hook's error.
        #[source]
        source: BoxError,
    },
    /// A hook ran past its timeout.
    #[error("{phase} timed out after {after:?}")]
    Timeout {
        /// Which hook.
        phase: Phase,
        /// The timeout that passed.
        after: Duration,
    },
}

/// The lifecycle phase a hook belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `setup()`.
    Setup,
    /// `teardown(data)`.
    Teardown,
    /// The summary hook.
    Summary,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Setup => "setup",
            Phase::Teardown => "teardown",
            Phase::Summary => "summary hook",
        })
    }
}

/// The data setup returned: read-only, cheap to clone (shared by every user), and carried
/// both as the typed value and as JSON for shipping to workers.
#[derive(Clone)]
pub struct SetupData {
    value: Arc<dyn Any + Send + Sync>,
    json: Arc<[u8]>,
}

impl SetupData {
    /// Wraps `value`, serializing it to JSON now.
    pub fn new<T>(value: T) -> Result<Self, LifecycleError>
    where
        T: Serialize + Send + Sync + 'static,
    {
        let json = serde_json::to_vec(&value).map_err(LifecycleError::Serialize)?;
        Ok(SetupData {
            value: Arc::new(value),
            json: json.into(),
        })
    }

    /// Rebuilds typed setup data from its JSON (how a worker receives it).
    pub fn from_json<T>(json: &[u8]) -> Result<Self, LifecycleError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let value: T = serde_json::from_slice(json).map_err(|source| LifecycleError::Decode {
            type_name: std::any::type_name::<T>(),
            source,
        })?;
        Ok(SetupData {
            value: Arc::new(value),
            json: json.into(),
        })
    }

    /// The value, if it is a `T`.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.value.downcast_ref::<T>()
    }

    /// A shared handle to the value, if it is a `T`.
    pub fn get_arc<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        Arc::clone(&self.value).downcast::<T>().ok()
    }

    /// The JSON form.
    pub fn json(&self) -> &[u8] {
        &self.json
    }
}

impl fmt::Debug for SetupData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetupData")
            .field("json", &String::from_utf8_lossy(&self.json))
            .finish()
    }
}

/// What setup is given: the run's target host, if one is configured, and values the
/// runner adds (the run's metrics recorder, so setup's own requests are counted).
#[derive(Clone, Default)]
pub struct SetupContext {
    host: Option<Arc<str>>,
    extensions: Arc<std::sync::Mutex<Vec<Box<dyn Any + Send>>>>,
}

impl fmt::Debug for SetupContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetupContext")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl SetupContext {
    /// A context for a run against `host`.
    pub fn new(host: Option<Arc<str>>) -> Self {
        SetupContext {
            host,
            extensions: Arc::default(),
        }
    }

    /// Adds a value for setup to [`take`](Self::take).
    pub fn with<T: Send + 'static>(self, value: T) -> Self {
        self.extensions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(value));
        self
    }

    /// Takes the value of type `T` the runner added, if any (each value once).
    pub fn take<T: 'static>(&self) -> Option<T> {
        let mut ext = self.extensions.lock().unwrap_or_else(|e| e.into_inner());
        let i = ext.iter().position(|v| v.is::<T>())?;
        ext.swap_remove(i).downcast::<T>().ok().map(|b| *b)
    }

    /// The run's host (`--host`, or the scenario's), if any.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }
}

type SetupFn = Arc<
    dyn Fn(SetupContext) -> BoxFuture<'static, Result<SetupData, LifecycleError>> + Send + Sync,
>;
type TeardownFn = Arc<
    dyn Fn(SetupContext, Option<SetupData>) -> BoxFuture<'static, Result<(), BoxError>>
        + Send
        + Sync,
>;
type DecodeFn = fn(&[u8]) -> Result<SetupData, LifecycleError>;

/// Setup and teardown hooks with their timeouts, typed by the setup data `D` (JSON values
/// by default, which is what scenario files use).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use aiotest_core::lifecycle::Lifecycle;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Accounts {
///     tokens: Vec<String>,
/// }
///
/// let lifecycle = Lifecycle::<Accounts>::new()
///     .setup(async |_ctx| Ok(Accounts { tokens: vec!["t1".into(), "t2".into()] }))
///     .teardown(async |data: Option<Arc<Accounts>>| {
///         let n = data.map_or(0, |d| d.tokens.len());
///         println!("deleting {n} accounts");
///         Ok(())
///     })
///     .setup_timeout(Duration::from_secs(10));
/// assert!(lifecycle.has_setup() && lifecycle.has_teardown());
/// ```
pub struct Lifecycle<D = serde_json::Value> {
    setup: Option<SetupFn>,
    teardown: Option<TeardownFn>,
    setup_timeout: Duration,
    teardown_timeout: Duration,
    _data: PhantomData<fn() -> D>,
}

impl<D> Default for Lifecycle<D> {
    fn default() -> Self {
        Lifecycle {
            setup: None,
            teardown: None,
            setup_timeout: DEFAULT_HOOK_TIMEOUT,
            teardown_timeout: DEFAULT_HOOK_TIMEOUT,
            _data: PhantomData,
        }
    }
}

impl<D> Clone for Lifecycle<D> {
    fn clone(&self) -> Self {
        Lifecycle {
            setup: self.setup.clone(),
            teardown: self.teardown.clone(),
            setup_timeout: self.setup_timeout,
            teardown_timeout: self.teardown_timeout,
            _data: PhantomData,
        }
    }
}

impl<D> fmt::Debug for Lifecycle<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lifecycle")
            .field("data", &std::any::type_name::<D>())
            .field("setup", &self.setup.is_some())
            .field("teardown", &self.teardown.is_some())
            .field("setup_timeout", &self.setup_timeout)
            .field("teardown_timeout", &self.teardown_timeout)
            .finish()
    }
}

impl<D> Lifecycle<D>
where
    D: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// No hooks, 60 s timeouts.
    pub fn new() -> Self {
        Self::default()
    }

    /// The setup hook: runs once before any user starts; its value is every user's
    /// read-only setup data.
    pub fn setup<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(SetupContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<D, BoxError>> + Send + 'static,
    {
        self.setup = Some(Arc::new(move |ctx| {
            let fut = f(ctx);
            Box::pin(async move {
                let value = fut.await.map_err(|source| LifecycleError::Failed {
                    phase: Phase::Setup,
                    source,
                })?;
                SetupData::new(value)
            })
        }));
        self
    }

    /// The teardown hook: runs once after users stop, with setup's data (`None` when
    /// there was no setup or it was skipped). It does not run when setup failed.
    pub fn teardown<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Option<Arc<D>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.teardown = Some(Arc::new(move |_ctx, data: Option<SetupData>| {
            let typed = data.and_then(|d| d.get_arc::<D>());
            Box::pin(f(typed))
        }));
        self
    }

    /// The teardown hook, given the run's context as setup is (its host, and from a
    /// runner the run's recorder and collector, so teardown's requests are counted)
    /// whether setup ran or not (`--no-setup`).
    pub fn teardown_with_context<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(SetupContext, Option<Arc<D>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.teardown = Some(Arc::new(move |ctx, data: Option<SetupData>| {
            let typed = data.and_then(|d| d.get_arc::<D>());
            Box::pin(f(ctx, typed))
        }));
        self
    }

    /// Time allowed for setup (default 60 s).
    pub fn setup_timeout(mut self, timeout: Duration) -> Self {
        self.setup_timeout = timeout;
        self
    }

    /// Time allowed for teardown (default 60 s).
    pub fn teardown_timeout(mut self, timeout: Duration) -> Self {
        self.teardown_timeout = timeout;
        self
    }

    /// Whether a setup hook is set.
    pub fn has_setup(&self) -> bool {
        self.setup.is_some()
    }

    /// Whether a teardown hook is set.
    pub fn has_teardown(&self) -> bool {
        self.teardown.is_some()
    }

    /// The untyped form the runner executes.
    pub fn into_hooks(self) -> Hooks {
        Hooks {
            setup: self.setup,
            teardown: self.teardown,
            decode: SetupData::from_json::<D>,
            setup_timeout: self.setup_timeout,
            teardown_timeout: self.teardown_timeout,
        }
    }
}

/// The lifecycle with its data type erased: what runners hold and execute.
#[derive(Clone)]
pub struct Hooks {
    setup: Option<SetupFn>,
    teardown: Option<TeardownFn>,
    decode: DecodeFn,
    setup_timeout: Duration,
    teardown_timeout: Duration,
}

impl Default for Hooks {
    fn default() -> Self {
        Lifecycle::<serde_json::Value>::new().into_hooks()
    }
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("setup", &self.setup.is_some())
            .field("teardown", &self.teardown.is_some())
            .field("setup_timeout", &self.setup_timeout)
            .field("teardown_timeout", &self.teardown_timeout)
            .finish()
    }
}

impl<D> From<Lifecycle<D>> for Hooks
where
    D: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn from(lifecycle: Lifecycle<D>) -> Self {
        lifecycle.into_hooks()
    }
}

impl Hooks {
    /// The setup future, or `None` when no setup hook is set. The runner applies
    /// [`Hooks::setup_timeout`].
    pub fn run_setup(
        &self,
        ctx: SetupContext,
    ) -> Option<BoxFuture<'static, Result<SetupData, LifecycleError>>> {
        self.setup.as_ref().map(|f| f(ctx))
    }

    /// The teardown future, or `None` when no teardown hook is set. Errors come back as
    /// [`LifecycleError::Failed`].
    pub fn run_teardown(
        &self,
        ctx: SetupContext,
        data: Option<SetupData>,
    ) -> Option<BoxFuture<'static, Result<(), LifecycleError>>> {
        self.teardown.as_ref().map(|f| {
            let fut = f(ctx, data);
            Box::pin(async move {
                fut.await.map_err(|source| LifecycleError::Failed {
                    phase: Phase::Teardown,
                    source,
                })
            }) as BoxFuture<'static, _>
        })
    }

    /// Rebuilds setup data received as JSON (on a worker) as the lifecycle's data type.
    pub fn decode_setup_data(&self, json: &[u8]) -> Result<SetupData, LifecycleError> {
        (self.decode)(json)
    }

    /// Whether a setup hook is set.
    pub fn has_setup(&self) -> bool {
        self.setup.is_some()
    }

    /// Whether a teardown hook is set.
    pub fn has_teardown(&self) -> bool {
        self.teardown.is_some()
    }

    /// Time allowed for setup.
    pub fn setup_timeout(&self) -> Duration {
        self.setup_timeout
    }

    /// Time allowed for teardown.
    pub fn teardown_timeout(&self) -> Duration {
        self.teardown_timeout
    }
}

/// How the setup phase ended.
#[derive(Debug, Clone)]
pub enum SetupOutcome {
    /// No setup hook is defined.
    NotDefined,
    /// Setup was skipped (`--no-setup`).
    Skipped,
    /// Setup returned this data.
    Done(SetupData),
    /// Setup failed or timed out.
    Failed,
}

impl SetupOutcome {
    /// The data users get, if any.
    pub fn data(&self) -> Option<&SetupData> {
        match self {
            SetupOutcome::Done(d) => Some(d),
            _ => None,
        }
    }
}

/// Whether teardown runs: a teardown hook exists, `--no-teardown` was not given, and setup
/// did not fail (k6's rule: a failed setup leaves nothing to tear down reliably).
pub fn teardown_runs(hooks: &Hooks, setup: &SetupOutcome, no_teardown: bool) -> bool {
    hooks.has_teardown() && !no_teardown && !matches!(setup, SetupOutcome::Failed)
}

/// The summary hook (k6's `handleSummary`): called once with the final summary `S`; it
/// may print or write files. `S` is the metrics crate's summary type.
pub struct SummaryHook<S>(SummaryFn<S>);

type SummaryFn<S> = Arc<dyn Fn(&S) -> Result<(), BoxError> + Send + Sync>;

impl<S> SummaryHook<S> {
    /// A hook calling `f`.
    pub fn new(f: impl Fn(&S) -> Result<(), BoxError> + Send + Sync + 'static) -> Self {
        SummaryHook(Arc::new(f))
    }

    /// Calls the hook.
    pub fn call(&self, summary: &S) -> Result<(), LifecycleError> {
        (self.0)(summary).map_err(|source| LifecycleError::Failed {
            phase: Phase::Summary,
            source,
        })
    }
}

impl<S> Clone for SummaryHook<S> {
    fn clone(&self) -> Self {
        SummaryHook(Arc::clone(&self.0))
    }
}

impl<S> fmt::Debug for SummaryHook<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SummaryHook(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::block_on;
    use serde::Deserialize;
    use std::sync::Mutex;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Data {
        v: u32,
        token: String,
    }

    #[test]
    fn setup_data_is_shared_typed_and_serialized() {
        let data = SetupData::new(Data {
            v: 1,
            token: "abc".into(),
        })
        .unwrap();
        assert_eq!(data.json(), br#"{"v":1,"token":"abc"}"#);
        let copy = data.clone();
        assert_eq!(copy.get::<Data>().unwrap().token, "abc");
        assert!(copy.get::<String>().is_none());
        let a = data.get_arc::<Data>().unwrap();
        let b = copy.get_arc::<Data>().unwrap();
        assert!(Arc::ptr_eq(&a, &b), "every user reads the same value");
    }

    #[test]
    fn setup_data_travels_as_json_and_decodes_as_the_lifecycle_type() {
        let hooks = Lifecycle::<Data>::new().into_hooks();
        let sent = SetupData::new(Data {
            v: 7,
            token: "t".into(),
        })
        .unwrap();
        let received = hooks.decode_setup_data(sent.json()).unwrap();
        assert_eq!(received.get::<Data>(), sent.get::<Data>());
        let err = hooks.decode_setup_data(b"[1,2]").unwrap_err();
        assert!(
            err.to_string().starts_with("setup data does not decode as"),
            "{err}"
        );
    }

    #[test]
    fn data_that_cannot_be_json_fails_setup() {
        use std::collections::HashMap;
        // JSON object keys must be strings: a map keyed by tuples does not serialize.
        let mut bad = HashMap::new();
        bad.insert((1, 2), 3);
        let err = SetupData::new(bad).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("setup data does not serialize to JSON"),
            "{err}"
        );
    }

    #[test]
    fn setup_result_reaches_teardown() {
        let seen = Arc::new(Mutex::new(None));
        let seen2 = Arc::clone(&seen);
        let hooks: Hooks = Lifecycle::<Data>::new()
            .setup(async |ctx: SetupContext| {
                Ok(Data {
                    v: 1,
                    token: ctx.host().unwrap_or("none").to_string(),
                })
            })
            .teardown(move |data: Option<Arc<Data>>| {
                *seen2.lock().unwrap() = data.map(|d| d.token.clone());
                async { Ok(()) }
            })
            .into();
        let ctx = SetupContext::new(Some("http://127.0.0.1:1".into()));
        let data = block_on(hooks.run_setup(ctx).unwrap()).unwrap();
        block_on(
            hooks
                .run_teardown(SetupContext::new(None), Some(data))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(seen.lock().unwrap().as_deref(), Some("http://127.0.0.1:1"));
    }

    #[test]
    fn hook_errors_name_their_phase() {
        let hooks = Lifecycle::<Data>::new()
            .setup(async |_ctx| Err("no database".into()))
            .teardown(async |_data| Err("still busy".into()))
            .into_hooks();
        let err = block_on(hooks.run_setup(SetupContext::default()).unwrap()).unwrap_err();
        assert_eq!(err.to_string(), "setup failed: no database");
        let err = block_on(hooks.run_teardown(SetupContext::new(None), None).unwrap()).unwrap_err();
        assert_eq!(err.to_string(), "teardown failed: still busy");
        let timeout = LifecycleError::Timeout {
            phase: Phase::Setup,
            after: Duration::from_secs(60),
        };
        assert_eq!(timeout.to_string(), "setup timed out after 60s");
    }

    #[test]
    fn teardown_is_skipped_after_failed_setup_and_with_no_teardown() {
        let with = Lifecycle::<Data>::new()
            .teardown(async |_| Ok(()))
            .into_hooks();
        let without = Hooks::default();
        let done = SetupOutcome::Done(SetupData::new(1u8).unwrap());
        // hooks, setup outcome, --no-teardown, runs?
        let table = [
            (&with, SetupOutcome::NotDefined, false, true),
            (&with, SetupOutcome::Skipped, false, true),
            (&with, done.clone(), false, true),
            (&with, SetupOutcome::Failed, false, false),
            (&with, done.clone(), true, false),
            (&without, done, false, false),
        ];
        for (hooks, outcome, no_teardown, want) in table {
            assert_eq!(
                teardown_runs(hooks, &outcome, no_teardown),
                want,
                "{outcome:?} {no_teardown}"
            );
        }
        assert!(
            Hooks::default()
                .run_setup(SetupContext::default())
                .is_none()
        );
    }

    #[test]
    fn timeouts_default_to_60s_and_are_configurable() {
        let hooks = Lifecycle::<Data>::new()
            .teardown_timeout(Duration::from_secs(5))
            .into_hooks();
        assert_eq!(hooks.setup_timeout(), DEFAULT_HOOK_TIMEOUT);
        assert_eq!(hooks.teardown_timeout(), Duration::from_secs(5));
    }

    #[test]
    fn summary_hook_receives_the_summary() {
        let hook = SummaryHook::new(|total: &u64| {
            if *total == 0 {
                return Err("empty run".into());
            }
            Ok(())
        });
        assert!(hook.call(&3).is_ok());
        assert_eq!(
            hook.call(&0).unwrap_err().to_string(),
            "summary hook failed: empty run"
        );
    }
}
