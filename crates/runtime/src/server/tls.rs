//! TLS, and mTLS with a client CA, on the xDS port. The acceptor is our own (tokio-rustls)
//! rather than tonic's, whose configuration is fixed when the server starts: the certificate
//! files are looked at every [`RELOAD_EVERY`] and a change swaps the configuration for new
//! connections, while established ones — Envoy's ADS streams — carry on untouched.
//! Health, reflection, CSDS and the Inspect API share the port, so they follow the same rule.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tracing::{debug, info, warn};

/// How often the certificate files are looked at.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);
/// A client that has not finished its handshake by then is dropped (it must not hold a slot).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the xDS port's certificate, key and (for mTLS) client CA are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdsTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Clients must present a certificate signed by one of these.
    pub client_ca: Option<PathBuf>,
}

impl XdsTls {
    fn files(&self) -> Vec<&Path> {
        let mut f = vec![self.cert.as_path(), self.key.as_path()];
        f.extend(self.client_ca.as_deref());
        f
    }

    /// What the files hold now; compared to notice a change (Kubernetes swaps a Secret
    /// volume's files through a symlink, which watching the files themselves would miss).
    fn contents(&self) -> io::Result<Vec<Vec<u8>>> {
        self.files().into_iter().map(std::fs::read).collect()
    }

    /// A server configuration from the files; the error names the file and what is wrong
    /// (never key material).
    pub fn load(&self) -> anyhow::Result<Arc<ServerConfig>> {
        use anyhow::Context;
        let cert_pem = std::fs::read(&self.cert)
            .with_context(|| format!("--xds-tls-cert {}", self.cert.display()))?;
        let key_pem = std::fs::read(&self.key)
            .with_context(|| format!("--xds-tls-key {}", self.key.display()))?;
        // The same checks as for the gateways' certificates: key type, key match, PEM.
        certs::check(&cert_pem, &key_pem).with_context(|| {
            format!(
                "--xds-tls-cert {} / --xds-tls-key {}",
                self.cert.display(),
                self.key.display()
            )
        })?;
        let (chain, key) = identity(
            (
                &cert_pem,
                &format!("--xds-tls-cert {}", self.cert.display()),
            ),
            (&key_pem, &format!("--xds-tls-key {}", self.key.display())),
        )?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let roots = roots(ca, "--xds-tls-client-ca")?;
                if roots.is_empty() {
                    anyhow::bail!("--xds-tls-client-ca {}: no certificate", ca.display());
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key)?;
        // gRPC clients (Envoy, grpc-go, grpcurl) insist on h2.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The CA certificates of a PEM file, to trust; errors name `flag` and the file.
pub fn roots(path: &Path, flag: &str) -> anyhow::Result<rustls::RootCertStore> {
    use anyhow::Context;
    let what = || format!("{flag} {}", path.display());
    let pem = std::fs::read(path).with_context(what)?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.with_context(what)?).with_context(what)?;
    }
    Ok(roots)
}

/// A certificate chain and its private key from PEM (`(bytes, what to call them in an
/// error)`): for a TLS server or a client certificate. Errors never hold key bytes.
pub fn identity(
    (cert_pem, cert_what): (&[u8], &str),
    (key_pem, key_what): (&[u8], &str),
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    use anyhow::Context;
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| cert_what.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|_| anyhow::anyhow!("{key_what}: no private key"))?;
    Ok((chain, key))
}

/// A TLS connection as tonic serves it.
pub struct TlsConn(TlsStream<TcpStream>);

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// TLS connections accepted on `listener` with the configuration of `tls`, re-read when the
/// files change. `first` is the configuration already loaded (a bad one stops the start).
pub fn incoming(
    listener: TcpListener,
    tls: XdsTls,
    first: Arc<ServerConfig>,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<TlsConn>> {
    let current = Arc::new(RwLock::new(first));
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(reload(tls, current.clone(), tx.clone()));
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving.
                    warn!(error = %e, "xDS accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let config = match current.read() {
                Ok(c) => c.clone(),
                Err(p) => p.into_inner().clone(),
            };
            let out = tx.clone();
            // Each handshake on its own task: a slow client does not hold the others up.
            tokio::spawn(async move {
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = out.send(Ok(TlsConn(stream))).await;
                    }
                    Ok(Err(e)) => debug!(%peer, error = %e, "xDS TLS handshake failed"),
                    Err(_) => debug!(%peer, "xDS TLS handshake timed out"),
                }
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Swaps in a new configuration whenever the files change and load; a bad change keeps the
/// current one (logged once per distinct error).
async fn reload(
    tls: XdsTls,
    current: Arc<RwLock<Arc<ServerConfig>>>,
    tx: tokio::sync::mpsc::Sender<io::Result<TlsConn>>,
) {
    let mut seen = tls.contents().ok();
    let mut last_error = None;
    loop {
        tokio::time::sleep(RELOAD_EVERY).await;
        if tx.is_closed() {
            return;
        }
        let now = tls.contents().ok();
        if now.is_none() || now == seen {
            continue;
        }
        match tls.load() {
            Ok(config) => {
                match current.write() {
                    Ok(mut c) => *c = config,
                    Err(p) => *p.into_inner() = config,
                }
                info!("xDS TLS certificate files changed: new connections use them");
                seen = now;
                last_error = None;
            }
            Err(e) => {
                let message = format!("{e:#}");
                if last_error.as_ref() != Some(&message) {
                    warn!(error = %message, "xDS TLS files changed but do not load; keeping the current ones");
                    last_error = Some(message);
                }
            }
        }
    }
}
