//! The load harness (`examples/xds-load.rs`) at a small scale, asserting correctness, not
//! timings: every change reaches every client, and every client ends with exactly the
//! server's final resources (which are those of a fresh render of the final folder).

use std::time::Duration;

use bench::{LoadConfig, LoadReport, Mode};
use xds::stream::Protocol;

fn smoke(protocol: Protocol, mode: Mode, routes: usize, clients: usize) -> LoadReport {
    let cfg = LoadConfig {
        routes,
        clients,
        changes: 20,
        protocol,
        mode,
        seed: 7,
        initial_timeout: Duration::from_secs(120),
        change_timeout: Duration::from_secs(60),
        ..LoadConfig::default()
    };
    let r = bench::run(&cfg).expect("the load run completes");
    assert_eq!(
        r.final_check.clients_matching, clients,
        "every client ends with the server's resources: {:?}",
        r.final_check
    );
    assert!(r.final_check.server_matches_render, "{:?}", r.final_check);
    assert!(r.resources["CDS"] > routes, "{:?}", r.resources);
    assert!(r.initial_bytes_per_client > 0.0);
    assert!(r.bytes_per_change_per_client.mean > 0.0);
    r
}

#[test]
fn delta_incremental() {
    let r = smoke(Protocol::Delta, Mode::Incremental, 500, 50);
    // A one-Service change costs a few of its own resources, not the whole config.
    assert!(
        r.bytes_per_change_per_client.mean < r.initial_bytes_per_client / 20.0,
        "{r:?}"
    );
}

#[test]
fn sotw_incremental() {
    let r = smoke(Protocol::Sotw, Mode::Incremental, 500, 50);
    assert!(
        r.bytes_per_change_per_client.mean < r.initial_bytes_per_client / 20.0,
        "{r:?}"
    );
}

#[test]
fn delta_baseline() {
    // Smaller: the baseline resends everything to everyone on every change.
    let r = smoke(Protocol::Delta, Mode::Baseline, 200, 20);
    // Kourier's behaviour: every change resends everything.
    assert!(
        r.bytes_per_change_per_client.mean > r.initial_bytes_per_client / 2.0,
        "{r:?}"
    );
}

#[test]
fn sotw_baseline() {
    let r = smoke(Protocol::Sotw, Mode::Baseline, 200, 20);
    assert!(
        r.bytes_per_change_per_client.mean > r.initial_bytes_per_client / 2.0,
        "{r:?}"
    );
}

/// The cold-start benchmark (`examples/cold-start.rs`) on the real binary, small: each start
/// ends with the whole folder served (the render's names and versions), and the figures are
/// there.
#[test]
fn cold_start_of_the_binary_serves_the_whole_folder() {
    use bench::cold_start::{self, ColdStartConfig};
    let r = cold_start::run(&ColdStartConfig {
        server: env!("CARGO_BIN_EXE_knative-xds").into(),
        routes: 300,
        seed: 7,
        runs: 2,
        settle: Duration::from_millis(100),
        ..ColdStartConfig::default()
    })
    .expect("the server starts and becomes ready");
    assert_eq!(r.files, 301, "{r:?}");
    assert_eq!(r.matching_render, 2, "{r:?}");
    for run in &r.runs {
        assert!(run.resources["CDS"] > 300, "{run:?}");
        assert!(
            run.ready_ms > 0.0 && run.read_ms.is_some_and(|ms| ms > 0.0),
            "{run:?}"
        );
        assert!(
            run.peak_rss_mib >= run.rss_mib && run.rss_mib > 1.0,
            "{run:?}"
        );
    }
}

/// A start whose server cannot bind its ports (taken between the pick and the bind) is
/// tried again on others; any other failure is not.
#[test]
fn cold_start_tries_again_when_the_ports_were_taken() {
    use bench::cold_start::{self, ColdStartConfig};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let wrapper = |name: &str, failure: &str| {
        let script = dir.path().join(name);
        let calls = dir.path().join(format!("{name}.calls"));
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho >> '{calls}'\nif [ $(wc -l < '{calls}') -eq 1 ]; then echo '{failure}' >&2; exit 1; fi\nexec '{server}' \"$@\"\n",
                calls = calls.display(),
                server = env!("CARGO_BIN_EXE_knative-xds"),
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        (script, calls)
    };
    let config = |server| ColdStartConfig {
        server,
        routes: 30,
        seed: 3,
        runs: 2,
        settle: Duration::from_millis(10),
        ..ColdStartConfig::default()
    };
    let calls = |path: &std::path::Path| std::fs::read_to_string(path).unwrap().lines().count();

    let (taken, taken_calls) = wrapper(
        "taken.sh",
        "error: binding the xDS address 127.0.0.1:9: Address already in use (os error 98)",
    );
    let r = cold_start::run(&config(taken)).expect("the second try starts");
    assert_eq!((r.runs.len(), r.matching_render), (2, 2), "{r:?}");
    assert_eq!(calls(&taken_calls), 3, "one failed start, then two runs");

    let (broken, broken_calls) = wrapper("broken.sh", "error: reading the manifests: denied");
    let e = cold_start::run(&config(broken)).unwrap_err();
    assert!(format!("{e:#}").contains("denied"), "{e:#}");
    assert_eq!(calls(&broken_calls), 1, "not tried again");
}
