//! What the terminal can show: its width, and whether colours are welcome.
//!
//! The width comes from `COLUMNS` when it is set (so a user or a test can ask for a
//! layout), else from `stty size` on the stream when it is a terminal; a stream that is
//! not a terminal (a pipe, a file) has no width and gets the full layout. No terminal
//! crate and no unsafe code: `stty` reads the size of the terminal given as its input.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

/// One of the process's output streams.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn is_terminal(self) -> bool {
        match self {
            Stream::Stdout => std::io::stdout().is_terminal(),
            Stream::Stderr => std::io::stderr().is_terminal(),
        }
    }

    fn stdin_for_stty(self) -> Option<Stdio> {
        let fd = match self {
            Stream::Stdout => std::io::stdout().as_fd().try_clone_to_owned(),
            Stream::Stderr => std::io::stderr().as_fd().try_clone_to_owned(),
        };
        fd.ok().map(Stdio::from)
    }
}

/// The width to fit, in columns: `COLUMNS`, else the terminal's; `None` when the stream
/// is not a terminal (and `COLUMNS` is unset).
pub(crate) fn width(stream: Stream) -> Option<usize> {
    if let Some(n) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return Some(n);
    }
    if !stream.is_terminal() {
        return None;
    }
    let out = Command::new("stty")
        .arg("size")
        .stdin(stream.stdin_for_stty()?)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    parse_size(&String::from_utf8_lossy(&out.stdout))
}

/// `stty size` prints `ROWS COLS`.
fn parse_size(text: &str) -> Option<usize> {
    let cols = text.split_whitespace().nth(1)?.parse::<usize>().ok()?;
    (cols > 0).then_some(cols)
}

/// Colours on this stream: only on a terminal, and never when `NO_COLOR` is set to
/// anything but the empty string (<https://no-color.org>).
pub(crate) fn colour(stream: Stream) -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && stream.is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stty_sizes_are_read() {
        assert_eq!(parse_size("40 80\n"), Some(80));
        assert_eq!(parse_size("0 0\n"), None);
        assert_eq!(parse_size(""), None);
    }
}
