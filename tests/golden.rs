//! `render` output for every example matches the checked-in JSON (run with
//! `UPDATE_GOLDEN=1` to rewrite after an intended change, then review the diff).

use std::path::Path;
use std::process::Command;

const EXAMPLES: [&str; 5] = [
    "traffic-example",
    "helloworld-go",
    "blue-green-demo",
    "cluster-local",
    "domain-mapping",
];

fn render(example: &str) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_knative-xds"))
        .arg("render")
        .arg("--manifests")
        .arg(repo.join("examples").join(example))
        .output()
        .expect("run knative-xds render");
    assert!(
        out.status.success(),
        "render {example}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "render {example} warned: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn render_matches_golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut mismatches = Vec::new();
    for example in EXAMPLES {
        let got = render(example);
        let path = dir.join(format!("{example}.json"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()));
        if got != want {
            mismatches.push(example);
        }
    }
    assert!(
        mismatches.is_empty(),
        "render output differs from tests/golden for {mismatches:?}; run with UPDATE_GOLDEN=1 and review `git diff tests/golden`"
    );
}

#[test]
fn render_is_deterministic() {
    for example in EXAMPLES {
        assert_eq!(render(example), render(example), "{example}");
    }
}
