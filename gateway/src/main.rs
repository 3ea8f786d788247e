//! The `sluice` binary; all logic lives in the library.

fn main() {
    std::process::exit(sluice::cli::main());
}
