//! `cargo xtask screens`: what a user sees in a terminal, captured as text in
//! `docs/terminal/`: a demo run and a run of `examples/scenarios.toml`, each in a tmux
//! window 80 and 160 columns wide. The release build, as a user installs it.

use std::process::Command;
use std::time::Duration;

use crate::util::{cargo, root, run as step};

/// A run to capture: its file name and the arguments after `aiotest`.
const RUNS: [(&str, &str); 2] = [
    ("demo", "run --demo -t 5s"),
    ("scenarios", "run examples/scenarios.toml --demo"),
];

const WIDTHS: [u16; 2] = [80, 160];

fn tmux() -> Command {
    // A private server: the user's own tmux sessions are left alone.
    let mut c = Command::new("tmux");
    c.args(["-L", "aiotest-screens"]);
    c
}

/// Runs `args` in a detached tmux window `width` columns wide and returns the screen
/// once the command has ended: the command line, the last progress line, the summary.
fn capture(args: &str, width: u16) -> Result<String, String> {
    let session = format!("screen{width}");
    let signal = format!("{session}-done");
    let bin = root().join("target/release/aiotest");
    let script = format!(
        "cd {root} && clear && echo '$ aiotest {args}' && {bin} {args}; \
         tmux -L aiotest-screens wait-for -S {signal}; sleep 600",
        root = root().display(),
        bin = bin.display(),
    );
    let mut started = false;
    for _ in 0..3 {
        // The first command after a server exits can race its start: try again.
        let ok = tmux()
            .args([
                "new-session",
                "-d",
                "-s",
                &session,
                "-x",
                &width.to_string(),
            ])
            .args(["-y", "50", "bash", "-c", &script])
            .env_remove("NO_COLOR")
            .status()
            .map_err(|e| format!("tmux: {e}"))?
            .success();
        if ok {
            started = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if !started {
        return Err(format!("tmux could not start a {width}-column window"));
    }
    step("wait for the run", tmux().args(["wait-for", &signal]))?;
    let out = tmux()
        .args(["capture-pane", "-p", "-t", &session])
        .output()
        .map_err(|e| format!("tmux capture-pane: {e}"))?;
    let _ = tmux().args(["kill-session", "-t", &session]).status();
    let screen = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = screen.lines().map(str::trim_end).collect();
    let end = lines
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(0, |i| i + 1);
    Ok(lines[..end].join("\n") + "\n")
}

/// Writes `docs/terminal/{demo,scenarios}-{80,160}.txt`.
pub(crate) fn run(_extra: &[String]) -> Result<(), String> {
    crate::install::ensure_tmux()?;
    step(
        "build the CLI (release)",
        cargo().args(["build", "--quiet", "--release", "-p", "aiotest-cli"]),
    )?;
    let dir = root().join("docs/terminal");
    std::fs::create_dir_all(&dir).map_err(|e| format!("docs/terminal/: {e}"))?;
    for (name, args) in RUNS {
        for width in WIDTHS {
            let screen = capture(args, width)?;
            let path = dir.join(format!("{name}-{width}.txt"));
            std::fs::write(&path, screen).map_err(|e| format!("{}: {e}", path.display()))?;
            println!("screens: {}", path.display());
        }
    }
    let _ = tmux().arg("kill-server").status();
    Ok(())
}
