//! `cargo xtask screenshots`: the pictures of the dashboard and the HTML report in
//! `docs/`. Runs `examples/scenarios.toml` against the demo target with the control
//! server up, photographs the dashboard mid-run and the report once the run is over, in
//! headless Chromium (`--screenshot`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::dist_test::{Guard, free_port, post};
use crate::util::{cargo, root, run as step};

fn shoot(url: &str, out: &Path, height: u32) -> Result<(), String> {
    step(
        &format!("screenshot of {url}"),
        Command::new("chromium").args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            &format!("--window-size=1280,{height}"),
            // Long enough for the dashboard's first polls to draw.
            "--virtual-time-budget=3000",
            &format!("--screenshot={}", out.display()),
            url,
        ]),
    )
}

/// Makes `docs/dashboard.png` and `docs/report.png`.
pub(crate) fn run(_extra: &[String]) -> Result<(), String> {
    crate::install::ensure_chromium()?;
    step(
        "build the CLI",
        cargo().args(["build", "--quiet", "-p", "aiotest-cli"]),
    )?;
    let docs = root().join("docs");
    std::fs::create_dir_all(&docs).map_err(|e| format!("docs/: {e}"))?;
    let report = std::env::temp_dir().join(format!("aiotest-report-{}.html", std::process::id()));
    let _ = std::fs::remove_file(&report);
    let port = free_port()?;
    let bin: PathBuf = root().join("target/debug/aiotest");
    let mut run = Guard(
        Some(
            Command::new(bin)
                .current_dir(root())
                .args(["run", "examples/scenarios.toml", "--demo", "-q", "--linger"])
                .arg("--html")
                .arg(&report)
                .args(["--control-addr", &format!("127.0.0.1:{port}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("aiotest: {e}"))?,
        ),
        "aiotest",
    );
    // Mid-run: every scenario has started by 5 s.
    std::thread::sleep(Duration::from_secs(5));
    shoot(
        &format!("http://127.0.0.1:{port}/"),
        &docs.join("dashboard.png"),
        1500,
    )?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !report.exists() {
        if Instant::now() >= deadline {
            return Err("the run never wrote its report".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    post(port, "/api/quit")?;
    run.wait(Duration::from_secs(30))?;
    shoot(
        &format!("file://{}", report.display()),
        &docs.join("report.png"),
        2600,
    )?;
    let _ = std::fs::remove_file(&report);
    println!("screenshots: docs/dashboard.png, docs/report.png");
    Ok(())
}
