//! The `aiotest` binary: a thin shell over [`aiotest_cli::main_with_args`].

fn main() {
    std::process::exit(aiotest_cli::main_with_args(std::env::args_os()));
}
