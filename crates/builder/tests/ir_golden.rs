//! Golden tests from the intermediate model to the Envoy resources `serve` sends, one case a
//! file as Envoy Gateway keeps them: `testdata/in/<case>.yaml` is the IR (`ingresses`, and
//! optionally the route `layout` and `default_tls_secret`), then, after `---`, the Kubernetes Services and
//! EndpointSlices its backends use; `testdata/out/<case>.json` is what `render` prints for it.
//! A rule of the Envoy translation is tested here without any Knative object.
//! `UPDATE_GOLDEN=1 cargo test -p knative-xds-builder --test ir_golden` rewrites the outputs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use builder::IncrementalBuilder;
use model::Store;
use translate::envoy::{ListenerSettings, RouteLayout};
use translate::Ingress;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    ingresses: Vec<Ingress>,
    /// `scoped` (the default) or `per-listener`.
    #[serde(default)]
    layout: Option<String>,
    /// `--default-tls-secret`.
    #[serde(default)]
    default_tls_secret: Option<model::ObjectKey>,
}

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn render(input: &Path) -> String {
    let text = std::fs::read_to_string(input).unwrap();
    let (ir, objects) = text.split_once("\n---\n").unwrap_or((&text, ""));
    let case: Case = serde_saphyr::from_str(ir)
        .unwrap_or_else(|e| panic!("{}: the IR document: {e}", input.display()));
    let mut store = Store::new();
    for o in model::parse::parse_file(input, objects).unwrap() {
        store.apply(o);
    }
    let mut settings = ListenerSettings {
        layout: match case.layout.as_deref() {
            None | Some("scoped") => RouteLayout::Scoped,
            Some("per-listener") => RouteLayout::PerListener,
            Some(other) => panic!("{}: layout {other:?}", input.display()),
        },
        ..ListenerSettings::default()
    };
    settings.tls.default_secret = case.default_tls_secret;
    let ingresses: Vec<Arc<Ingress>> = case.ingresses.into_iter().map(Arc::new).collect();
    let snapshot = IncrementalBuilder::new().build(&ingresses, &store, &settings, true, None);
    let mut out = serde_json::to_string_pretty(&xds::json::snapshot_json(&snapshot)).unwrap();
    out.push('\n');
    out
}

#[test]
fn ir_to_envoy_resources() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(testdata().join("in"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 5, "{cases:?}");
    let mut differ = Vec::new();
    for input in &cases {
        let name = input.file_stem().unwrap().to_string_lossy();
        let expected = testdata().join("out").join(format!("{name}.json"));
        let got = render(input);
        if update {
            std::fs::write(&expected, &got).unwrap();
        } else if std::fs::read_to_string(&expected).ok().as_deref() != Some(&*got) {
            differ.push(format!("{name}: differs from {}", expected.display()));
        }
    }
    assert!(
        differ.is_empty(),
        "{differ:#?} (UPDATE_GOLDEN=1 rewrites them)"
    );
}

/// Reading the IR back is what these cases rely on: it gives what was written.
#[test]
fn ir_reads_back_as_written() {
    let input = testdata().join("in/split.yaml");
    let text = std::fs::read_to_string(&input).unwrap();
    let (ir, _) = text.split_once("\n---\n").unwrap();
    let case: Case = serde_saphyr::from_str(ir).unwrap();
    let again: Vec<Ingress> =
        serde_saphyr::from_str(&serde_saphyr::to_string(&case.ingresses).unwrap()).unwrap();
    assert_eq!(again, case.ingresses);
    let split = &case.ingresses[0].rules[0].paths[0].splits;
    assert_eq!(
        split.iter().map(|s| s.percent).collect::<Vec<_>>(),
        [80, 20]
    );
}
