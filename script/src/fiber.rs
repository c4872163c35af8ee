//! A virtual user's own stack, on which all of its JavaScript runs.
//!
//! VU code is synchronous: `http.get` returns the response. Underneath, the call
//! suspends the VU's stack with what it needs (an [`crate::vu::Op`]), the VU's task
//! (an ordinary `async` task of the runner) awaits it, and resumes the stack with the
//! answer. No thread waits for the network or in `sleep`; a suspended VU is its stack
//! and its JavaScript heap, nothing more.
//!
//! The only unsafe code of the crate is here, for two things:
//!
//! - [`Suspender`] keeps a pointer to the coroutine's yielder so that native functions,
//!   called by QuickJS deep inside the VU's stack, can suspend it.
//! - [`Owned`] lets a VU (a QuickJS runtime, its values, and a suspended stack holding
//!   QuickJS frames) move between the async runtime's threads while it waits.

#![allow(unsafe_code)]

use std::cell::Cell;
use std::mem::ManuallyDrop;
use std::rc::Rc;

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};

/// The size of a VU's stack. Only the pages a VU touches take memory (a few KiB for
/// typical scripts); the rest is address space. QuickJS is told to stop well before its
/// end ([`JS_STACK_LIMIT`]), so deep recursion is a JavaScript `RangeError`, not a crash.
pub(crate) const STACK_SIZE: usize = 1024 * 1024;

/// How much of [`STACK_SIZE`] QuickJS may use; the rest is for the native functions it
/// calls and the suspension itself.
pub(crate) const JS_STACK_LIMIT: usize = STACK_SIZE - 256 * 1024;

/// How VU code on the fiber suspends it.
pub(crate) struct Suspender<I, Y> {
    /// The yielder of the running fiber function; null before it starts and after it
    /// returns.
    yielder: Cell<*const Yielder<I, Y>>,
    /// Whether the fiber is running, i.e. whether the caller is on its stack.
    running: Cell<bool>,
}

impl<I, Y> Suspender<I, Y> {
    fn new() -> Self {
        Suspender {
            yielder: Cell::new(std::ptr::null()),
            running: Cell::new(false),
        }
    }

    /// Suspends the fiber with `value` and returns what it is resumed with; `None` when
    /// not called from the fiber's own stack.
    pub(crate) fn suspend(&self, value: Y) -> Option<I> {
        let y = self.yielder.get();
        if y.is_null() || !self.running.get() {
            return None;
        }
        // SAFETY: `yielder` points to the `Yielder` lent to the fiber's function; it is
        // set when that function starts and cleared before it returns, so it is valid
        // while non-null. `running` is true only between `Fiber::resume`'s switch onto
        // the fiber's stack and the switch back, so this call is made on that stack, as
        // `Yielder::suspend` requires.
        Some(unsafe { (*y).suspend(value) })
    }
}

/// A stack of its own running one function, which suspends through a [`Suspender`] and
/// is resumed with the answer.
pub(crate) struct Fiber<I, Y> {
    co: ManuallyDrop<Coroutine<I, Y, (), DefaultStack>>,
    suspender: Rc<Suspender<I, Y>>,
}

impl<I: 'static, Y: 'static> Fiber<I, Y> {
    /// A fiber that will run `f` with the first value it is resumed with. `f` gets the
    /// suspender it (and only it) may suspend through.
    pub(crate) fn new<F>(f: F) -> std::io::Result<Self>
    where
        F: FnOnce(Rc<Suspender<I, Y>>, I) + 'static,
    {
        let stack = DefaultStack::new(STACK_SIZE)?;
        let suspender = Rc::new(Suspender::new());
        let inner = Rc::clone(&suspender);
        let co = Coroutine::with_stack(stack, move |y: &Yielder<I, Y>, input: I| {
            inner.yielder.set(y);
            f(Rc::clone(&inner), input);
            inner.yielder.set(std::ptr::null());
        });
        Ok(Fiber {
            co: ManuallyDrop::new(co),
            suspender,
        })
    }

    /// Runs the fiber until it suspends (`Some`) or its function returns (`None`, also
    /// for a fiber that had already returned).
    pub(crate) fn resume(&mut self, input: I) -> Option<Y> {
        if self.co.done() {
            return None;
        }
        self.suspender.running.set(true);
        let r = self.co.resume(input);
        self.suspender.running.set(false);
        match r {
            CoroutineResult::Yield(y) => Some(y),
            CoroutineResult::Return(()) => None,
        }
    }
}

impl<I, Y> Drop for Fiber<I, Y> {
    fn drop(&mut self) {
        if self.co.done() {
            // SAFETY: dropped once, here; a finished coroutine has nothing to unwind.
            unsafe { ManuallyDrop::drop(&mut self.co) };
        } else {
            // Unwinding a suspended stack would cross QuickJS's C frames, which cannot
            // be unwound: its owner drives it to its end first (see `Vu`'s drop), and a
            // stack that would not end is leaked, with what it holds.
            tracing::warn!("a virtual user's stack did not finish; its memory is leaked");
        }
    }
}

/// A value that is only ever used by one thread at a time, through `&mut`, and may move
/// between threads: a VU, whose QuickJS runtime, JavaScript values (`Rc`s included) and
/// suspended stack all belong to it alone.
pub(crate) struct Owned<T>(T);

impl<T> Owned<T> {
    pub(crate) fn new(value: T) -> Self {
        Owned(value)
    }

    pub(crate) fn get_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

// SAFETY: an `Owned<T>` holds everything reachable from `T`: the QuickJS runtime and
// context (which keep no thread-local state), the `Rc`s shared between the VU and its
// native functions (never handed out of it, so their counts only change on the thread
// that holds the VU), and a suspended stack whose frames are QuickJS's interpreter, the
// binding's trampolines and the crate's native functions, none of which holds a
// reference to thread-local storage across a suspension. Moving all of it at once to
// another thread is what a thread-bound runtime does when it is idle. The async runtime
// polls a task on one thread at a time, so the value is never used by two threads at
// once.
unsafe impl<T> Send for Owned<T> {}

// SAFETY: `Owned` gives access only through `&mut self` (`get_mut`): a shared reference
// to it is useless, so sharing one between threads cannot race.
unsafe impl<T> Sync for Owned<T> {}

/// Tells QuickJS that its code runs on the current stack (the fiber's, when called from
/// the fiber's function): its overflow check ([`JS_STACK_LIMIT`]) measures from here.
pub(crate) fn quickjs_stack_starts_here(ctx: &rquickjs::Ctx<'_>) {
    // SAFETY: `ctx` is a live context, so the runtime `JS_GetRuntime` returns is alive;
    // `JS_UpdateStackTop` only records the current stack pointer in it.
    unsafe {
        rquickjs::qjs::JS_UpdateStackTop(rquickjs::qjs::JS_GetRuntime(ctx.as_raw().as_ptr()));
    }
}
