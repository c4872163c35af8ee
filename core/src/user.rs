//! The user/task model: user types with a weight, host, wait time, weighted tasks, an
//! execution mode, `on_start` and `on_stop`.
//!
//! A user type is any `U: Send + Sync + 'static` (a struct holding the user's client and
//! state), a factory that makes one per virtual user, and tasks written as plain
//! `async fn(&mut U) -> TaskResult` (or `async |u: &mut U| ...` closures that capture
//! nothing: state belongs in `U`). Tasks that must run at the same time on one user in
//! [`ExecutionMode::Concurrent`] take `&U` and are added with
//! [`shared_task`](UserTypeBuilder::shared_task).
//!
//! ```
//! use aiotest_core::prelude::*;
//!
//! struct Shopper { token: Option<String>, orders: u32 }
//!
//! async fn login(u: &mut Shopper) -> TaskResult { u.token = Some("secret".into()); Ok(()) }
//! async fn browse(_u: &mut Shopper) -> TaskResult { Ok(()) }
//! async fn buy(u: &mut Shopper) -> TaskResult { u.orders += 1; Ok(()) }
//!
//! let shopper = UserType::builder("shopper", |_ctx| Shopper { token: None, orders: 0 })
//!     .wait_time((0.5, 1.5))
//!     .on_start(login)
//!     .task("browse", 5, browse)
//!     .task("buy", 1, buy)
//!     .build()?;
//! assert_eq!(shopper.tasks().len(), 2);
//! # Ok::<(), aiotest_core::user::UserTypeError>(())
//! ```

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::lifecycle::SetupData;
use crate::wait::{WaitTime, WaitTimeError};
use crate::weights::WeightedChoice;
use crate::{BoxError, BoxFuture};

/// What a task, `on_start` or `on_stop` returns. An `Err` is an error in the user's own
/// code (a failed HTTP request is a measurement, not an `Err`): the runner counts and logs
/// it, applies the wait time, and carries on.
pub type TaskResult = Result<(), BoxError>;

/// How a user runs its tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionMode {
    /// One task at a time, in the order they were added; a task of weight `n` runs `n`
    /// times in a row in its turn; then the sequence starts over.
    #[default]
    Sequential,
    /// A continuous pool: up to `max_concurrent_tasks` tasks at once, each slot picking
    /// its next task by weight as soon as its previous one (and its wait) is done.
    Concurrent,
}

/// What a user type's factory is given for each virtual user.
pub struct UserContext {
    user_id: u64,
    user_type: Arc<str>,
    scenario: Option<Arc<str>>,
    host: Option<Arc<str>>,
    setup: Option<SetupData>,
    extensions: Mutex<Vec<Box<dyn Any + Send>>>,
}

impl fmt::Debug for UserContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserContext")
            .field("user_id", &self.user_id)
            .field("user_type", &self.user_type)
            .field("host", &self.host)
            .field("setup", &self.setup)
            .finish_non_exhaustive()
    }
}

impl UserContext {
    /// A context for user number `user_id` (unique within the run) of `user_type`.
    pub fn new(
        user_id: u64,
        user_type: Arc<str>,
        host: Option<Arc<str>>,
        setup: Option<SetupData>,
    ) -> Self {
        UserContext {
            user_id,
            user_type,
            scenario: None,
            host,
            setup,
            extensions: Mutex::new(Vec::new()),
        }
    }

    /// The same context, for a user of scenario `name`.
    pub fn in_scenario(mut self, name: Arc<str>) -> Self {
        self.scenario = Some(name);
        self
    }

    /// The scenario this user runs in, when the runner says (metrics carry it).
    pub fn scenario(&self) -> Option<&str> {
        self.scenario.as_deref()
    }

    /// Adds a value for the factory to [`take`](Self::take): the runner hands each user
    /// its own metrics recorder this way, without this crate knowing the type.
    pub fn with<T: Send + 'static>(self, value: T) -> Self {
        self.lock_extensions().push(Box::new(value));
        self
    }

    /// A clone of the value of type `T` the runner added, leaving it in place.
    pub fn get_cloned<T: Clone + 'static>(&self) -> Option<T> {
        self.lock_extensions()
            .iter()
            .find_map(|v| v.downcast_ref::<T>())
            .cloned()
    }

    /// Takes the value of type `T` the runner added, if any (each value once).
    pub fn take<T: 'static>(&self) -> Option<T> {
        let mut ext = self.lock_extensions();
        let i = ext.iter().position(|v| v.is::<T>())?;
        ext.swap_remove(i).downcast::<T>().ok().map(|b| *b)
    }

    fn lock_extensions(&self) -> std::sync::MutexGuard<'_, Vec<Box<dyn Any + Send>>> {
        // Only ever held for a push or a take: a poisoned lock still holds a valid Vec.
        self.extensions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This user's number, unique within the run.
    pub fn user_id(&self) -> u64 {
        self.user_id
    }

    /// The user type's name.
    pub fn user_type(&self) -> &str {
        &self.user_type
    }

    /// The host to test: the run's `--host` if given, else the user type's.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The data setup returned, if setup ran.
    pub fn setup_data(&self) -> Option<&SetupData> {
        self.setup.as_ref()
    }

    /// Setup's data as a `T`, if setup ran and returned a `T`.
    pub fn setup<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.setup.as_ref().and_then(|d| d.get_arc::<T>())
    }
}

/// A function usable as a task over `&mut U`: implemented by every `async fn(&mut U) ->
/// TaskResult` and capture-free async closure. You never implement it yourself.
pub trait UserFn<'a, U: 'a>: Send + Sync + 'static {
    /// The future the call returns.
    type Future: Future<Output = TaskResult> + Send + 'a;
    /// Calls the task.
    fn call(&self, user: &'a mut U) -> Self::Future;
}

impl<'a, U: 'a, F, Fut> UserFn<'a, U> for F
where
    F: Fn(&'a mut U) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = TaskResult> + Send + 'a,
{
    type Future = Fut;
    fn call(&self, user: &'a mut U) -> Fut {
        self(user)
    }
}

/// A function usable as a shared task over `&U` (see [`UserFn`]).
pub trait SharedUserFn<'a, U: 'a>: Send + Sync + 'static {
    /// The future the call returns.
    type Future: Future<Output = TaskResult> + Send + 'a;
    /// Calls the task.
    fn call(&self, user: &'a U) -> Self::Future;
}

impl<'a, U: 'a, F, Fut> SharedUserFn<'a, U> for F
where
    F: Fn(&'a U) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = TaskResult> + Send + 'a,
{
    type Future = Fut;
    fn call(&self, user: &'a U) -> Fut {
        self(user)
    }
}

// Object-safe forms of the two function kinds, so tasks of different types share a Vec.
trait MutTask<U>: Send + Sync {
    fn run<'a>(&'a self, user: &'a mut U) -> BoxFuture<'a, TaskResult>;
}

trait RefTask<U>: Send + Sync {
    fn run<'a>(&'a self, user: &'a U) -> BoxFuture<'a, TaskResult>;
}

struct MutFn<F>(F);
struct RefFn<F>(F);
/// A closure that boxes its own future (see [`UserTypeBuilder::task_fn`]).
struct MutClosure<F>(F);
struct RefClosure<F>(F);

impl<U: 'static, F> MutTask<U> for MutClosure<F>
where
    F: for<'a> Fn(&'a mut U) -> BoxFuture<'a, TaskResult> + Send + Sync,
{
    fn run<'a>(&'a self, user: &'a mut U) -> BoxFuture<'a, TaskResult> {
        (self.0)(user)
    }
}

impl<U: 'static, F> RefTask<U> for RefClosure<F>
where
    F: for<'a> Fn(&'a U) -> BoxFuture<'a, TaskResult> + Send + Sync,
{
    fn run<'a>(&'a self, user: &'a U) -> BoxFuture<'a, TaskResult> {
        (self.0)(user)
    }
}

impl<U: 'static, F: for<'a> UserFn<'a, U>> MutTask<U> for MutFn<F> {
    fn run<'a>(&'a self, user: &'a mut U) -> BoxFuture<'a, TaskResult> {
        Box::pin(self.0.call(user))
    }
}

impl<U: 'static, F: for<'a> SharedUserFn<'a, U>> RefTask<U> for RefFn<F> {
    fn run<'a>(&'a self, user: &'a U) -> BoxFuture<'a, TaskResult> {
        Box::pin(self.0.call(user))
    }
}

enum TaskBody<U> {
    Mut(Box<dyn MutTask<U>>),
    Shared(Box<dyn RefTask<U>>),
}

struct TaskDef<U> {
    info: TaskInfo,
    body: TaskBody<U>,
}

/// A task's name and weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// The task's name (unique within its user type).
    pub name: String,
    /// Its weight (at least 1).
    pub weight: u32,
    /// Whether it takes `&U` and may run concurrently with other tasks of the same user.
    pub shared: bool,
}

/// Most tasks one concurrent user may run at once: each slot may hold its own connection,
/// so a thousand already make one user a crowd.
pub const MAX_CONCURRENT_TASKS: usize = 1_000;

/// A user type definition that was refused, with the user type (and task) named.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum UserTypeError {
    /// The user type's name is empty.
    #[error("a user type needs a name")]
    EmptyName,
    /// No task was added.
    #[error("user type `{user_type}` has no tasks")]
    NoTasks {
        /// The user type.
        user_type: String,
    },
    /// The user type's weight is 0.
    #[error("user type `{user_type}`: weight must be at least 1")]
    ZeroWeight {
        /// The user type.
        user_type: String,
    },
    /// A task's weight is 0.
    #[error("user type `{user_type}`, task `{task}`: weight must be at least 1")]
    ZeroTaskWeight {
        /// The user type.
        user_type: String,
        /// The task.
        task: String,
    },
    /// A task's name is empty or used twice.
    #[error("user type `{user_type}`: task name `{task}` is empty or used twice")]
    BadTaskName {
        /// The user type.
        user_type: String,
        /// The task.
        task: String,
    },
    /// The wait time is invalid.
    #[error("user type `{user_type}`: {source}")]
    WaitTime {
        /// The user type.
        user_type: String,
        /// What is wrong with it.
        #[source]
        source: WaitTimeError,
    },
    /// The host is not a usable `http://` or `https://` URL.
    #[error("user type `{user_type}`: host `{host}`: {source}")]
    BadHost {
        /// The user type.
        user_type: String,
        /// The host given.
        host: String,
        /// What is wrong with it.
        #[source]
        source: crate::url::UrlError,
    },
    /// `max_concurrent_tasks` is 0, or set for a sequential user.
    #[error("user type `{user_type}`: {reason}")]
    MaxConcurrentTasks {
        /// The user type.
        user_type: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A `&mut U` task in a concurrent user type.
    #[error(
        "user type `{user_type}`, task `{task}`: concurrent tasks share the user, so they take `&U`; add it with shared_task"
    )]
    ExclusiveTaskInConcurrentMode {
        /// The user type.
        user_type: String,
        /// The task.
        task: String,
    },
}

type Factory<U> = Box<dyn Fn(&UserContext) -> U + Send + Sync>;

/// Builds a [`UserType`]; see the [module docs](self).
pub struct UserTypeBuilder<U> {
    name: String,
    factory: Factory<U>,
    weight: u32,
    host: Option<String>,
    wait_time: WaitTime,
    mode: ExecutionMode,
    max_concurrent_tasks: Option<usize>,
    on_start: Option<Box<dyn MutTask<U>>>,
    on_stop: Option<Box<dyn MutTask<U>>>,
    tasks: Vec<TaskDef<U>>,
}

impl<U: Send + Sync + 'static> UserTypeBuilder<U> {
    /// The user type's weight among the run's user types (default 1).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// The default host for this type's users (`--host` overrides it).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// The wait after each task (default: 1 s fixed). Takes a [`WaitTime`], seconds as
    /// `f64`, a `(min, max)` range or a `Duration`.
    pub fn wait_time(mut self, wait_time: impl Into<WaitTime>) -> Self {
        self.wait_time = wait_time.into();
        self
    }

    /// Sequential (default) or concurrent.
    pub fn execution_mode(mut self, mode: ExecutionMode) -> Self {
        self.mode = mode;
        self
    }

    /// For concurrent users, how many tasks may run at once (default: the number of
    /// tasks).
    pub fn max_concurrent_tasks(mut self, max: usize) -> Self {
        self.max_concurrent_tasks = Some(max);
        self
    }

    /// Runs once when a user starts, before its first task (a login, say).
    pub fn on_start<F: for<'a> UserFn<'a, U>>(mut self, f: F) -> Self {
        self.on_start = Some(Box::new(MutFn(f)));
        self
    }

    /// Runs once when a user stops (within the graceful stop period).
    pub fn on_stop<F: for<'a> UserFn<'a, U>>(mut self, f: F) -> Self {
        self.on_stop = Some(Box::new(MutFn(f)));
        self
    }

    /// Adds a task over `&mut U` with a weight (at least 1).
    pub fn task<F: for<'a> UserFn<'a, U>>(
        self,
        name: impl Into<String>,
        weight: u32,
        f: F,
    ) -> Self {
        self.push_task(name.into(), weight, TaskBody::Mut(Box::new(MutFn(f))))
    }

    /// Adds a task over `&U`, which may run at the same time as the user's other tasks.
    pub fn shared_task<F: for<'a> SharedUserFn<'a, U>>(
        self,
        name: impl Into<String>,
        weight: u32,
        f: F,
    ) -> Self {
        self.push_task(name.into(), weight, TaskBody::Shared(Box::new(RefFn(f))))
    }

    /// Adds a task from a closure, which may own data (an index, a request plan, rows of
    /// a file), so tasks can be made at run time, any number of them. The closure returns
    /// its future boxed: that is what lets it borrow the user for the call.
    ///
    /// ```
    /// use aiotest_core::prelude::*;
    ///
    /// struct Shop;
    /// impl Shop {
    ///     async fn visit(&mut self, path: &str) -> TaskResult {
    ///         let _ = path;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let mut builder = UserType::builder("shopper", |_ctx| Shop);
    /// for (i, path) in ["/", "/cart", "/items/1"].into_iter().enumerate() {
    ///     builder = builder.task_fn(format!("page {i}"), 1, move |shop: &mut Shop| {
    ///         Box::pin(shop.visit(path))
    ///     });
    /// }
    /// let shopper = builder.build()?;
    /// assert_eq!(shopper.tasks().len(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn task_fn<F>(self, name: impl Into<String>, weight: u32, f: F) -> Self
    where
        F: for<'a> Fn(&'a mut U) -> BoxFuture<'a, TaskResult> + Send + Sync + 'static,
    {
        self.push_task(name.into(), weight, TaskBody::Mut(Box::new(MutClosure(f))))
    }

    /// Adds a shared task (over `&U`, see [`shared_task`](Self::shared_task)) from a
    /// closure, as [`task_fn`](Self::task_fn) does.
    pub fn shared_task_fn<F>(self, name: impl Into<String>, weight: u32, f: F) -> Self
    where
        F: for<'a> Fn(&'a U) -> BoxFuture<'a, TaskResult> + Send + Sync + 'static,
    {
        self.push_task(
            name.into(),
            weight,
            TaskBody::Shared(Box::new(RefClosure(f))),
        )
    }

    fn push_task(mut self, name: String, weight: u32, body: TaskBody<U>) -> Self {
        let shared = matches!(body, TaskBody::Shared(_));
        self.tasks.push(TaskDef {
            info: TaskInfo {
                name,
                weight,
                shared,
            },
            body,
        });
        self
    }

    /// Checks every setting and builds the user type.
    pub fn build(self) -> Result<UserType, UserTypeError> {
        let user_type = || self.name.clone();
        if self.name.trim().is_empty() {
            return Err(UserTypeError::EmptyName);
        }
        if self.weight == 0 {
            return Err(UserTypeError::ZeroWeight {
                user_type: user_type(),
            });
        }
        if self.tasks.is_empty() {
            return Err(UserTypeError::NoTasks {
                user_type: user_type(),
            });
        }
        for (i, task) in self.tasks.iter().enumerate() {
            let name = &task.info.name;
            let duplicate = self.tasks[..i].iter().any(|t| &t.info.name == name);
            if name.trim().is_empty() || duplicate {
                return Err(UserTypeError::BadTaskName {
                    user_type: user_type(),
                    task: name.clone(),
                });
            }
            if task.info.weight == 0 {
                return Err(UserTypeError::ZeroTaskWeight {
                    user_type: user_type(),
                    task: name.clone(),
                });
            }
            if self.mode == ExecutionMode::Concurrent && !task.info.shared {
                return Err(UserTypeError::ExclusiveTaskInConcurrentMode {
                    user_type: user_type(),
                    task: name.clone(),
                });
            }
        }
        self.wait_time
            .validate()
            .map_err(|source| UserTypeError::WaitTime {
                user_type: user_type(),
                source,
            })?;
        if let Some(host) = &self.host {
            crate::url::parse_base_url(host).map_err(|source| UserTypeError::BadHost {
                user_type: user_type(),
                host: host.clone(),
                source,
            })?;
        }
        let max_concurrent_tasks = match (self.mode, self.max_concurrent_tasks) {
            (ExecutionMode::Sequential, None) => 1,
            (ExecutionMode::Sequential, Some(_)) => {
                return Err(UserTypeError::MaxConcurrentTasks {
                    user_type: user_type(),
                    reason: "max_concurrent_tasks applies to concurrent mode only",
                });
            }
            (ExecutionMode::Concurrent, Some(0)) => {
                return Err(UserTypeError::MaxConcurrentTasks {
                    user_type: user_type(),
                    reason: "max_concurrent_tasks must be at least 1",
                });
            }
            (ExecutionMode::Concurrent, Some(n)) if n > MAX_CONCURRENT_TASKS => {
                return Err(UserTypeError::MaxConcurrentTasks {
                    user_type: user_type(),
                    reason: "max_concurrent_tasks must be at most 1000",
                });
            }
            (ExecutionMode::Concurrent, Some(n)) => n,
            (ExecutionMode::Concurrent, None) => self.tasks.len(),
        };
        let weights: Vec<u32> = self.tasks.iter().map(|t| t.info.weight).collect();
        let choice = WeightedChoice::new(&weights).map_err(|_| UserTypeError::NoTasks {
            user_type: user_type(),
        })?;
        let infos = self.tasks.iter().map(|t| t.info.clone()).collect();
        let def = Arc::new(Definition {
            factory: self.factory,
            on_start: self.on_start,
            on_stop: self.on_stop,
            tasks: self.tasks,
        });
        Ok(UserType(Arc::new(Inner {
            name: self.name.into(),
            weight: self.weight,
            host: self.host.map(Into::into),
            wait_time: self.wait_time,
            mode: self.mode,
            max_concurrent_tasks,
            tasks: infos,
            choice,
            spawner: def,
        })))
    }
}

/// `http://` or `https://`, then a non-empty authority without spaces.
struct Definition<U> {
    factory: Factory<U>,
    on_start: Option<Box<dyn MutTask<U>>>,
    on_stop: Option<Box<dyn MutTask<U>>>,
    tasks: Vec<TaskDef<U>>,
}

trait Spawner: Send + Sync {
    fn spawn(self: Arc<Self>, ctx: &UserContext) -> Box<dyn UserInstance>;
}

impl<U: Send + Sync + 'static> Spawner for Definition<U> {
    fn spawn(self: Arc<Self>, ctx: &UserContext) -> Box<dyn UserInstance> {
        let user = (self.factory)(ctx);
        Box::new(Instance { user, def: self })
    }
}

struct Instance<U> {
    user: U,
    def: Arc<Definition<U>>,
}

/// One live virtual user, its type erased: what the runner drives.
///
/// Indexes are positions in [`UserType::tasks`]; out-of-range indexes give `None`.
pub trait UserInstance: Send + Sync {
    /// The `on_start` future, if the type has one.
    fn on_start(&mut self) -> Option<BoxFuture<'_, TaskResult>>;
    /// The `on_stop` future, if the type has one.
    fn on_stop(&mut self) -> Option<BoxFuture<'_, TaskResult>>;
    /// Runs task `index` with exclusive access (any task; sequential users).
    fn run_task(&mut self, index: usize) -> Option<BoxFuture<'_, TaskResult>>;
    /// Runs task `index` with shared access (shared tasks only; concurrent users).
    fn run_shared_task(&self, index: usize) -> Option<BoxFuture<'_, TaskResult>>;
}

impl<U: Send + Sync + 'static> UserInstance for Instance<U> {
    fn on_start(&mut self) -> Option<BoxFuture<'_, TaskResult>> {
        let f = self.def.on_start.as_ref()?;
        Some(f.run(&mut self.user))
    }

    fn on_stop(&mut self) -> Option<BoxFuture<'_, TaskResult>> {
        let f = self.def.on_stop.as_ref()?;
        Some(f.run(&mut self.user))
    }

    fn run_task(&mut self, index: usize) -> Option<BoxFuture<'_, TaskResult>> {
        Some(match &self.def.tasks.get(index)?.body {
            TaskBody::Mut(f) => f.run(&mut self.user),
            TaskBody::Shared(f) => f.run(&self.user),
        })
    }

    fn run_shared_task(&self, index: usize) -> Option<BoxFuture<'_, TaskResult>> {
        match &self.def.tasks.get(index)?.body {
            TaskBody::Shared(f) => Some(f.run(&self.user)),
            TaskBody::Mut(_) => None,
        }
    }
}

struct Inner {
    name: Arc<str>,
    weight: u32,
    host: Option<Arc<str>>,
    wait_time: WaitTime,
    mode: ExecutionMode,
    max_concurrent_tasks: usize,
    tasks: Vec<TaskInfo>,
    choice: WeightedChoice,
    spawner: Arc<dyn Spawner>,
}

/// A validated user type, its user struct erased. Cheap to clone.
#[derive(Clone)]
pub struct UserType(Arc<Inner>);

impl UserType {
    /// Starts a user type named `name` whose users `factory` makes.
    pub fn builder<U, F>(name: impl Into<String>, factory: F) -> UserTypeBuilder<U>
    where
        U: Send + Sync + 'static,
        F: Fn(&UserContext) -> U + Send + Sync + 'static,
    {
        UserTypeBuilder {
            name: name.into(),
            factory: Box::new(factory),
            weight: 1,
            host: None,
            wait_time: WaitTime::default(),
            mode: ExecutionMode::Sequential,
            max_concurrent_tasks: None,
            on_start: None,
            on_stop: None,
            tasks: Vec::new(),
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The name, shared (for contexts and metrics keys).
    pub fn name_arc(&self) -> Arc<str> {
        Arc::clone(&self.0.name)
    }

    /// The weight among user types.
    pub fn weight(&self) -> u32 {
        self.0.weight
    }

    /// The default host, if set.
    pub fn host(&self) -> Option<&str> {
        self.0.host.as_deref()
    }

    /// The default host, shared.
    pub fn host_arc(&self) -> Option<Arc<str>> {
        self.0.host.clone()
    }

    /// The wait after each task.
    pub fn wait_time(&self) -> &WaitTime {
        &self.0.wait_time
    }

    /// The execution mode.
    pub fn execution_mode(&self) -> ExecutionMode {
        self.0.mode
    }

    /// How many tasks may run at once (1 for sequential users).
    pub fn max_concurrent_tasks(&self) -> usize {
        self.0.max_concurrent_tasks
    }

    /// The tasks, in the order they were added.
    pub fn tasks(&self) -> &[TaskInfo] {
        &self.0.tasks
    }

    /// Tasks in one iteration: one pass of the sequence for a sequential user (a task of
    /// weight `n` counts `n` times), one weighted pick for a concurrent one.
    pub fn iteration_len(&self) -> usize {
        match self.0.mode {
            ExecutionMode::Sequential => self
                .0
                .tasks
                .iter()
                .map(|t| t.weight as usize)
                .sum::<usize>()
                .max(1),
            ExecutionMode::Concurrent => 1,
        }
    }

    /// Makes one virtual user.
    pub fn spawn(&self, ctx: &UserContext) -> Box<dyn UserInstance> {
        Arc::clone(&self.0.spawner).spawn(ctx)
    }

    /// A fresh task scheduler for one user (or one concurrent slot).
    pub fn scheduler(&self) -> TaskScheduler {
        match self.0.mode {
            ExecutionMode::Sequential => TaskScheduler::Sequential {
                weights: self.0.tasks.iter().map(|t| t.weight).collect(),
                task: 0,
                repeat: 0,
            },
            ExecutionMode::Concurrent => TaskScheduler::Weighted(self.0.choice.clone()),
        }
    }
}

impl fmt::Debug for UserType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserType")
            .field("name", &self.0.name)
            .field("weight", &self.0.weight)
            .field("host", &self.0.host)
            .field("wait_time", &self.0.wait_time)
            .field("mode", &self.0.mode)
            .field("max_concurrent_tasks", &self.0.max_concurrent_tasks)
            .field("tasks", &self.0.tasks)
            .finish()
    }
}

/// Chooses a user's next task.
#[derive(Debug, Clone)]
pub enum TaskScheduler {
    /// In order, each task `weight` times in a row, then from the top.
    Sequential {
        /// Task weights, in order.
        weights: Vec<u32>,
        /// The current task.
        task: usize,
        /// How many times it has run in this turn.
        repeat: u32,
    },
    /// Random by weight.
    Weighted(WeightedChoice),
}

impl TaskScheduler {
    /// The index of the next task to run.
    pub fn next_task(&mut self, rng: &mut fastrand::Rng) -> usize {
        match self {
            TaskScheduler::Sequential {
                weights,
                task,
                repeat,
            } => {
                if weights.is_empty() {
                    return 0;
                }
                if *repeat >= weights[*task] {
                    *repeat = 0;
                    *task = (*task + 1) % weights.len();
                }
                *repeat += 1;
                *task
            }
            TaskScheduler::Weighted(choice) => choice.pick(rng),
        }
    }
}

#[cfg(test)]
mod tests;
