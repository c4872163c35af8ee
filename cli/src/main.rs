//! The `aiotest` binary: a thin shell over [`aiotest_cli::run_cli`].

fn main() {
    let code = aiotest_cli::run_cli(
        std::env::args().skip(1),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::exit(code);
}
