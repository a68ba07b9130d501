//! The `validate` and `render` commands on bad input.

use std::path::Path;
use std::process::Command;

fn knative_xds(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_knative-xds"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run knative-xds");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_names_every_bad_object_file_field_and_reason() {
    let (code, out, _) = knative_xds(&["validate", "--manifests", "tests/fixtures/bad-input"]);
    assert_eq!(code, 1, "validate exits 1 on problems:\n{out}");
    let expect = [
        (
            "sum-90.yaml",
            "Route default/split90",
            "spec.traffic",
            "Traffic targets sum to 90, want 100",
        ),
        (
            "duplicate-tag.yaml",
            "Route default/duptag",
            "spec.traffic",
            "Multiple definitions for \"same\"",
        ),
        (
            "missing-revision.yaml",
            "Route default/missingrev",
            "spec.traffic[0].revisionName",
            "Revision \"does-not-exist\" referenced in traffic not found",
        ),
        (
            "latest-conflict.yaml",
            "Route default/latestconflict",
            "spec.traffic[0].latestRevision",
            "may not set revisionName \"good-00001\" when latestRevision is true",
        ),
    ];
    for (file, object, field, reason) in expect {
        let line = out
            .lines()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("no line for {file}:\n{out}"));
        assert!(
            line.contains(object) && line.contains(field) && line.contains(reason),
            "{file}: want {object} / {field} / {reason}, got: {line}"
        );
    }
    let malformed = out
        .lines()
        .find(|l| l.contains("malformed.yaml:"))
        .unwrap_or_else(|| panic!("malformed file not reported:\n{out}"));
    let line_no: usize = malformed
        .split(':')
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no line number: {malformed}"));
    assert!((9..=10).contains(&line_no), "{malformed}");
    assert!(
        !out.contains("default/good"),
        "the valid Route is not reported:\n{out}"
    );
    assert_eq!(out.lines().count(), 5, "exactly the five problems:\n{out}");
}

#[test]
fn validate_passes_every_example() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for e in [
        "traffic-example",
        "helloworld-go",
        "blue-green-demo",
        "cluster-local",
        "domain-mapping",
    ] {
        let (code, out, err) =
            knative_xds(&["validate", "--manifests", dir.join(e).to_str().unwrap()]);
        assert_eq!(code, 0, "{e}: {out}{err}");
        assert!(out.starts_with("ok:"), "{e}: {out}");
    }
}

#[test]
fn render_serves_the_valid_objects_and_warns_about_the_rest() {
    let (code, out, err) = knative_xds(&["render", "--manifests", "tests/fixtures/bad-input"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let hosts: Vec<String> = v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rc| {
            rc["resource"]["virtualHosts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|vh| vh["domains"].as_array().cloned().unwrap_or_default())
        .map(|d| d.as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        hosts.contains(&"good.default.example.com".to_string()),
        "{hosts:?}"
    );
    assert!(
        hosts.iter().all(|h| h.starts_with("good.")),
        "only the valid Route: {hosts:?}"
    );
    assert!(
        err.contains("split90") && err.contains("malformed.yaml"),
        "{err}"
    );
}

#[test]
fn missing_folder_is_a_clear_error() {
    let (code, _, err) = knative_xds(&["validate", "--manifests", "no/such/folder"]);
    assert_eq!(code, 2);
    assert!(err.contains("no/such/folder"), "{err}");
}
