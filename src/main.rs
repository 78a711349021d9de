fn main() -> std::process::ExitCode {
    isv_lifecycle::cli::main()
}
