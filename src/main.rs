//! The `tessera` command: parses flags, runs the library, maps errors to exit codes.
//! Exit codes: 0 success, 1 `verify` or `sample` found a mismatch (or a picture could not be
//! drawn), 2 bad input, 3 a limit was reached, 130 interrupted.

mod cli;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = cli::args::Cli::parse();
    match cli::run(args) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("tessera: error: {err}");
            std::process::exit(err.exit_code());
        }
    }
}
