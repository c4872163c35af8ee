//! Errors as a script author needs them: what, and where in the script.

use std::fmt;

use rquickjs::{Ctx, Object, Value};

use crate::script::Script;

/// An exception or error from a script, with where it was thrown when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsError {
    /// `TypeError: x is not a function`, or what went wrong around the script.
    pub message: String,
    /// `script.js:12:5`: the innermost place in the script itself.
    pub location: Option<String>,
}

impl JsError {
    pub(crate) fn plain(message: impl Into<String>) -> Self {
        JsError {
            message: message.into(),
            location: None,
        }
    }

    /// Reads the pending exception of `ctx` when `e` says there is one.
    pub(crate) fn from_rquickjs(ctx: &Ctx<'_>, e: rquickjs::Error, script: &Script) -> Self {
        if !e.is_exception() {
            return JsError::plain(e.to_string());
        }
        let v: Value<'_> = ctx.catch();
        let Some(o) = v.as_object() else {
            // `throw "text"` or `throw 42`.
            let shown = ctx
                .json_stringify(v.clone())
                .ok()
                .flatten()
                .and_then(|s| s.to_string().ok())
                .unwrap_or_else(|| "a value that cannot be shown".into());
            return JsError::plain(format!("Uncaught {shown}"));
        };
        let get = |o: &Object<'_>, k: &str| o.get::<_, Option<String>>(k).ok().flatten();
        let name = get(o, "name").unwrap_or_else(|| "Error".into());
        let message = get(o, "message").unwrap_or_default();
        let stack = get(o, "stack").unwrap_or_default();
        let location = location_in(&stack, &script.name);
        JsError {
            message: if message.is_empty() {
                name
            } else {
                format!("{name}: {message}")
            },
            location,
        }
    }
}

/// The first `file:line[:column]` of `stack` in `file`.
fn location_in(stack: &str, file: &str) -> Option<String> {
    for line in stack.lines() {
        let line = line.trim();
        let Some(at) = line.find(file) else {
            continue;
        };
        let rest = &line[at..];
        let end = rest.find(')').unwrap_or(rest.len());
        let loc = &rest[..end];
        // `file:line` or `file:line:col`.
        if loc[file.len()..].starts_with(':') {
            return Some(loc.to_owned());
        }
    }
    None
}

impl fmt::Display for JsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(at) => write!(f, "{} at {at}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for JsError {}

/// Why a script cannot run: it cannot be read, does not compile, throws in init, or its
/// `options` are wrong. Says the file and, when known, the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    /// The script's path as given.
    pub file: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

impl std::error::Error for ScriptError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_is_the_first_frame_in_the_script() {
        let stack =
            "    at fail (k6:40:9)\n    at default (load.js:12:5)\n    at <eval> (load.js:30)\n";
        assert_eq!(
            location_in(stack, "load.js").as_deref(),
            Some("load.js:12:5")
        );
        assert_eq!(
            location_in("    at load.js:3:14\n", "load.js").as_deref(),
            Some("load.js:3:14")
        );
        assert_eq!(location_in("    at other.js:3\n", "load.js"), None);
    }
}
