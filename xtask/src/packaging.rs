//! Checks of what `cargo install --path cli --locked` gives a user: a command named
//! `aiotest`, a small release binary (symbols stripped, no debug info; line tables only
//! in the profiling profile), a licence stated in every package and shipped as a file,
//! and the README saying how to install it. (The install itself takes minutes; it was
//! measured by hand, see the README.)

use crate::util::root;

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The lines of `[name]` in a Cargo.toml, trimmed, up to the next table.
fn table(text: &str, name: &str) -> Vec<String> {
    let header = format!("[{name}]");
    text.lines()
        .map(str::trim)
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_release_build_is_small_and_profiling_keeps_line_tables() {
    let manifest = read("Cargo.toml");
    let release = table(&manifest, "profile.release");
    assert!(
        release.contains(&"strip = \"symbols\"".to_owned()),
        "{release:?}"
    );
    assert!(release.contains(&"debug = false".to_owned()), "{release:?}");
    let profiling = table(&manifest, "profile.profiling");
    assert!(
        profiling.contains(&"inherits = \"release\"".to_owned()),
        "{profiling:?}"
    );
    assert!(
        profiling.contains(&"debug = \"line-tables-only\"".to_owned()),
        "{profiling:?}"
    );
}

#[test]
fn every_package_states_the_licence_that_ships_with_it() {
    let manifest = read("Cargo.toml");
    let package = table(&manifest, "workspace.package");
    assert!(
        package.contains(&"license = \"MIT\"".to_owned()),
        "{package:?}"
    );
    assert!(read("LICENSE").starts_with("MIT License\n"));
    let members: Vec<String> = table(&manifest, "workspace")
        .into_iter()
        .filter_map(|l| {
            let l = l.trim_end_matches(',');
            l.strip_prefix('"')?.strip_suffix('"').map(str::to_owned)
        })
        .collect();
    assert!(members.len() >= 8, "{members:?}");
    for m in members {
        let p = table(&read(&format!("{m}/Cargo.toml")), "package");
        assert!(
            p.contains(&"license.workspace = true".to_owned()),
            "{m}/Cargo.toml states no licence"
        );
    }
}

#[test]
fn the_readme_says_how_to_install_the_aiotest_command() {
    let bin = table(&read("cli/Cargo.toml"), "[bin]");
    assert!(bin.contains(&"name = \"aiotest\"".to_owned()), "{bin:?}");
    assert!(read("README.md").contains("cargo install --path cli --locked"));
}
