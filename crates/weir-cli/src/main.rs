//! The `weir` binary. Its code is the library (`src/lib.rs`): a library starts compiling
//! from the metadata of the crates it uses, beside their code generation, where a binary
//! waits for all of it (docs/ARCHITECTURE.md § Build time).

fn main() -> std::process::ExitCode {
    weir_cli::run()
}
