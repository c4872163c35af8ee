//! `{{env.NAME}}` and `{{env.NAME:-default}}` in a scenario file: filled in when the file
//! is checked, from the environment of the process that checks it. A distributed run's
//! workers get the master's values with the plan, so every worker sends what the master
//! was given.

use std::collections::BTreeMap;

use toml::Spanned;

use super::{Ctx, FileSpec, RequestSpec, ScenarioError, template};

const OPEN: &str = "{{env.";

/// Where `{{env.NAME}}` values come from.
#[derive(Debug, Clone, Copy)]
pub enum Env<'a> {
    /// This process's environment.
    Process,
    /// Values given with a distributed run's plan (the master's).
    Given(&'a BTreeMap<String, String>),
}

impl Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        match self {
            Env::Process => std::env::var(name).ok(),
            Env::Given(values) => values.get(name).cloned(),
        }
    }
}

/// The values of the environment variables `text` refers to, from this process, for a
/// distributed run's plan. Unset ones are left out (the workers then take the default
/// or refuse the file, as here).
pub fn referenced(text: &str) -> BTreeMap<String, String> {
    template::refs(text, OPEN)
        .filter_map(Result::ok)
        .filter_map(|inner| {
            let name = inner.split(":-").next().unwrap_or_default();
            std::env::var(name).ok().map(|v| (name.to_owned(), v))
        })
        .collect()
}

/// `s` with its `{{env.…}}` references filled in; `Err(message)` names the first that
/// cannot be.
fn expand(s: &str, env: Env<'_>) -> Result<String, String> {
    if template::refs(s, OPEN).any(|r| r.is_err()) {
        return Err(format!("unclosed `{OPEN}`: write {{{{env.NAME}}}}"));
    }
    template::replace(s, OPEN, |inner| {
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        let valid = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(format!(
                "`{{{{env.{inner}}}}}`: `{name}` is not an environment variable name (letters, digits and _, not starting with a digit)"
            ));
        }
        match (env.get(name), default) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(d)) => Ok(Some(d.to_owned())),
            (None, None) => Err(format!(
                "`{{{{env.{name}}}}}`: the environment variable {name} is not set (give a default with {{{{env.{name}:-value}}}})"
            )),
        }
    })
}

fn expand_spanned(
    cx: &Ctx<'_>,
    s: &mut Spanned<String>,
    field: &str,
    env: Env<'_>,
) -> Result<(), ScenarioError> {
    if !s.get_ref().contains(OPEN) {
        return Ok(());
    }
    match expand(s.get_ref(), env) {
        Ok(v) => {
            *s = Spanned::new(s.span(), v);
            Ok(())
        }
        Err(message) => cx.err(Some(s.span()), field, message),
    }
}

fn expand_value(v: &mut toml::Value, env: Env<'_>) -> Result<(), String> {
    match v {
        toml::Value::String(s) if s.contains(OPEN) => *s = expand(s, env)?,
        toml::Value::Array(items) => {
            for item in items {
                expand_value(item, env)?;
            }
        }
        toml::Value::Table(t) => {
            for (_, item) in t.iter_mut() {
                expand_value(item, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_request(
    cx: &Ctx<'_>,
    r: &mut RequestSpec,
    field: &str,
    env: Env<'_>,
) -> Result<(), ScenarioError> {
    expand_spanned(cx, &mut r.path, &format!("{field}.path"), env)?;
    for (k, v) in &mut r.headers {
        expand_spanned(cx, v, &format!("{field}.headers.{k}"), env)?;
    }
    if let Some(b) = &mut r.body {
        expand_spanned(cx, b, &format!("{field}.body"), env)?;
    }
    if let Some(b) = &mut r.body_contains {
        expand_spanned(cx, b, &format!("{field}.body_contains"), env)?;
    }
    if let Some(j) = &mut r.json {
        let span = j.span();
        let mut value = j.get_ref().clone();
        if let Err(message) = expand_value(&mut value, env) {
            return cx.err(Some(span), format!("{field}.json"), message);
        }
        *j = Spanned::new(span, value);
    }
    Ok(())
}

/// Fills in every `{{env.…}}` of the fields that take them: `host`, and the path,
/// headers, body, JSON body and `body_contains` of setup requests and tasks, and user
/// types' headers.
pub(super) fn expand_file(
    cx: &Ctx<'_>,
    spec: &mut FileSpec,
    env: Env<'_>,
) -> Result<(), ScenarioError> {
    if let Some(h) = &mut spec.host {
        expand_spanned(cx, h, "host", env)?;
    }
    for (i, r) in spec.setup.iter_mut().enumerate() {
        expand_request(cx, r.get_mut(), &format!("setup[{i}]"), env)?;
    }
    for (i, r) in spec.teardown.iter_mut().enumerate() {
        expand_request(cx, r.get_mut(), &format!("teardown[{i}]"), env)?;
    }
    for (i, u) in spec
        .users
        .iter_mut()
        .flat_map(|u| u.get_mut().iter_mut())
        .enumerate()
    {
        let user = u.get_mut();
        for (k, v) in &mut user.headers {
            expand_spanned(cx, v, &format!("users[{i}].headers.{k}"), env)?;
        }
        if let Some(tasks) = &mut user.tasks {
            for (j, t) in tasks.get_mut().iter_mut().enumerate() {
                expand_request(cx, t.get_mut(), &format!("users[{i}].tasks[{j}]"), env)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_filled_in_or_refused_with_the_reason() {
        let values: BTreeMap<String, String> = [
            ("TOKEN".to_owned(), "t0k".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ]
        .into_iter()
        .collect();
        let env = Env::Given(&values);
        assert_eq!(expand("Bearer {{env.TOKEN}}", env).unwrap(), "Bearer t0k");
        assert_eq!(expand("{{env.NOPE:-dflt}}/x", env).unwrap(), "dflt/x");
        assert_eq!(expand("{{env.NOPE:-}}", env).unwrap(), "");
        assert_eq!(
            expand("{{env.EMPTY:-d}}", env).unwrap(),
            "",
            "set but empty is set"
        );
        assert_eq!(
            expand("no refs {{setup.x}}", env).unwrap(),
            "no refs {{setup.x}}"
        );
        let e = expand("/{{env.NOPE}}", env).unwrap_err();
        assert!(e.contains("NOPE is not set"), "{e}");
        let e = expand("/{{env.1X}}", env).unwrap_err();
        assert!(e.contains("not an environment variable name"), "{e}");
        let e = expand("/{{env.X", env).unwrap_err();
        assert!(e.contains("unclosed"), "{e}");
    }

    #[test]
    fn the_master_sends_the_values_the_file_refers_to() {
        // PATH is set in any test environment; the second name is not.
        let text = "path = \"/{{env.PATH}}\"\nx = \"{{env.AIOTEST_SURELY_UNSET_42:-d}}\"";
        let got = referenced(text);
        assert_eq!(got.keys().collect::<Vec<_>>(), ["PATH"]);
    }
}
