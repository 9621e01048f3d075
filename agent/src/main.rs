use std::process::ExitCode;

fn main() -> ExitCode {
    netreach::cli::main()
}
