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
    let line_no: usize = (malformed.strip_prefix("error: ").unwrap_or(malformed))
        .split(':')
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no line number: {malformed}"));
    assert!((9..=10).contains(&line_no), "{malformed}");
    assert!(
        !out.contains("default/good"),
        "the valid Route is not reported:\n{out}"
    );
    let errors = out.lines().filter(|l| l.starts_with("error: ")).count();
    assert_eq!(errors, 4, "exactly the four errors:\n{out}");
    // No controller runs on a folder: a Revision named in traffic is implied, with a warning
    // (and no endpoints, another).
    let warnings: Vec<&str> = out.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 2, "{out}");
    assert!(
        warnings.iter().all(|w| w.contains("missing-revision.yaml")
            && w.contains("Route default/missingrev")
            && w.contains("\"does-not-exist\"")),
        "{out}"
    );
    assert!(out.lines().last().unwrap().starts_with("failed: "), "{out}");
}

/// What kn's offline mode writes (`kn service create ... --target`, YAML and JSON, no
/// Revision objects) validates: the implied Revisions are warnings, which `--strict` fails
/// on; `-o json` gives the same findings to tools.
#[test]
fn kn_offline_folder_validates_with_warnings_and_strict_fails() {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kn-offline");
    // Without the EndpointSlices: exactly kn's files.
    for f in [
        "test-ns/ksvc/gitopstest.yaml",
        "test-ns/ksvc/shop.json",
        "config.yaml",
    ] {
        let to = dir.path().join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(src.join(f), to).unwrap();
    }
    std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
    let folder = dir.path().to_str().unwrap();
    let (code, out, err) = knative_xds(&["validate", "--manifests", folder]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("error: "), "{out}");
    for rev in ["gitopstest-00001", "shop-00001", "shop-00002", "shop-00003"] {
        assert!(
            out.lines().any(|l| l.starts_with("warning: ")
                && l.contains(&format!("Revision \"{rev}\" is implied"))),
            "{rev}:\n{out}"
        );
    }
    assert_eq!(
        out.lines().filter(|l| l.starts_with("skipped")).count(),
        1,
        "{out}"
    );
    assert!(out.contains("notes.txt"), "{out}");
    assert!(
        out.lines().last().unwrap().starts_with("ok: 2 routes"),
        "{out}"
    );

    let (code, _, _) = knative_xds(&["validate", "--manifests", folder, "--strict"]);
    assert_eq!(code, 1, "--strict fails on warnings");

    let (code, out, _) = knative_xds(&["validate", "--manifests", folder, "-o", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["errors"], serde_json::json!([]));
    let warnings = v["warnings"].as_array().unwrap();
    // Four implied Revisions, four without endpoints.
    assert_eq!(warnings.len(), 8, "{out}");
    let shop = warnings
        .iter()
        .find(|w| {
            w["message"]
                .as_str()
                .unwrap()
                .contains("\"shop-00003\" is implied")
        })
        .unwrap();
    assert!(shop["file"]
        .as_str()
        .unwrap()
        .ends_with("test-ns/ksvc/shop.json"));
    assert_eq!(shop["object"], "Service.serving.knative.dev test-ns/shop");
    assert!(v["skipped"][0].as_str().unwrap().ends_with("notes.txt"));
}

/// `render | head` ends quietly: a closed pipe is not an error (no panic, exit 0).
#[test]
fn render_into_a_closed_pipe_exits_0() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_knative-xds"))
        .args(["render", "--manifests", "examples/traffic-example"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before the first write
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `-o yaml` is the same document as the JSON.
#[test]
fn render_yaml_is_the_json_as_yaml() {
    let (code, json, _) = knative_xds(&["render", "--manifests", "examples/traffic-example"]);
    assert_eq!(code, 0);
    let (code, yaml, err) = knative_xds(&[
        "render",
        "--manifests",
        "examples/traffic-example",
        "-o",
        "yaml",
    ]);
    assert_eq!(code, 0, "{err}");
    let from_yaml: serde_json::Value = serde_saphyr::from_str(&yaml).expect("YAML");
    let from_json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(from_yaml, from_json);
    assert!(from_json["listeners"]
        .as_array()
        .is_some_and(|l| !l.is_empty()));
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
        "kn-offline",
    ] {
        let (code, out, err) =
            knative_xds(&["validate", "--manifests", dir.join(e).to_str().unwrap()]);
        assert_eq!(code, 0, "{e}: {out}{err}");
        assert!(out.lines().last().unwrap().starts_with("ok:"), "{e}: {out}");
        assert!(!out.contains("error: "), "{e}: {out}");
        // Complete folders; kn's has no Revision objects, so they are implied.
        if e != "kn-offline" {
            assert!(!out.contains("warning: "), "{e}: {out}");
        }
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
    // The valid Route, and the one whose Revision is implied (no controller runs here).
    assert!(
        hosts
            .iter()
            .all(|h| h.starts_with("good.") || h.starts_with("missingrev.")),
        "only the valid Routes: {hosts:?}"
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
