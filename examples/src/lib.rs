//! Runnable aiotest examples. Each binary under `src/bin/` is one example:
//!
//! - `quickstart`: the README's example, a user with two weighted tasks, an `on_start`
//!   login and a custom load shape
//!   (`cargo run -p aiotest-examples --bin quickstart -- run --demo`).
//! - `lifecycle`: setup data shared with every user, teardown with it, a summary hook and
//!   a closure as load shape (`cargo run -p aiotest-examples --bin lifecycle -- run --demo`).
//! - `scenarios`: two scenarios in one test, a closed-model browse and an open-model
//!   (constant arrival rate) checkout
//!   (`cargo run -p aiotest-examples --bin scenarios -- run --demo`).
//!
//! This library only exists to compile the README's code blocks as doc tests, so the
//! README cannot drift from what compiles.

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    /// The README shows the quickstart example verbatim; this keeps them identical.
    #[test]
    fn readme_shows_the_quickstart_example_verbatim() {
        let readme = include_str!("../../README.md");
        let example = include_str!("bin/quickstart.rs");
        assert!(
            readme.contains(example),
            "README.md must contain examples/src/bin/quickstart.rs verbatim"
        );
    }
}
