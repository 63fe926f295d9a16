//! `herald-conformance`: see the crate docs and `--help`.

fn main() -> std::process::ExitCode {
    herald_conformance::cli::main()
}
