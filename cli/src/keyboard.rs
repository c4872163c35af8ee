//! Keyboard control on a terminal: `p` pause/resume, `s` stop, `+`/`-` one user more or
//! less, `*`/`/` ten.
//!
//! The terminal is switched to unbuffered, unechoed input with `stty` (and restored when
//! the run ends), so no terminal crate and no unsafe code are needed. Keys are read on a
//! plain thread, which hands commands to the runner through its handle.

use std::io::{IsTerminal, Read};
use std::process::{Command, Stdio};

use aiotest_core::state::RunnerState;
use aiotest_runner::RunnerHandle;

/// The keys, said once when a run starts on a terminal (it fits 80 columns).
pub(crate) const HELP: &str = "keys: p pause/resume, s stop, + - one user more/less, * / ten";

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    TogglePause,
    Stop,
    Users(i64),
}

/// The command of a key, if it has one.
pub(crate) fn key_command(byte: u8) -> Option<Key> {
    match byte {
        b'p' | b'P' => Some(Key::TogglePause),
        b's' | b'S' => Some(Key::Stop),
        b'+' => Some(Key::Users(1)),
        b'-' => Some(Key::Users(-1)),
        b'*' => Some(Key::Users(10)),
        b'/' => Some(Key::Users(-10)),
        _ => None,
    }
}

/// Restores the terminal when dropped.
pub(crate) struct Keyboard {
    saved: String,
}

impl Drop for Keyboard {
    fn drop(&mut self) {
        let _ = stty(&[self.saved.as_str()]);
    }
}

fn stty(args: &[&str]) -> Option<String> {
    // stty acts on its standard input, which must be the terminal.
    let out = Command::new("stty")
        .args(args)
        .stdin(Stdio::inherit())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Starts reading keys when stdin is a terminal (and `stty` works); `None` otherwise.
pub(crate) fn start(handle: RunnerHandle) -> Option<Keyboard> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    let saved = stty(&["-g"])?;
    stty(&["-icanon", "-echo", "min", "1"])?;
    let rt = tokio::runtime::Handle::current();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut byte = [0u8; 1];
        // Ends when stdin closes; the process ends with the run either way.
        while let Ok(1) = stdin.read(&mut byte) {
            let Some(key) = key_command(byte[0]) else {
                continue;
            };
            let h = handle.clone();
            rt.block_on(async move {
                match key {
                    Key::TogglePause if h.state() == RunnerState::Paused => h.resume().await,
                    Key::TogglePause => h.pause().await,
                    Key::Stop => h.stop().await,
                    Key::Users(delta) => {
                        let now: u64 = h.users().iter().map(|(_, n)| n).sum();
                        let target = (now as i64 + delta).clamp(0, i64::from(u32::MAX));
                        h.set_users(target as u32).await;
                    }
                }
            });
        }
    });
    Some(Keyboard { saved })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_commands() {
        assert_eq!(key_command(b'p'), Some(Key::TogglePause));
        assert_eq!(key_command(b's'), Some(Key::Stop));
        assert_eq!(key_command(b'+'), Some(Key::Users(1)));
        assert_eq!(key_command(b'-'), Some(Key::Users(-1)));
        assert_eq!(key_command(b'*'), Some(Key::Users(10)));
        assert_eq!(key_command(b'/'), Some(Key::Users(-10)));
        assert_eq!(key_command(b'x'), None);
    }
}
