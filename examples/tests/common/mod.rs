//! What the example tests share: running an example binary against the embedded demo
//! target and reading its JSON export.

use std::process::Command;

/// Runs `bin` with `run --demo -u 2 -t 1s -q` and `thresholds`; its exit code and export.
pub(crate) fn run_example(
    bin: &str,
    name: &str,
    thresholds: &[&str],
) -> (Option<i32>, serde_json::Value) {
    let export = std::env::temp_dir().join(format!(
        "aiotest-example-{}-{name}.json",
        std::process::id()
    ));
    let mut cmd = Command::new(bin);
    cmd.args([
        "run",
        "--demo",
        "-u",
        "2",
        "-t",
        "1s",
        "-q",
        "--summary-export",
    ])
    .arg(&export);
    for t in thresholds {
        cmd.args(["--threshold", t]);
    }
    let out = cmd.output().expect("the example runs");
    let json = std::fs::read_to_string(&export)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(serde_json::Value::Null);
    let _ = std::fs::remove_file(&export);
    (out.status.code(), json)
}
