//! What fills a template at run time: `{{builtin.*}}`, `{{vars.*}}`, `{{setup.*}}`.

use crate::*;

/// The built-in values a request may use: `{{builtin.vu}}` (the user's number),
/// `{{builtin.uuid}}` (a new random UUID each time) and `{{builtin.random(MIN,MAX)}}` (a
/// whole number from MIN to MAX, new each time).
pub(crate) const BUILTIN: &str = "{{builtin.";

/// A built-in reference, checked with the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Builtin {
    Vu,
    Iteration,
    Uuid,
    Random(i64, i64),
}

/// What `{{builtin.INNER}}` means, or why it means nothing.
pub(crate) fn parse_builtin(inner: &str) -> Result<Builtin, String> {
    match inner {
        "vu" => return Ok(Builtin::Vu),
        "iteration" => return Ok(Builtin::Iteration),
        "uuid" => return Ok(Builtin::Uuid),
        _ => {}
    }
    let args = inner
        .strip_prefix("random(")
        .and_then(|a| a.strip_suffix(')'))
        .ok_or_else(|| {
            format!("`{{{{builtin.{inner}}}}}`: the built-ins are vu, iteration, uuid and random(MIN,MAX)")
        })?;
    let bad = || format!("`{{{{builtin.{inner}}}}}`: random takes two whole numbers, MIN <= MAX");
    let (a, b) = args.split_once(',').ok_or_else(bad)?;
    let (a, b): (i64, i64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a > b {
        return Err(bad());
    }
    Ok(Builtin::Random(a, b))
}

/// Every `{{builtin.…}}` of `s` must be one.
pub(crate) fn check_builtins(
    cx: &Ctx<'_>,
    s: &Spanned<String>,
    field: &str,
) -> Result<(), ScenarioError> {
    for found in template::refs(s.get_ref(), BUILTIN) {
        let Ok(inner) = found else {
            return cx.err(Some(s.span()), field, format!("unclosed `{BUILTIN}`"));
        };
        if let Err(message) = parse_builtin(inner) {
            return cx.err(Some(s.span()), field, message);
        }
    }
    Ok(())
}

pub(crate) fn builtin_value(b: Builtin, vu: u64, iteration: u64) -> String {
    match b {
        Builtin::Vu => vu.to_string(),
        Builtin::Iteration => iteration.to_string(),
        Builtin::Random(a, b) => aiotest_core::fastrand::i64(a..=b).to_string(),
        Builtin::Uuid => {
            // Version 4, variant 1: 122 random bits.
            let n = (aiotest_core::fastrand::u128(..) & !(0xf << 76) & !(0x3 << 62))
                | (0x4 << 76)
                | (0x2 << 62);
            let h = format!("{n:032x}");
            format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            )
        }
    }
}

/// What a user's templates are filled with.
pub(crate) struct Values<'a> {
    /// Its captures.
    pub(crate) vars: &'a HashMap<String, String>,
    /// Its number.
    pub(crate) vu: u64,
    /// Its iteration, from 0.
    pub(crate) iteration: u64,
    /// The data files and its rows of them.
    pub(crate) data: Option<(&'a data::Data, &'a data::Rows)>,
}

/// `template` with `{{vars.NAME}}`, `{{data.COLUMN}}` and `{{builtin.…}}` filled in; `Err`
/// says which value the user does not have.
pub(crate) fn fill_vars(template: &str, v: &Values<'_>) -> Result<String, String> {
    if !template.contains("{{") {
        return Ok(template.to_owned());
    }
    // One pass: a value is never read again for references. Checked with the file:
    // every reference is closed and means something.
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        let inner = &after[..end];
        if let Some(name) = inner.strip_prefix("vars.") {
            match v.vars.get(name) {
                Some(x) => out.push_str(x),
                None => {
                    return Err(format!(
                        "`{{{{vars.{name}}}}}` is not captured yet by this user"
                    ));
                }
            }
        } else if let Some(column) = inner.strip_prefix("data.") {
            match v.data {
                Some((data, rows)) => out.push_str(data.value(column, rows)?),
                None => return Err(format!("`{{{{data.{column}}}}}`: no data rows here")),
            }
        } else if let Some(Ok(b)) = inner.strip_prefix("builtin.").map(parse_builtin) {
            out.push_str(&builtin_value(b, v.vu, v.iteration));
        } else {
            out.push_str(&rest[start..start + 2 + end + 2]);
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

pub(crate) fn fill_json(
    v: &serde_json::Value,
    values: &Values<'_>,
) -> Result<serde_json::Value, String> {
    Ok(match v {
        serde_json::Value::String(s) => serde_json::Value::String(fill_vars(s, values)?),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|x| fill_json(x, values))
            .collect::<Result<_, _>>()?,
        serde_json::Value::Object(o) => o
            .iter()
            .map(|(k, x)| Ok((k.clone(), fill_json(x, values)?)))
            .collect::<Result<_, String>>()?,
        other => other.clone(),
    })
}

pub(crate) fn render_json(
    v: &serde_json::Value,
    values: Option<&serde_json::Value>,
) -> serde_json::Value {
    match v {
        serde_json::Value::String(s) => serde_json::Value::String(render(s, values)),
        serde_json::Value::Array(a) => a.iter().map(|x| render_json(x, values)).collect(),
        serde_json::Value::Object(o) => o
            .iter()
            .map(|(k, x)| (k.clone(), render_json(x, values)))
            .collect(),
        other => other.clone(),
    }
}
