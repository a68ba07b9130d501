use super::*;
use rcgen::{
    date_time_ymd, CertificateParams, CertifiedIssuer, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256,
    PKCS_ECDSA_P384_SHA384, PKCS_ED25519,
};

fn self_signed(names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
    let key = KeyPair::generate_for(alg).unwrap();
    let params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[test]
fn ecdsa_p256_and_p384_are_served() {
    for (alg, ty) in [
        (&PKCS_ECDSA_P256_SHA256, KeyType::EcdsaP256),
        (&PKCS_ECDSA_P384_SHA384, KeyType::EcdsaP384),
    ] {
        let (crt, key) = self_signed(&["a.example.com", "*.b.example.com"], alg);
        let info = check(crt.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(info.key, ty);
        assert_eq!(info.dns_names, ["a.example.com", "*.b.example.com"]);
        assert!(covers(&info, "A.example.com"));
        assert!(covers(&info, "x.b.example.com"));
        assert!(!covers(&info, "b.example.com"));
        assert!(!covers(&info, "y.x.b.example.com"));
    }
}

#[test]
fn a_key_of_another_certificate_is_a_mismatch() {
    let (crt, _) = self_signed(&["a.example.com"], &PKCS_ECDSA_P256_SHA256);
    let (_, other) = self_signed(&["a.example.com"], &PKCS_ECDSA_P256_SHA256);
    let err = check(crt.as_bytes(), other.as_bytes()).unwrap_err();
    assert_eq!(err, CertError::KeyMismatch);
    assert_eq!(
        err.to_string(),
        "tls.key: does not match the certificate in tls.crt"
    );
}

#[test]
fn ed25519_is_refused_as_envoy_would() {
    let (crt, key) = self_signed(&["a.example.com"], &PKCS_ED25519);
    let err = check(crt.as_bytes(), key.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("only RSA and ECDSA"), "{err}");
}

#[test]
fn malformed_pem_names_the_field_and_never_the_key() {
    let (crt, key) = self_signed(&["a.example.com"], &PKCS_ECDSA_P256_SHA256);
    let cases: Vec<(String, String, &str)> = vec![
        ("".into(), key.clone(), "tls.crt: no PEM CERTIFICATE block"),
        (crt.clone(), "".into(), "tls.key: no PEM private key block"),
        (key.clone(), key.clone(), "tls.crt: holds a"),
        (
            crt.clone(),
            crt.clone(),
            "tls.key: holds a Certificate block",
        ),
        (
            crt.clone(),
            format!("{key}{key}"),
            "tls.key: holds 2 private keys",
        ),
        (
            crt.replace("MII", "MIX"),
            key.clone(),
            "tls.crt: certificate 1 does not parse",
        ),
        (
            crt.clone(),
            key.replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY"),
            "tls.key: ",
        ),
    ];
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    for (c, k, want) in cases {
        let err = check(c.as_bytes(), k.as_bytes()).unwrap_err().to_string();
        assert!(
            err.starts_with(want),
            "{err:?} does not start with {want:?}"
        );
        assert!(!err.contains(&key_body[..20]), "key bytes in {err}");
    }
}

#[test]
fn validity_is_checked_against_the_given_time_with_skew() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(vec!["a.example.com".to_string()]).unwrap();
    params.not_before = date_time_ymd(2030, 1, 1);
    params.not_after = date_time_ymd(2031, 1, 1);
    let crt = params.self_signed(&key).unwrap().pem();
    let info = check(crt.as_bytes(), key.serialize_pem().as_bytes()).unwrap();
    let start = 1_893_456_000; // 2030-01-01T00:00:00Z
    assert_eq!(info.not_before, start);
    assert_eq!(rfc3339(info.not_after), "2031-01-01T00:00:00Z");
    assert_eq!(check_time(&info, start - 10), Ok(()), "within the skew");
    let early = check_time(&info, start - 3600).unwrap_err();
    assert_eq!(
        early.to_string(),
        "tls.crt: not valid before 2030-01-01T00:00:00Z"
    );
    assert!(early.is_about_time());
    assert_eq!(check_time(&info, start + 86_400), Ok(()));
    let late = check_time(&info, info.not_after).unwrap_err();
    assert_eq!(late.to_string(), "tls.crt: expired at 2031-01-01T00:00:00Z");
    assert_eq!(next_change(&info, start), Some(info.not_after));
    assert_eq!(
        next_change(&info, start - 3600),
        Some(start - NOT_BEFORE_SKEW)
    );
    assert_eq!(next_change(&info, info.not_after), None);
}

#[test]
fn a_chain_expires_with_its_earliest_member() {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.not_after = date_time_ymd(2030, 6, 1);
    let ca = CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut leaf = CertificateParams::new(vec!["a.example.com".to_string()]).unwrap();
    leaf.not_after = date_time_ymd(2035, 1, 1);
    let leaf = leaf.signed_by(&leaf_key, &ca).unwrap();
    let chain = format!("{}{}", leaf.pem(), ca.pem());
    let info = check(chain.as_bytes(), leaf_key.serialize_pem().as_bytes()).unwrap();
    assert_eq!(info.chain_len, 2);
    assert_eq!(rfc3339(info.not_after), "2030-06-01T00:00:00Z");
    // The key is matched against the leaf, not a later member.
    let reversed = format!("{}{}", ca.pem(), leaf.pem());
    assert_eq!(
        check(reversed.as_bytes(), leaf_key.serialize_pem().as_bytes()),
        Err(CertError::KeyMismatch)
    );
}

/// RSA keys come from openssl: ring cannot generate them.
fn openssl_rsa(bits: u32) -> (String, String) {
    let dir = std::env::temp_dir().join(format!("certs-rsa-{bits}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", &format!("rsa:{bits}"), "-nodes"])
        .args(["-subj", "/CN=rsa.example.com", "-days", "2"])
        .args(["-addext", "subjectAltName=DNS:rsa.example.com"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("crt.pem"))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (Debian package openssl) makes the RSA test keys");
    assert!(status.success());
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let out = (read("crt.pem"), read("key.pem"));
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[test]
fn rsa_needs_2048_bits() {
    let (crt, key) = openssl_rsa(2048);
    let info = check(crt.as_bytes(), key.as_bytes()).unwrap();
    assert_eq!(info.key, KeyType::Rsa { bits: 2048 });
    assert_eq!(info.subject, "CN=rsa.example.com");
    let (crt, key) = openssl_rsa(1024);
    let err = check(crt.as_bytes(), key.as_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tls.crt: RSA key of 1024 bits; Envoy needs at least 2048"
    );
}

#[test]
fn dates_print_as_rfc3339() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
}
