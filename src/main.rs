//! The `knative-xds` command: see `knative_xds::cli`.

// mimalloc: translation and encoding allocate many small objects; it is faster than glibc's
// malloc for that and returns freed memory to the system more readily.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    knative_xds::cli::main()
}
