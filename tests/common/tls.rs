//! Certificates made at test time (rcgen) and an HTTPS client that, like `openssl s_client`,
//! tells which certificate the server presented.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A test CA that signs leaf certificates; clients trust only it.
pub(crate) struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate with its key.
#[derive(Clone)]
pub(crate) struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    /// Unix seconds.
    pub not_after: i64,
}

impl TestCa {
    pub(crate) fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "knative-xds test CA");
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for `names`, valid from an hour ago for `days`.
    pub(crate) fn leaf(&self, names: &[&str], days: i64) -> Leaf {
        let now = std::time::SystemTime::now();
        self.leaf_valid(
            names,
            now - Duration::from_secs(3600),
            now + Duration::from_secs(days.max(0) as u64 * 86_400),
        )
    }

    /// A client certificate (extended key usage clientAuth) named `name`.
    pub(crate) fn client_leaf(&self, name: &str) -> Leaf {
        let now = std::time::SystemTime::now();
        self.leaf_with(
            &[name],
            now - Duration::from_secs(3600),
            now + Duration::from_secs(86_400),
            true,
        )
    }

    pub(crate) fn leaf_valid(
        &self,
        names: &[&str],
        from: std::time::SystemTime,
        until: std::time::SystemTime,
    ) -> Leaf {
        self.leaf_with(names, from, until, false)
    }

    fn leaf_with(
        &self,
        names: &[&str],
        from: std::time::SystemTime,
        until: std::time::SystemTime,
        client: bool,
    ) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        // Whole seconds, as a certificate holds them.
        let secs =
            |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let until = std::time::UNIX_EPOCH + Duration::from_secs(secs(until));
        params.not_before = (std::time::UNIX_EPOCH + Duration::from_secs(secs(from))).into();
        params.not_after = until.into();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        if client {
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            not_after: secs(until) as i64,
        }
    }
}

impl Leaf {
    /// Writes `<stem>.crt` and `<stem>.key` into `dir` (write, then rename: never half a file).
    pub(crate) fn write(&self, dir: &std::path::Path, stem: &str) {
        for (ext, text) in [("crt", &self.cert_pem), ("key", &self.key_pem)] {
            let tmp = dir.join(format!(".{stem}.{ext}.tmp"));
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, dir.join(format!("{stem}.{ext}"))).unwrap();
        }
    }

    /// The key's base64 body (no PEM armour): what must never appear in any output.
    pub(crate) fn key_body(&self) -> String {
        self.key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect()
    }
}

/// A `kubernetes.io/tls` Secret manifest holding `leaf` (`stringData`, block scalars).
pub(crate) fn secret_yaml(namespace: &str, name: &str, cert_pem: &str, key_pem: &str) -> String {
    let indent = |s: &str| {
        s.trim_end()
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    format!(
        "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/tls\nmetadata:\n  name: {name}\n  namespace: {namespace}\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(cert_pem),
        indent(key_pem)
    )
}

/// What an HTTPS request saw.
#[derive(Debug)]
pub(crate) struct HttpsReply {
    pub status: u16,
    pub body: serde_json::Value,
    /// The leaf certificate the server presented.
    pub peer: Vec<u8>,
    pub alpn: Option<Vec<u8>>,
}

impl HttpsReply {
    pub(crate) fn revision(&self) -> &str {
        self.body["revision"].as_str().unwrap_or("")
    }
}

/// One HTTP/1.1 GET over a new TLS connection to 127.0.0.1:`port` with SNI and Host
/// `host`, trusting only `ca_pem`. An `Err` is a failed handshake or connection.
pub(crate) async fn https_get(port: u16, host: &str, ca_pem: &str) -> Result<HttpsReply, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        let c: CertificateDer<'static> = c.map_err(|e| e.to_string())?;
        roots.add(c).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    let work = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        tcp.set_nodelay(true).ok();
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (_, conn) = tls.get_ref();
        let peer = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let alpn = conn.alpn_protocol().map(|a| a.to_vec());
        let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        tls.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        // Envoy may close without close_notify after `Connection: close`: what was read counts.
        let _ = tls.read_to_end(&mut raw).await;
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no HTTP response: {text:?}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line: {head:?}"))?;
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_string()
        };
        let body = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
        Ok(HttpsReply {
            status,
            body,
            peer,
            alpn,
        })
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .map_err(|_| "timed out".to_string())?
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
