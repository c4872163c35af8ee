//! Making sure a `redis-server` binary exists for the tests that start private ones.

use std::process::Command;

use crate::util::{have, run};

/// The exact commands that install redis-server on this kind of machine (Debian).
const INSTALL: &str = "apt-get update && apt-get install -y redis-server";

/// Finds `redis-server`, or installs it with apt-get when running as root, or fails with
/// the command to run.
pub(crate) fn ensure_redis_server() -> Result<(), String> {
    if have("redis-server") {
        return Ok(());
    }
    if !is_root() || !have("apt-get") {
        return Err(format!(
            "redis-server is missing and cannot be installed from here; run: sudo sh -c '{INSTALL}'"
        ));
    }
    eprintln!("xtask: redis-server is missing; installing it with apt-get");
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    run("apt-get update", &mut apt(&["update", "-qq"]))?;
    run(
        "apt-get install redis-server",
        &mut apt(&[
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "redis-server",
        ]),
    )?;
    if have("redis-server") {
        Ok(())
    } else {
        Err(format!(
            "redis-server is still missing after installing it; run: {INSTALL}"
        ))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.trim_ascii() == b"0")
}
