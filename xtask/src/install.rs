//! Making sure the programs the tests start exist: `redis-server` for the private Redis
//! servers, `chromium` and `chromedriver` for the browser tests of the report and the
//! dashboard. Missing ones are installed with apt-get when running as root (Debian's
//! packages); otherwise the error names the command to run.

use std::process::Command;

use crate::util::{have, run};

/// Finds `redis-server`, or installs it.
pub(crate) fn ensure_redis_server() -> Result<(), String> {
    ensure(&["redis-server"], &["redis-server"])
}

/// Finds `chromium` and `chromedriver`, or installs them.
pub(crate) fn ensure_chromium() -> Result<(), String> {
    ensure(
        &["chromium", "chromedriver"],
        &["chromium", "chromium-driver"],
    )
}

/// Finds `tmux` (the terminal the screens in `docs/terminal/` are captured in), or
/// installs it.
pub(crate) fn ensure_tmux() -> Result<(), String> {
    ensure(&["tmux"], &["tmux"])
}

/// Finds every program of `binaries`, or installs `packages` and checks again.
fn ensure(binaries: &[&str], packages: &[&str]) -> Result<(), String> {
    let missing: Vec<&str> = binaries.iter().copied().filter(|b| !have(b)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let install = format!(
        "apt-get update && apt-get install -y {}",
        packages.join(" ")
    );
    if !is_root() || !have("apt-get") {
        return Err(format!(
            "{} missing and cannot be installed from here; run: sudo sh -c '{install}'",
            missing.join(" and ")
        ));
    }
    eprintln!(
        "xtask: {} missing; installing {} with apt-get",
        missing.join(" and "),
        packages.join(" ")
    );
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    run("apt-get update", &mut apt(&["update", "-qq"]))?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend_from_slice(packages);
    run(
        &format!("apt-get install {}", packages.join(" ")),
        &mut apt(&args),
    )?;
    let still: Vec<&str> = binaries.iter().copied().filter(|b| !have(b)).collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} still missing after installing; run: {install}",
            still.join(" and ")
        ))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.trim_ascii() == b"0")
}
