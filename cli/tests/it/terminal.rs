//! What the terminal shows: the table fitted to the width, colours only on a terminal,
//! the keys said once, one message for a failed setup, and `-q` meaning quiet. The
//! terminal cases run the binary on a real pseudo-terminal through `script(1)`.

use std::process::{Command, Stdio};

use super::text;

/// Two request names and `--max-endpoints 1`: a run that logs one warning.
fn two_names(host: &str, tag: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("aiotest-term-{}-{tag}.toml", std::process::id()));
    std::fs::write(
        &path,
        format!(
            "host = \"{host}\"\n[[users]]\nname = \"u\"\nwait_time = 0.01\n\
             [[users.tasks]]\npath = \"/a\"\n[[users.tasks]]\npath = \"/b\"\n"
        ),
    )
    .unwrap();
    path
}

fn table_lines(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .take_while(|l| !l.starts_with("Run time"))
        .collect()
}

#[test]
fn in_a_pipe_the_table_is_whole_and_nothing_is_coloured() {
    let t = super::target();
    let file = two_names(&format!("http://{}", t.addr), "pipe");
    let file = file.to_str().unwrap();
    let args = [
        "run",
        file,
        "-u",
        "2",
        "-t",
        "1s",
        "--max-endpoints",
        "1",
        "-L",
        "info",
    ];
    let out = super::aiotest(&args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // The warning is there to be coloured, and is not: stderr is a pipe.
    assert!(stderr.contains("WARN"), "{stderr}");
    assert!(
        !stderr.contains('\x1b') && !stdout.contains('\x1b'),
        "{stderr}"
    );
    // Not a terminal: every column, whatever the length.
    assert!(stdout.lines().next().unwrap().contains("Mean "), "{stdout}");
    // COLUMNS asks for a width: the narrow layout, every line inside it.
    let out = Command::new(env!("CARGO_BIN_EXE_aiotest"))
        .args(args)
        .env("COLUMNS", "80")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    let lines = table_lines(&stdout);
    assert!(lines.len() >= 3, "{stdout}");
    for l in lines {
        assert!(l.chars().count() < 80, "wider than 80: {l}\n{stdout}");
    }
    assert!(!stdout.contains("Mean"), "{stdout}");
    let _ = std::fs::remove_file(file);
}

/// The binary on a pseudo-terminal (stdin, stdout and stderr), as a user runs it.
fn on_a_terminal(args: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new("script");
    cmd.args([
        "-qec",
        &format!("{} {args}", env!("CARGO_BIN_EXE_aiotest")),
        "/dev/null",
    ])
    .env("COLUMNS", "80")
    .env_remove("NO_COLOR")
    .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("script(1) runs");
    (out.status.code(), text(&out.stdout))
}

#[test]
fn on_a_terminal_the_line_refreshes_within_80_columns_and_the_keys_are_said_once() {
    let t = super::target();
    let file = two_names(&format!("http://{}", t.addr), "tty");
    let args = format!(
        "run {} -u 2 -t 2s --max-endpoints 1 -L info",
        file.to_str().unwrap()
    );
    let (code, screen) = on_a_terminal(&args, &[]);
    assert_eq!(code, Some(0), "{screen}");
    assert_eq!(
        screen.matches("keys: p pause/resume").count(),
        1,
        "{screen}"
    );
    // The progress line is redrawn in place (carriage return, clear line), never wider
    // than the terminal, and shows run time over the planned 2 s.
    let redraws: Vec<&str> = screen.split("\r\x1b[2K").skip(1).collect();
    assert!(redraws.len() >= 2, "{screen:?}");
    for r in &redraws {
        let line = r.lines().next().unwrap_or_default();
        assert!(line.chars().count() < 80, "wider than 80: {line:?}");
        assert!(line.starts_with('[') && line.contains("s/2s]"), "{line:?}");
    }
    // Colours on a terminal: the warning's level is coloured.
    assert!(screen.contains("\x1b[33m"), "{screen:?}");
    // The narrow table.
    assert!(
        screen
            .lines()
            .any(|l| l.starts_with("Endpoint ") && l.contains("Requests"))
            && !screen.contains("Mean"),
        "{screen}"
    );
    // NO_COLOR: no colour codes at all (the line clearing is not a colour).
    let (code, screen) = on_a_terminal(&args, &[("NO_COLOR", "1")]);
    assert_eq!(code, Some(0), "{screen}");
    assert!(screen.contains("WARN"), "{screen}");
    assert!(
        !screen.contains("\x1b[3") && !screen.contains("\x1b[2m"),
        "{screen:?}"
    );
    let _ = std::fs::remove_file(file);
}

#[test]
fn a_failed_setup_is_said_once_and_quiet_means_quiet() {
    let t = super::target();
    let path = std::env::temp_dir().join(format!("aiotest-setup-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        format!(
            "host = \"http://{}\"\n[[setup]]\npath = \"/fail\"\ncapture = {{ t = \"/t\" }}\n\
             [[users]]\nname = \"u\"\n[[users.tasks]]\npath = \"/a/{{{{setup.t}}}}\"\n",
            t.addr
        ),
    )
    .unwrap();
    let file = path.to_str().unwrap();
    let out = super::aiotest(&["run", file, "-t", "1s"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.matches("HTTP 500").count(), 1, "{stderr}");
    assert!(stderr.starts_with("aiotest: setup failed"), "{stderr}");
    // Setup's one request, and no user started after it failed.
    assert_eq!(t.served.load(std::sync::atomic::Ordering::Relaxed), 1);
    // -q: no logs, not even at warn or error level; the reason the run failed is still
    // said, once.
    let file2 = two_names(&format!("http://{}", t.addr), "quiet");
    let out = super::aiotest(&[
        "run",
        file2.to_str().unwrap(),
        "-t",
        "1s",
        "--max-endpoints",
        "1",
        "-q",
    ]);
    assert_eq!(text(&out.stderr), "", "-q logged");
    let out = super::aiotest(&["run", file, "-t", "1s", "-q"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(file2);
}
