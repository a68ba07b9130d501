//! Command-line interface (clap). Thin: parses flags and calls `app`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use runtime::app;
use translate::envoy::RouteLayout;
use translate::{ListenerSettings, Options};

/// Knative traffic (Routes, Services, DomainMappings) to Envoy over ADS.
#[derive(Parser, Debug)]
#[command(name = "knative-xds", version)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Serve Envoy gateways over ADS (SotW and Delta) and the admin endpoints.
    Serve(Box<ServeArgs>),
    /// Print the Envoy resources that would be served (JSON, YAML), or a static Envoy
    /// bootstrap that serves them with no control plane.
    Render(RenderArgs),
    /// List every error (exit 1) and warning (exit 0, unless --strict) in a folder.
    Validate(ValidateArgs),
    /// Connected Envoys and whether each has ACKed the current config (asks a running server).
    Status(StatusArgs),
    /// Where a request would be routed, and why (asks a running server).
    Explain(ExplainArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Table,
    Json,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ClientArgs {
    /// The server's xDS/gRPC address.
    #[arg(long, default_value = "127.0.0.1:18000", env = "KNATIVE_XDS_SERVER")]
    pub server: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Connect over TLS, trusting this CA (PEM): for a server run with `--xds-tls-cert`.
    #[arg(long, env = "KNATIVE_XDS_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Present this client certificate (PEM; with `--tls-key`): for `--xds-tls-client-ca`.
    #[arg(long, requires_all = ["tls_key", "tls_ca"], env = "KNATIVE_XDS_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert", env = "KNATIVE_XDS_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The name the server's certificate must carry [default: the host of `--server`].
    #[arg(long, requires = "tls_ca")]
    pub tls_server_name: Option<String>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ExplainArgs {
    /// The request's Host (a port is ignored, as Envoy does).
    #[arg(long)]
    pub host: String,
    #[arg(long, default_value = "/")]
    pub path: String,
    /// A request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Ask about the internal listener (cluster-local hosts) instead of the external one.
    #[arg(long)]
    pub internal: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// Knative Routes, Services and DomainMappings.
    Routes,
    /// KIngress objects of our ingress class.
    Ingress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Layout {
    /// One RouteConfiguration per listener (any-case hosts; a change resends all hosts).
    PerListener,
    /// Scoped routes (SRDS): one RouteConfiguration per object; a change costs only its bytes.
    Scoped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug, Clone)]
pub(crate) struct TranslateArgs {
    /// What to serve: Knative's Routes, Services and DomainMappings, or (as Knative's
    /// networking layer) the KIngresses of `--ingress-class`.
    #[arg(long, value_enum, default_value_t = Mode::Routes, env = "KNATIVE_XDS_MODE")]
    pub mode: Mode,
    /// `--mode ingress`: the `networking.knative.dev/ingress.class` annotation value we own;
    /// KIngresses of any other class are left untouched.
    #[arg(long, default_value = translate::kingress::DEFAULT_CLASS, env = "KNATIVE_XDS_INGRESS_CLASS")]
    pub ingress_class: String,
    /// Gateway port of the external listener (ExternalIP hosts).
    #[arg(long, default_value_t = 8080, env = "KNATIVE_XDS_EXTERNAL_PORT")]
    pub external_port: u16,
    /// Gateway port of the internal listener (all hosts, including cluster-local).
    #[arg(long, default_value_t = 8081, env = "KNATIVE_XDS_INTERNAL_PORT")]
    pub internal_port: u16,
    /// Address the gateway listeners bind to.
    #[arg(long, default_value = "0.0.0.0")]
    pub listener_address: String,
    /// Namespace of Knative's ConfigMaps (config-domain, config-network, config-features).
    #[arg(long, default_value = "knative-serving", env = "SYSTEM_NAMESPACE")]
    pub system_namespace: String,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local", env = "CLUSTER_DOMAIN")]
    pub cluster_domain: String,
    /// How virtual hosts are grouped into RouteConfigurations.
    #[arg(long, value_enum, default_value_t = Layout::Scoped)]
    pub route_layout: Layout,
    /// Gateway port of the external HTTPS listener (there while a certificate is served).
    #[arg(long, default_value_t = 8443, env = "KNATIVE_XDS_EXTERNAL_HTTPS_PORT")]
    pub external_https_port: u16,
    /// Gateway port of the cluster-local HTTPS listener (cluster-local hosts with their own
    /// certificate).
    #[arg(long, default_value_t = 8444, env = "KNATIVE_XDS_INTERNAL_HTTPS_PORT")]
    pub internal_https_port: u16,
    /// A `kubernetes.io/tls` Secret (`NAMESPACE/NAME`, typically a wildcard certificate)
    /// serving every external host that has no certificate of its own.
    #[arg(long, env = "KNATIVE_XDS_DEFAULT_TLS_SECRET")]
    pub default_tls_secret: Option<String>,
    /// Lowest TLS version the HTTPS listeners accept.
    #[arg(long, value_enum, default_value_t = TlsMin::V1_2)]
    pub tls_min_version: TlsMin,
    /// TLS 1.2 cipher suites in preference order, comma-separated (BoringSSL names, `[a|b]`
    /// for equal preference); default: Envoy's.
    #[arg(long, value_delimiter = ',', env = "KNATIVE_XDS_TLS_CIPHER_SUITES")]
    pub tls_cipher_suites: Vec<String>,
    /// Pass invalid endpoint addresses to Envoy unchecked, so it rejects them: for the
    /// tests of NACK reporting only (the `testing` feature; release builds do not have it).
    #[cfg(feature = "testing")]
    #[arg(long)]
    pub testing_unchecked_endpoints: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TlsMin {
    #[value(name = "1.2")]
    V1_2,
    #[value(name = "1.3")]
    V1_3,
}

impl TranslateArgs {
    /// The translation options; an error names the flag.
    fn options(&self) -> Result<Options, String> {
        let default_secret = match &self.default_tls_secret {
            None => None,
            Some(s) => match s.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                    Some(model::ObjectKey::new(ns, name))
                }
                _ => {
                    return Err(format!(
                        "--default-tls-secret {s:?}: expected NAMESPACE/NAME"
                    ))
                }
            },
        };
        let suites: Vec<String> = self
            .tls_cipher_suites
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        translate::tls::check_cipher_suites(&suites)
            .map_err(|e| format!("--tls-cipher-suites: {e}"))?;
        Ok(Options {
            system_namespace: self.system_namespace.clone(),
            cluster_domain: self.cluster_domain.clone(),
            listeners: ListenerSettings {
                bind_address: self.listener_address.clone(),
                external_port: self.external_port,
                internal_port: self.internal_port,
                layout: match self.route_layout {
                    Layout::PerListener => RouteLayout::PerListener,
                    Layout::Scoped => RouteLayout::Scoped,
                },
                tls: translate::tls::TlsSettings {
                    external_port: self.external_https_port,
                    internal_port: self.internal_https_port,
                    default_secret,
                    min_version: match self.tls_min_version {
                        TlsMin::V1_2 => translate::tls::TlsVersion::V1_2,
                        TlsMin::V1_3 => translate::tls::TlsVersion::V1_3,
                    },
                    cipher_suites: suites,
                },
            },
            no_controller: true,
            #[cfg(feature = "testing")]
            check_endpoint_addresses: !self.testing_unchecked_endpoints,
            #[cfg(not(feature = "testing"))]
            check_endpoint_addresses: true,
            ingress_class: (self.mode == Mode::Ingress).then(|| self.ingress_class.clone()),
        })
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    /// Folder of Kubernetes YAML to serve (re-read on change). Without it: Kubernetes.
    #[arg(long)]
    pub manifests: Option<PathBuf>,
    #[arg(long, default_value = "0.0.0.0:18000")]
    pub xds_address: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin_address: SocketAddr,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Kubernetes: watch only this namespace (repeatable; default all).
    #[arg(long = "namespace")]
    pub namespaces: Vec<String>,
    /// Serve xDS (and the other gRPC services) over TLS with this certificate chain (PEM);
    /// re-read when the file changes, without dropping streams.
    #[arg(long, requires = "xds_tls_key", env = "KNATIVE_XDS_XDS_TLS_CERT")]
    pub xds_tls_cert: Option<PathBuf>,
    /// The private key of `--xds-tls-cert` (PEM).
    #[arg(long, requires = "xds_tls_cert", env = "KNATIVE_XDS_XDS_TLS_KEY")]
    pub xds_tls_key: Option<PathBuf>,
    /// Require clients (Envoys) to present a certificate signed by this CA (PEM): mTLS.
    #[arg(long, requires = "xds_tls_cert", env = "KNATIVE_XDS_XDS_TLS_CLIENT_CA")]
    pub xds_tls_client_ca: Option<PathBuf>,
    #[command(flatten)]
    pub status: StatusWriterArgs,
    #[command(flatten)]
    pub translate: TranslateArgs,
}

/// `--mode ingress` with Kubernetes: how KIngress status is reported.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct StatusWriterArgs {
    /// The gateway Service external traffic reaches (`NAMESPACE/NAME`): Knative's
    /// `status.publicLoadBalancer`.
    #[arg(long, default_value = "knative-xds/knative-xds-gateway")]
    pub public_gateway_service: String,
    /// The gateway Service cluster-local traffic reaches: `status.privateLoadBalancer`.
    #[arg(long, default_value = "knative-xds/knative-xds-gateway-internal")]
    pub private_gateway_service: String,
    /// Lease that elects the one replica writing status (every replica serves xDS).
    #[arg(long, default_value = "knative-xds-status")]
    pub lease_name: String,
    /// Namespace of the Lease.
    #[arg(long, default_value = "knative-xds", env = "POD_NAMESPACE")]
    pub lease_namespace: String,
    /// Seconds a leader's Lease lasts without renewal (hand-over time when it dies).
    #[arg(long, default_value_t = 15)]
    pub lease_duration: u64,
    /// This replica's identity in the Lease (default: the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct RenderArgs {
    /// Folder of Kubernetes manifests (YAML or JSON).
    #[arg(long)]
    pub manifests: PathBuf,
    /// `json`/`yaml`: the resources by type, as served over ADS. `bootstrap`: a complete
    /// Envoy bootstrap (listeners, routes, clusters with their endpoints inline) for
    /// `envoy -c`, needing no control plane.
    #[arg(short = 'o', long, value_enum, default_value_t = RenderFormat::Json)]
    pub output: RenderFormat,
    #[command(flatten)]
    pub translate: TranslateArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RenderFormat {
    Json,
    Yaml,
    Bootstrap,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ValidateArgs {
    /// Folder of Kubernetes manifests (YAML or JSON).
    #[arg(long)]
    pub manifests: PathBuf,
    /// Exit 1 on warnings too.
    #[arg(long)]
    pub strict: bool,
    /// `text`: one line per finding; `json`: errors, warnings and skipped files.
    #[arg(short = 'o', long, value_enum, default_value_t = ValidateFormat::Text)]
    pub output: ValidateFormat,
    #[command(flatten)]
    pub translate: TranslateArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ValidateFormat {
    Text,
    Json,
}

impl StatusWriterArgs {
    fn settings(
        &self,
        translate: &TranslateArgs,
    ) -> Result<runtime::sources::kube_status::StatusSettings, String> {
        let fqdn = |flag: &str, v: &str| match v.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
                Ok(format!("{name}.{ns}.svc.{}", translate.cluster_domain))
            }
            _ => Err(format!("--{flag}: expected NAMESPACE/NAME, got {v:?}")),
        };
        let identity = self.identity.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| format!("knative-xds-{}", std::process::id()))
        });
        if self.lease_duration < 2 {
            return Err("--lease-duration: at least 2 seconds".to_string());
        }
        Ok(runtime::sources::kube_status::StatusSettings {
            public_domain: fqdn("public-gateway-service", &self.public_gateway_service)?,
            private_domain: fqdn("private-gateway-service", &self.private_gateway_service)?,
            lease_name: self.lease_name.clone(),
            lease_namespace: self.lease_namespace.clone(),
            lease_seconds: self.lease_duration,
            identity,
        })
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Render(args) => render(args),
        Command::Validate(args) => validate(args),
        Command::Status(args) => run_client(crate::client::status(args)),
        Command::Explain(args) => run_client(crate::client::explain(args)),
    }
}

/// A tokio runtime (multi-threaded for the server, one thread for the clients); reports
/// a failure to start it.
fn runtime(multi_thread: bool) -> Option<tokio::runtime::Runtime> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    match builder.enable_all().build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            None
        }
    }
}

fn run_client(fut: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    let Some(rt) = runtime(false) else {
        return ExitCode::FAILURE;
    };
    match rt.block_on(fut) {
        Ok(code) => code,
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    init_logging(args.log_format);
    let mut options = match args.translate.options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let ingress_mode = args.translate.mode == Mode::Ingress;
    let source = match args.manifests.clone() {
        Some(dir) => app::SourceConfig::Manifests(dir),
        None => {
            // In a cluster Knative's controller makes Routes from Services.
            options.no_controller = false;
            use model::Kind;
            app::SourceConfig::Kube(runtime::sources::kube::KubeOptions {
                namespaces: args.namespaces.clone(),
                system_namespace: args.translate.system_namespace.clone(),
                kinds: if ingress_mode {
                    vec![Kind::KIngress, Kind::Service, Kind::EndpointSlice]
                } else {
                    Kind::ALL
                        .into_iter()
                        // Secrets are watched one by one, as objects name them.
                        .filter(|k| !matches!(k, Kind::KIngress | Kind::Secret))
                        .collect()
                },
            })
        }
    };
    let status = match (&source, ingress_mode) {
        (app::SourceConfig::Kube(_), true) => match args.status.settings(&args.translate) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let cfg = app::ServeConfig {
        source,
        xds_address: args.xds_address,
        admin_address: args.admin_address,
        options,
        status,
        xds_tls: match (&args.xds_tls_cert, &args.xds_tls_key) {
            (Some(cert), Some(key)) => Some(runtime::server::tls::XdsTls {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.xds_tls_client_ca.clone(),
            }),
            _ => None,
        },
    };
    let Some(rt) = runtime(true) else {
        return ExitCode::FAILURE;
    };
    match rt.block_on(app::serve(cfg, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn render(args: RenderArgs) -> ExitCode {
    let mut options = match args.translate.options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.output == RenderFormat::Bootstrap {
        // Scoped routes need RDS; a static bootstrap holds each listener's routes inline.
        options.listeners.layout = RouteLayout::PerListener;
    }
    let (manifests, output, snapshot) = match app::load_once(&args.manifests, options.clone()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let found = app::findings(&manifests, &output, &options);
    for f in found.errors.iter().chain(&found.warnings) {
        eprintln!("warning: {f}");
    }
    let json = xds::json::snapshot_json(&snapshot);
    let text = match args.output {
        RenderFormat::Json => serde_json::to_string_pretty(&json).map_err(|e| e.to_string()),
        RenderFormat::Yaml => serde_saphyr::to_string(&json).map_err(|e| e.to_string()),
        RenderFormat::Bootstrap => {
            crate::bootstrap::from_snapshot_json(&json).and_then(|(b, left_out)| {
                for l in left_out {
                    eprintln!("warning: listener {l} left out: its certificates would put private keys in the bootstrap");
                }
                serde_json::to_string_pretty(&b).map_err(|e| e.to_string())
            })
        }
    };
    match text {
        Ok(s) => finish(outln!("{}", s.trim_end()), ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn validate(args: ValidateArgs) -> ExitCode {
    let options = match args.translate.options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let (manifests, output) = match app::translate_once(&args.manifests, options.clone()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let findings = app::findings(&manifests, &output, &options);
    let failed = !findings.errors.is_empty() || (args.strict && !findings.warnings.is_empty());
    let code = if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    };
    let written = match args.output {
        ValidateFormat::Json => serde_json::to_string_pretty(&findings)
            .map_err(std::io::Error::other)
            .and_then(|s| outln!("{s}")),
        ValidateFormat::Text => (|| {
            for f in &findings.errors {
                outln!("error: {f}")?;
            }
            for f in &findings.warnings {
                outln!("warning: {f}")?;
            }
            if !findings.skipped.is_empty() {
                let skipped: Vec<String> = (findings.skipped.iter())
                    .map(|p| p.display().to_string())
                    .collect();
                outln!(
                    "skipped (not *.yaml, *.yml or *.json): {}",
                    skipped.join(", ")
                )?;
            }
            let hosts: usize = output.ingresses.iter().map(|i| i.hosts().count()).sum();
            outln!(
                "{}: {} routes, {hosts} hosts, {} errors, {} warnings",
                if failed { "failed" } else { "ok" },
                output.ingresses.len(),
                findings.errors.len(),
                findings.warnings.len()
            )
        })(),
    };
    finish(written, code)
}

/// The exit code once output is written: a closed pipe (`| head`) is not a failure, and
/// other write errors are reported.
pub(crate) fn finish(written: std::io::Result<()>, code: ExitCode) -> ExitCode {
    match written {
        Ok(()) => code,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing the output: {e}");
            ExitCode::FAILURE
        }
    }
}
