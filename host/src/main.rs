//! The `flinkscale` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    flinkscale::cli::main()
}
