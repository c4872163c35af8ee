//! `{{PREFIX.INNER}}` references in a scenario file's strings: one scanner for every kind
//! (`setup.`, `vars.`, `builtin.`, `env.`), for checking them and for filling them in.

/// A reference opened by `{{PREFIX` with no `}}` after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Unclosed;

/// The insides of every `{{PREFIX…}}` in `s`, in order; `Err(Unclosed)` ends the list at a
/// reference that is not closed.
pub(super) fn refs<'a>(
    s: &'a str,
    open: &'static str,
) -> impl Iterator<Item = Result<&'a str, Unclosed>> + 'a {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        let start = r.find(open)?;
        let after = &r[start + open.len()..];
        match after.find("}}") {
            Some(end) => {
                rest = Some(&after[end + 2..]);
                Some(Ok(&after[..end]))
            }
            None => {
                rest = None;
                Some(Err(Unclosed))
            }
        }
    })
}

/// `s` with each `{{PREFIX INNER}}` replaced by `f(INNER)`: `Ok(Some(text))` puts `text`
/// there, `Ok(None)` leaves the reference as written, `Err` stops. An unclosed reference is
/// left as written (files are checked for them before anything is filled in).
pub(super) fn replace<E>(
    s: &str,
    open: &str,
    mut f: impl FnMut(&str) -> Result<Option<String>, E>,
) -> Result<String, E> {
    if !s.contains(open) {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find(open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        match f(&after[..end])? {
            Some(text) => out.push_str(&text),
            None => out.push_str(&rest[start..start + open.len() + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_in_order_and_an_unclosed_one_ends_the_list() {
        let found: Vec<_> = refs("/{{vars.a}}/x/{{vars.b}}{{vars.c", "{{vars.").collect();
        assert_eq!(found, [Ok("a"), Ok("b"), Err(Unclosed)]);
        assert_eq!(refs("/plain", "{{vars.").count(), 0);
    }

    #[test]
    fn replacing_fills_keeps_or_stops() {
        let filled = replace::<()>("/{{v.a}}-{{v.b}}-{{v.a", "{{v.", |inner| {
            Ok((inner == "a").then(|| "1".to_owned()))
        });
        assert_eq!(filled.unwrap(), "/1-{{v.b}}-{{v.a");
        let stopped = replace("/{{v.a}}", "{{v.", |inner| Err(inner.to_owned()));
        assert_eq!(stopped.unwrap_err(), "a");
    }
}
