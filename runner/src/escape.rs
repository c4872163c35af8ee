//! Text that came from a target (a captured value in a path, an error message) made safe
//! to show: on a terminal, no control character reaches it raw (an `ESC[2J` would clear
//! the screen, an `ESC]0;...BEL` retitle the window), and in a CSV cell no formula starts.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `s` with every control character written as an escape: `\n`, `\r`, `\t`, `\x1b`,
/// `\u{9b}`. Unchanged (and not copied) when it has none.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A CSV cell's text: [`printable`], and a leading `=`, `+`, `-` or `@` (which a
/// spreadsheet would run as a formula) neutralised with a `'` before it, as
/// spreadsheet-safe CSV writers do.
pub fn spreadsheet_safe(s: &str) -> Cow<'_, str> {
    let p = printable(s);
    if p.starts_with(['=', '+', '-', '@']) {
        Cow::Owned(format!("'{p}"))
    } else {
        p
    }
}

/// Pushes `n` spaces: padding to a width of any size, where `format!`'s width is limited
/// to 65,535.
pub(crate) fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped_and_formulas_neutralised() {
        assert!(matches!(printable("/plain/path"), Cow::Borrowed(_)));
        assert_eq!(
            printable("/x\u{1b}]0;owned\u{7}\u{1b}[2J\n"),
            "/x\\x1b]0;owned\\x07\\x1b[2J\\n"
        );
        assert_eq!(printable("a\u{9b}b"), "a\\u{9b}b");
        assert_eq!(spreadsheet_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(spreadsheet_safe("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(spreadsheet_safe("+1"), "'+1");
        assert_eq!(spreadsheet_safe("-cmd"), "'-cmd");
        assert_eq!(spreadsheet_safe("/api"), "/api");
        let mut s = String::from("x");
        pad(&mut s, 70_000);
        assert_eq!(s.len(), 70_001);
    }
}
