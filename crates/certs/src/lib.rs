//! Checks a `kubernetes.io/tls` Secret the way Envoy (BoringSSL) will load it, before it
//! may enter a snapshot: Envoy rejects a whole xDS response for one bad certificate, so
//! one bad Secret must never reach it (Envoy Gateway #9463, #9225).
//!
//! Pure: no I/O and no clock (the caller passes `now`). The PEM bytes are never changed or
//! re-encoded (what is checked is what is sent), and no error carries key material.

use std::fmt;

use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::public_key::PublicKey;

/// A certificate's `notBefore` may lie this far in the future (seconds): issuers stamp
/// "now", and clocks differ between the issuer and this process.
pub const NOT_BEFORE_SKEW: i64 = 300;

/// What an operator wants to see of a certificate (never the key).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertInfo {
    /// The leaf's subject, RFC 4514 style.
    pub subject: String,
    /// The leaf's DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// The leaf's serial, hex with colons (as `openssl x509 -serial` without them).
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds: the earliest `notAfter` in the chain.
    pub not_after: i64,
    pub key: KeyType,
    /// Certificates in `tls.crt`, the leaf first.
    pub chain_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum KeyType {
    Rsa { bits: usize },
    EcdsaP256,
    EcdsaP384,
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyType::Rsa { bits } => write!(f, "RSA {bits}"),
            KeyType::EcdsaP256 => f.write_str("ECDSA P-256"),
            KeyType::EcdsaP384 => f.write_str("ECDSA P-384"),
        }
    }
}

/// Why a Secret cannot be served. Each names the Secret's field; none carries key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("tls.crt: {0}")]
    Certificate(String),
    #[error("tls.key: {0}")]
    Key(String),
    #[error("tls.key: does not match the certificate in tls.crt")]
    KeyMismatch,
    #[error("tls.crt: expired at {}", rfc3339(*.0))]
    Expired(i64),
    #[error("tls.crt: not valid before {}", rfc3339(*.0))]
    NotYetValid(i64),
}

impl CertError {
    /// Expiry and not-yet-valid: errors of the moment, not of the bytes.
    pub fn is_about_time(&self) -> bool {
        matches!(self, CertError::Expired(_) | CertError::NotYetValid(_))
    }
}

/// Checks `tls.crt` and `tls.key` as Envoy would load them, apart from the time (see
/// [`check_time`]): PEM, one private key, unencrypted, of a type Envoy serves (RSA of at
/// least 2048 bits, ECDSA P-256 or P-384), matching the leaf (the first certificate); every
/// certificate of the chain parses.
pub fn check(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertInfo, CertError> {
    let chain = certificates(cert_pem)?;
    let key = private_key(key_pem)?;
    let mut not_after = i64::MAX;
    let mut leaf = None;
    for (i, der) in chain.iter().enumerate() {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| {
            CertError::Certificate(format!("certificate {} does not parse: {e}", i + 1))
        })?;
        not_after = not_after.min(cert.validity().not_after.timestamp());
        if i == 0 {
            leaf = Some(leaf_info(&cert)?);
        }
    }
    let mut info = leaf.ok_or_else(|| CertError::Certificate("no certificate".into()))?;
    info.not_after = not_after;
    info.chain_len = chain.len();
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|_| CertError::Key(format!("not a usable {} private key", info.key)))?;
    match rustls::sign::CertifiedKey::new(chain, signing).keys_match() {
        Ok(()) => Ok(info),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(CertError::KeyMismatch)
        }
        Err(e) => Err(CertError::Key(format!(
            "cannot be checked against the certificate: {e}"
        ))),
    }
}

/// The leaf's validity at `now` (Unix seconds), allowing [`NOT_BEFORE_SKEW`].
pub fn check_time(info: &CertInfo, now: i64) -> Result<(), CertError> {
    if now >= info.not_after {
        return Err(CertError::Expired(info.not_after));
    }
    if now + NOT_BEFORE_SKEW < info.not_before {
        return Err(CertError::NotYetValid(info.not_before));
    }
    Ok(())
}

/// The next moment (after `now`) at which [`check_time`]'s answer changes.
pub fn next_change(info: &CertInfo, now: i64) -> Option<i64> {
    [info.not_before - NOT_BEFORE_SKEW, info.not_after]
        .into_iter()
        .filter(|t| *t > now)
        .min()
}

/// Whether the certificate names `host` (exactly, or by a `*.` wildcard of one label).
pub fn covers(info: &CertInfo, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    info.dns_names.iter().any(|n| {
        let n = n.to_ascii_lowercase();
        match n.strip_prefix("*.") {
            Some(suffix) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => n == host,
        }
    })
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let mut chain = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) =
            section.map_err(|e| CertError::Certificate(format!("not valid PEM: {e}")))?;
        if kind != SectionKind::Certificate {
            return Err(CertError::Certificate(format!(
                "holds a {kind:?} block; only CERTIFICATE blocks belong here"
            )));
        }
        chain.push(CertificateDer::from(der));
    }
    if chain.is_empty() {
        return Err(CertError::Certificate("no PEM CERTIFICATE block".into()));
    }
    Ok(chain)
}

fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, CertError> {
    // Only the kind is looked at, never the bytes, in errors.
    let mut keys = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = section.map_err(|_| CertError::Key("not valid PEM".into()))?;
        let key = match kind {
            SectionKind::RsaPrivateKey => PrivateKeyDer::Pkcs1(der.into()),
            SectionKind::PrivateKey => PrivateKeyDer::Pkcs8(der.into()),
            SectionKind::EcPrivateKey => PrivateKeyDer::Sec1(der.into()),
            other => {
                return Err(CertError::Key(format!(
                    "holds a {other:?} block, not a private key"
                )))
            }
        };
        keys.push(key);
    }
    if pem_mentions(pem, b"ENCRYPTED PRIVATE KEY") {
        return Err(CertError::Key(
            "is encrypted; Envoy needs an unencrypted key".into(),
        ));
    }
    match keys.len() {
        1 => Ok(keys.remove(0)),
        0 => Err(CertError::Key("no PEM private key block".into())),
        n => Err(CertError::Key(format!(
            "holds {n} private keys; one belongs here"
        ))),
    }
}

fn pem_mentions(pem: &[u8], label: &[u8]) -> bool {
    pem.windows(label.len()).any(|w| w == label)
}

fn leaf_info(cert: &X509Certificate<'_>) -> Result<CertInfo, CertError> {
    let key = match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            let bits = rsa.key_size();
            if bits < 2048 {
                return Err(CertError::Certificate(format!(
                    "RSA key of {bits} bits; Envoy needs at least 2048"
                )));
            }
            KeyType::Rsa { bits }
        }
        Ok(PublicKey::EC(_)) => {
            use x509_parser::oid_registry::{OID_EC_P256, OID_NIST_EC_P384};
            let curve = cert
                .public_key()
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            match curve {
                Some(c) if c == OID_EC_P256 => KeyType::EcdsaP256,
                Some(c) if c == OID_NIST_EC_P384 => KeyType::EcdsaP384,
                _ => {
                    return Err(CertError::Certificate(
                        "ECDSA key on a curve other than P-256 or P-384".into(),
                    ))
                }
            }
        }
        _ => {
            return Err(CertError::Certificate(
                "key type Envoy does not serve (only RSA and ECDSA)".into(),
            ))
        }
    };
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                dns_names.push(d.to_string());
            }
        }
    }
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        dns_names,
        serial: cert.raw_serial_as_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        key,
        chain_len: 1,
    })
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
