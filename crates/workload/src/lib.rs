//! Deterministic, realistic Knative workloads for benchmarks and load tests.
//!
//! [`generate`] turns a number of Knative Services and a seed into ordinary Kubernetes YAML
//! files, the way a cluster would hold them: each Service with 1–3 Revisions, each Revision
//! with its public core Service (port 80 `http` → 8012) and an EndpointSlice of 1–5 ready
//! addresses; traffic splits summing to 100 (tags on some, `latestRevision` on some); about
//! 10 % cluster-local; about 5 % with a DomainMapping and its ClusterDomainClaim; Knative's
//! three ConfigMaps in `knative-serving`. Services are spread over [`NAMESPACES`] namespaces.
//!
//! Each Knative Service and everything that belongs to it lives in one file,
//! `ns-<k>/<name>.yaml`, so one change ([`Workload::change`]) rewrites one small file.
//! Everything is a pure function of `(routes, seed)`: no clock, no randomness from outside
//! (a self-contained splitmix64 generator).

use std::fmt::Write as _;
use std::path::Path;

/// Namespaces the Services are spread over (`ns-0` … `ns-19`).
pub const NAMESPACES: usize = 20;

/// The file holding Knative's ConfigMaps.
pub const CONFIG_FILE: &str = "knative-serving/config.yaml";

/// splitmix64: tiny, fast, and good enough to pick shapes deterministically.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `percent` %.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One traffic target of a Service's `spec.traffic`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// Index into the Service's revisions; `None` means `latestRevision: true`.
    revision: Option<usize>,
    percent: u32,
    tag: Option<String>,
}

/// One generated Knative Service and what belongs to it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServiceSpec {
    namespace: String,
    name: String,
    revisions: Vec<RevisionSpec>,
    /// `None`: no `spec.traffic` (100 % to the latest revision).
    traffic: Option<Vec<Target>>,
    cluster_local: bool,
    /// A DomainMapping (and its ClusterDomainClaim) for this host.
    domain_mapping: Option<String>,
    /// Seconds after the epoch of the workload, for `creationTimestamp`.
    created: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RevisionSpec {
    name: String,
    image_tag: String,
    /// Ready endpoint addresses of its EndpointSlice.
    addresses: Vec<String>,
    slice_suffix: String,
}

/// A generated workload: the files, relative to the folder they are written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// `(relative path, YAML text)`, sorted by path.
    pub files: Vec<(String, String)>,
    services: Vec<ServiceSpec>,
    /// Indices of Services whose split can be shifted (two or more pinned targets), in the
    /// order changes visit them.
    changeable: Vec<usize>,
}

const WORDS: &[&str] = &[
    "api",
    "web",
    "checkout",
    "cart",
    "search",
    "auth",
    "billing",
    "orders",
    "catalog",
    "users",
    "payments",
    "inventory",
    "shipping",
    "reviews",
    "ads",
    "media",
    "notify",
    "report",
    "events",
    "gateway",
];

/// Splits for two and three pinned revisions (realistic canary / blue-green shapes).
const SPLITS_2: &[[u32; 2]] = &[[50, 50], [80, 20], [90, 10], [95, 5], [70, 30], [99, 1]];
const SPLITS_3: &[[u32; 3]] = &[[80, 10, 10], [50, 25, 25], [60, 30, 10], [34, 33, 33]];

/// Generates `routes` Knative Services (each implying one Route) from `seed`.
pub fn generate(routes: usize, seed: u64) -> Workload {
    let mut rng = SplitMix64::new(seed);
    let mut next_address: u64 = 0;
    let mut services = Vec::with_capacity(routes);
    for i in 0..routes {
        let namespace = format!("ns-{}", i % NAMESPACES);
        let word = WORDS[rng.below(WORDS.len() as u64) as usize];
        let name = format!("{word}-{i}");
        // Service 0 always has a two-way split so that there is always something to change.
        let revision_count = if i == 0 { 2 } else { 1 + rng.below(3) as usize };
        let revisions: Vec<RevisionSpec> = (1..=revision_count)
            .map(|g| {
                let n = 1 + rng.below(5);
                let addresses = (0..n)
                    .map(|_| {
                        let a = address(next_address);
                        next_address += 1;
                        a
                    })
                    .collect();
                RevisionSpec {
                    name: format!("{name}-{g:05}"),
                    image_tag: format!("v{g}.{}", rng.below(10)),
                    addresses,
                    slice_suffix: slice_suffix(&mut rng),
                }
            })
            .collect();
        let traffic = traffic(&mut rng, revision_count);
        let cluster_local = i != 0 && rng.chance(10);
        let domain_mapping =
            (!cluster_local && rng.chance(5)).then(|| format!("{name}.{namespace}.example.org"));
        services.push(ServiceSpec {
            namespace,
            name,
            revisions,
            traffic,
            cluster_local,
            domain_mapping,
            created: i as u64,
        });
    }
    let mut changeable: Vec<usize> = services
        .iter()
        .enumerate()
        .filter(|(_, s)| pinned(s).len() >= 2)
        .map(|(i, _)| i)
        .collect();
    // Visit them in a seed-dependent order (Fisher–Yates), not namespace by namespace.
    for k in (1..changeable.len()).rev() {
        let j = rng.below(k as u64 + 1) as usize;
        changeable.swap(k, j);
    }
    let mut files = Vec::with_capacity(routes + 1);
    files.push((CONFIG_FILE.to_string(), config_maps()));
    for s in &services {
        files.push((service_path(s), service_file(s, s.traffic.as_deref())));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Workload {
        files,
        services,
        changeable,
    }
}

impl Workload {
    /// Writes every file below `dir` (creating folders).
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        for (path, text) in &self.files {
            let p = dir.join(path);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(p, text)?;
        }
        Ok(())
    }

    /// Number of Services with a DomainMapping.
    pub fn domain_mappings(&self) -> usize {
        self.services
            .iter()
            .filter(|s| s.domain_mapping.is_some())
            .count()
    }

    /// HTTPS at scale: `count` DomainMappings (`tls-<i>.example.org`, onto the first external
    /// Services), each naming its own `kubernetes.io/tls` Secret `tls-<i>` that holds
    /// `cert_pem`/`key_pem` (the caller makes them: this crate has no crypto), with their
    /// ClusterDomainClaims, as one multi-document YAML file.
    pub fn tls_manifests(&self, count: usize, cert_pem: &str, key_pem: &str) -> String {
        use std::fmt::Write;
        let (crt, key) = (block(cert_pem), block(key_pem));
        let mut out = String::new();
        let external = self.services.iter().filter(|s| !s.cluster_local);
        for (i, s) in external.take(count).enumerate() {
            let (ns, name) = (&s.namespace, &s.name);
            let _ = write!(
                out,
                "---
apiVersion: serving.knative.dev/v1beta1
kind: DomainMapping
metadata:
  name: tls-{i}.example.org
  namespace: {ns}
spec:
  ref:
    apiVersion: serving.knative.dev/v1
    kind: Service
    name: {name}
  tls:
    secretName: tls-{i}
---
apiVersion: networking.internal.knative.dev/v1alpha1
kind: ClusterDomainClaim
metadata:
  name: tls-{i}.example.org
spec:
  namespace: {ns}
---
{}",
                tls_secret(ns, &format!("tls-{i}"), &crt, &key)
            );
        }
        out
    }

    /// The Secret of [`Workload::tls_manifests`] number `i` with other PEM (a rotation), as
    /// `(namespace, YAML)`.
    pub fn tls_secret(&self, i: usize, cert_pem: &str, key_pem: &str) -> Option<(String, String)> {
        let s = self.services.iter().filter(|s| !s.cluster_local).nth(i)?;
        Some((
            s.namespace.clone(),
            tls_secret(
                &s.namespace,
                &format!("tls-{i}"),
                &block(cert_pem),
                &block(key_pem),
            ),
        ))
    }

    /// Number of Knative Services (each implies one Route).
    pub fn routes(&self) -> usize {
        self.services.len()
    }

    /// Change number `i`: one Service's file with its traffic split shifted, as
    /// `(relative path, new YAML)`. Deterministic; changes visit the Services that have two or
    /// more pinned revisions in a seed-dependent order, and a Service visited again (after
    /// all others) gets a different shift, so two consecutive versions of a file always
    /// differ, and every version differs from the original.
    pub fn change(&self, i: usize) -> (String, String) {
        let (s, traffic) = self.changed(i);
        (service_path(s), service_file(s, Some(&traffic)))
    }

    /// `(namespace, name)` of the Knative Service change `i` modifies.
    pub fn changed_service(&self, i: usize) -> (String, String) {
        let (s, _) = self.changed(i);
        (s.namespace.clone(), s.name.clone())
    }

    fn changed(&self, i: usize) -> (&ServiceSpec, Vec<Target>) {
        let n = self.changeable.len().max(1);
        let s = &self.services[self.changeable.get(i % n).copied().unwrap_or(0)];
        let round = i / n;
        let mut traffic = s.traffic.clone().unwrap_or_default();
        let idx: Vec<usize> = traffic
            .iter()
            .enumerate()
            .filter(|(_, t)| t.revision.is_some())
            .map(|(k, _)| k)
            .collect();
        if idx.len() >= 2 {
            // Move d points from the largest pinned target (≥ 34 %) to the next one; d differs
            // between consecutive rounds (1..=33), so consecutive versions differ.
            let d = 1 + (round % 33) as u32;
            let largest = *idx
                .iter()
                .max_by_key(|&&k| (traffic[k].percent, std::cmp::Reverse(k)))
                .unwrap_or(&idx[0]);
            let pos = idx.iter().position(|&k| k == largest).unwrap_or(0);
            let other = idx[(pos + 1) % idx.len()];
            traffic[largest].percent -= d;
            traffic[other].percent += d;
        }
        (s, traffic)
    }
}

fn pinned(s: &ServiceSpec) -> Vec<&Target> {
    s.traffic
        .iter()
        .flatten()
        .filter(|t| t.revision.is_some())
        .collect()
}

/// The `n`-th unique endpoint address, 10.x.y.z with z in 1..=254.
fn address(n: u64) -> String {
    let z = 1 + n % 254;
    let rest = n / 254;
    format!("10.{}.{}.{z}", (rest / 256) % 256, rest % 256)
}

fn slice_suffix(rng: &mut SplitMix64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize] as char)
        .collect()
}

fn traffic(rng: &mut SplitMix64, revisions: usize) -> Option<Vec<Target>> {
    let tagged = rng.chance(40);
    let tag = |k: usize| tagged.then(|| format!("v{}", k + 1));
    let latest_tag = rng.chance(15);
    let mut out = match revisions {
        1 => match rng.below(3) {
            0 => return None,
            1 => vec![Target {
                revision: None,
                percent: 100,
                tag: None,
            }],
            _ => vec![Target {
                revision: Some(0),
                percent: 100,
                tag: tag(0),
            }],
        },
        2 => {
            let split = SPLITS_2[rng.below(SPLITS_2.len() as u64) as usize];
            // The newer revision usually gets the smaller share (a canary).
            vec![
                Target {
                    revision: Some(0),
                    percent: split[0],
                    tag: tag(0),
                },
                Target {
                    revision: Some(1),
                    percent: split[1],
                    tag: tag(1),
                },
            ]
        }
        _ => {
            let split = SPLITS_3[rng.below(SPLITS_3.len() as u64) as usize];
            (0..3)
                .map(|k| Target {
                    revision: Some(k),
                    percent: split[k],
                    tag: tag(k),
                })
                .collect()
        }
    };
    if latest_tag {
        out.push(Target {
            revision: None,
            percent: 0,
            tag: Some("latest".to_string()),
        });
    }
    Some(out)
}

fn service_path(s: &ServiceSpec) -> String {
    format!("{}/{}.yaml", s.namespace, s.name)
}

fn timestamp(seconds: u64) -> String {
    // 2026-01-01T00:00:00Z plus `seconds` (within a day: hh:mm:ss).
    let s = seconds % 86_400;
    format!(
        "2026-01-01T{:02}:{:02}:{:02}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// Knative's three ConfigMaps (config-domain with `example.com`).
fn config_maps() -> String {
    "# Knative's ConfigMaps (generated workload).
apiVersion: v1
kind: ConfigMap
metadata:
  name: config-domain
  namespace: knative-serving
data:
  example.com: \"\"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: config-network
  namespace: knative-serving
data:
  domain-template: \"{{.Name}}.{{.Namespace}}.{{.Domain}}\"
  tag-template: \"{{.Tag}}-{{.Name}}\"
  http-protocol: Enabled
  autocreate-cluster-domain-claims: \"false\"
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: config-features
  namespace: knative-serving
data:
  tag-header-based-routing: Enabled
"
    .to_string()
}

/// PEM indented as a block scalar's lines under a key of a top-level field.
fn block(pem: &str) -> String {
    pem.trim_end()
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect()
}

/// A `kubernetes.io/tls` Secret with PEM already indented for a block scalar.
fn tls_secret(ns: &str, name: &str, crt: &str, key: &str) -> String {
    format!(
        "apiVersion: v1
kind: Secret
type: kubernetes.io/tls
metadata:
  name: {name}
  namespace: {ns}
stringData:
  tls.crt: |
{crt}  tls.key: |
{key}"
    )
}

/// One Knative Service with its Revisions, their public Services and EndpointSlices, and
/// its DomainMapping if any, as one multi-document YAML file.
fn service_file(s: &ServiceSpec, traffic: Option<&[Target]>) -> String {
    let (ns, name) = (&s.namespace, &s.name);
    let created = timestamp(s.created);
    let mut out = String::with_capacity(2048 + 1536 * s.revisions.len());
    let latest = s
        .revisions
        .last()
        .map(|r| r.image_tag.as_str())
        .unwrap_or("v1");
    let _ = write!(
        out,
        "# Knative Service {ns}/{name} (generated workload)
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: {name}
  namespace: {ns}
  creationTimestamp: \"{created}\"
  generation: {generation}
",
        generation = s.revisions.len()
    );
    if s.cluster_local {
        out.push_str("  labels:\n    networking.knative.dev/visibility: cluster-local\n");
    }
    let _ = write!(
        out,
        "spec:
  template:
    spec:
      containers:
        - image: registry.example.com/{ns}/{name}:{latest}
          ports:
            - containerPort: 8080
"
    );
    if let Some(traffic) = traffic {
        out.push_str("  traffic:\n");
        for t in traffic {
            let mut first = true;
            let mut line = |out: &mut String, text: String| {
                out.push_str(if first { "    - " } else { "      " });
                out.push_str(&text);
                out.push('\n');
                first = false;
            };
            if let Some(tag) = &t.tag {
                line(&mut out, format!("tag: {tag}"));
            }
            match t.revision {
                Some(k) => line(&mut out, format!("revisionName: {}", s.revisions[k].name)),
                None => line(&mut out, "latestRevision: true".to_string()),
            }
            line(&mut out, format!("percent: {}", t.percent));
        }
    }
    for (g, r) in s.revisions.iter().enumerate() {
        let g = g + 1;
        let rev = &r.name;
        let _ = write!(
            out,
            "---
apiVersion: serving.knative.dev/v1
kind: Revision
metadata:
  name: {rev}
  namespace: {ns}
  generation: 1
  creationTimestamp: \"{created}\"
  labels:
    serving.knative.dev/configuration: {name}
    serving.knative.dev/configurationGeneration: \"{g}\"
    serving.knative.dev/service: {name}
spec:
  containers:
    - image: registry.example.com/{ns}/{name}:{tag}
      ports:
        - containerPort: 8080
status:
  observedGeneration: 1
  conditions:
    - type: Ready
      status: \"True\"
---
apiVersion: v1
kind: Service
metadata:
  name: {rev}
  namespace: {ns}
  labels:
    serving.knative.dev/revision: {rev}
    serving.knative.dev/configuration: {name}
    serving.knative.dev/service: {name}
    networking.internal.knative.dev/serviceType: Public
spec:
  ports:
    - name: http
      port: 80
      protocol: TCP
      targetPort: 8012
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {rev}-{suffix}
  namespace: {ns}
  labels:
    kubernetes.io/service-name: {rev}
    endpointslice.kubernetes.io/managed-by: endpointslicemirroring-controller.k8s.io
addressType: IPv4
endpoints:
",
            tag = r.image_tag,
            suffix = r.slice_suffix,
        );
        for a in &r.addresses {
            let _ = write!(
                out,
                "  - addresses: [\"{a}\"]\n    conditions:\n      ready: true\n"
            );
        }
        out.push_str("ports:\n  - name: http\n    port: 8012\n    protocol: TCP\n");
    }
    if let Some(domain) = &s.domain_mapping {
        let _ = write!(
            out,
            "---
apiVersion: serving.knative.dev/v1beta1
kind: DomainMapping
metadata:
  name: {domain}
  namespace: {ns}
  creationTimestamp: \"{created}\"
spec:
  ref:
    apiVersion: serving.knative.dev/v1
    kind: Service
    name: {name}
---
apiVersion: networking.internal.knative.dev/v1alpha1
kind: ClusterDomainClaim
metadata:
  name: {domain}
spec:
  namespace: {ns}
"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_files_other_seed_other_files() {
        let a = generate(300, 7);
        let b = generate(300, 7);
        assert_eq!(a, b);
        let c = generate(300, 8);
        assert_ne!(a.files, c.files);
        assert_eq!(a.files.len(), 301);
        assert_eq!(a.change(3), b.change(3));
        assert_eq!(a.changed_service(3), b.changed_service(3));
    }

    #[test]
    fn shape_is_realistic() {
        let w = generate(2000, 1);
        let local = w.services.iter().filter(|s| s.cluster_local).count();
        let mapped = w
            .services
            .iter()
            .filter(|s| s.domain_mapping.is_some())
            .count();
        assert!((120..=280).contains(&local), "cluster-local: {local}");
        assert!((40..=170).contains(&mapped), "domain mappings: {mapped}");
        for s in &w.services {
            assert!((1..=3).contains(&s.revisions.len()));
            for r in &s.revisions {
                assert!((1..=5).contains(&r.addresses.len()));
            }
            if let Some(t) = &s.traffic {
                assert_eq!(t.iter().map(|t| t.percent).sum::<u32>(), 100, "{}", s.name);
            }
        }
        let namespaces: std::collections::BTreeSet<_> =
            w.services.iter().map(|s| &s.namespace).collect();
        assert_eq!(namespaces.len(), NAMESPACES);
        let mut addresses: Vec<&String> = w
            .services
            .iter()
            .flat_map(|s| s.revisions.iter().flat_map(|r| r.addresses.iter()))
            .collect();
        let n = addresses.len();
        addresses.sort();
        addresses.dedup();
        assert_eq!(addresses.len(), n, "addresses are unique");
    }

    #[test]
    fn changes_rewrite_one_file_and_always_differ() {
        let w = generate(50, 3);
        let mut last: std::collections::BTreeMap<String, String> =
            w.files.iter().cloned().collect();
        for i in 0..200 {
            let (path, text) = w.change(i);
            let (ns, name) = w.changed_service(i);
            assert_eq!(path, format!("{ns}/{name}.yaml"));
            let before = last.get(&path).expect("changes rewrite an existing file");
            assert_ne!(before, &text, "change {i} changes {path}");
            let original = &w.files.iter().find(|f| f.0 == path).unwrap().1;
            assert_ne!(original, &text);
            last.insert(path, text);
        }
    }

    #[test]
    fn addresses_are_valid_and_unique() {
        assert_eq!(address(0), "10.0.0.1");
        assert_eq!(address(253), "10.0.0.254");
        assert_eq!(address(254), "10.0.1.1");
        assert_eq!(address(254 * 256), "10.1.0.1");
    }
}
