//! The `knative-xds` command: see `knative_xds::cli`.

fn main() -> std::process::ExitCode {
    knative_xds::cli::main()
}
