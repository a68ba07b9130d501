//! The `knative-xds` command: flags and subcommands in [`cli`], the status/explain client in
//! [`client`]; everything else is in the workspace's crates (see ARCHITECTURE.md).

/// `println!` that returns the write's error instead of panicking, so a closed pipe
/// (`knative-xds render | head`) ends the command quietly (see `cli::finish`).
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($t)*)
    }};
}

/// `print!`, as [`outln`].
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($t)*)
    }};
}

mod bootstrap;
mod cli;
mod client;

// mimalloc: translation and encoding allocate many small objects; it is faster than glibc's
// malloc for that and returns freed memory to the system more readily.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tune_allocator();
    cli::main()
}

/// mimalloc's defaults suit short programs; a control plane runs for months and its resident
/// size is what operators watch. Freed memory goes back to the system after 10 ms instead of
/// 1 s: a cold start frees much scratch memory (translation's working sets, grown tables)
/// while later stages still allocate, and the peak that leaves resident is what the pod's
/// memory limit must cover. An environment variable (`MIMALLOC_PURGE_DELAY`) still wins:
/// mimalloc read the environment at start-up, and a value set there is not a default.
#[allow(unsafe_code)]
fn tune_allocator() {
    // `mi_option_purge_delay` in mimalloc v3's `mi_option_e`, whose order is kept (retired
    // options keep their place).
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets one option's value in mimalloc's static table; any thread may read it.
    unsafe { libmimalloc_sys::mi_option_set_default(PURGE_DELAY, 10) };
}
