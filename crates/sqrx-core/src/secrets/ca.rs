//! The runtime's certificate authority (made with `rcgen`): `<data>/secrets/ca.crt` (what
//! sandboxes with secrets trust) and `ca.key` (0600, never leaves the host). The egress proxy
//! signs a certificate for each host it intercepts with it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The CA certificate's path in the secrets directory.
pub(crate) fn cert_path(dir: &Path) -> PathBuf {
    dir.join("ca.crt")
}

fn key_path(dir: &Path) -> PathBuf {
    dir.join("ca.key")
}

/// The CA's parameters; the same every time, so the key alone makes the issuer again.
fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "sqrx egress proxy CA");
    dn.push(DnType::OrganizationName, "sqrx");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2025, 1, 1);
    p.not_after = rcgen::date_time_ymd(2045, 1, 1);
    p
}

fn other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// The CA certificate (PEM), made with its key on first use.
pub(crate) fn ensure(dir: &Path) -> std::io::Result<String> {
    let cert = cert_path(dir);
    if let (Ok(pem), true) = (std::fs::read_to_string(&cert), key_path(dir).is_file()) {
        return Ok(pem);
    }
    crate::paths::private_dir(dir)?;
    let key = KeyPair::generate().map_err(other)?;
    let ca = ca_params().self_signed(&key).map_err(other)?;
    // The key first: a certificate without its key is never left behind.
    crate::paths::replace_private(&key_path(dir), key.serialize_pem().as_bytes())
        .map_err(|(_, e)| e)?;
    let pem = ca.pem();
    crate::paths::replace_private(&cert, pem.as_bytes()).map_err(|(_, e)| e)?;
    // The certificate is public (sandboxes get a copy); the key stays 0600.
    std::fs::set_permissions(&cert, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    Ok(pem)
}

/// Signs a certificate per intercepted host (kept for the daemon's life).
pub(crate) struct Authority {
    issuer: rcgen::Certificate,
    key: KeyPair,
    ca_der: CertificateDer<'static>,
    cache: Mutex<HashMap<String, Arc<ServerConfig>>>,
}

impl Authority {
    /// Load the CA of the secrets directory `dir`.
    pub(crate) fn load(dir: &Path) -> std::io::Result<Self> {
        let key = KeyPair::from_pem(&std::fs::read_to_string(key_path(dir))?).map_err(other)?;
        let issuer = ca_params().self_signed(&key).map_err(other)?;
        let pem = std::fs::read(cert_path(dir))?;
        let ca_der = rustls::pki_types::pem::PemObject::from_pem_slice(&pem).map_err(other)?;
        Ok(Authority {
            issuer,
            key,
            ca_der,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// A TLS server configuration presenting a certificate for `host`.
    pub(crate) fn server_config(&self, host: &str) -> std::io::Result<Arc<ServerConfig>> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(c) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&host)
        {
            return Ok(c.clone());
        }
        let mut p = CertificateParams::new(vec![host.clone()]).map_err(other)?;
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, host.as_str());
        p.is_ca = IsCa::NoCa;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(30);
        let leaf_key = KeyPair::generate().map_err(other)?;
        let leaf = p
            .signed_by(&leaf_key, &self.issuer, &self.key)
            .map_err(other)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(other)?
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone(), self.ca_der.clone()], key)
        .map_err(other)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= 4096 {
            cache.clear();
        }
        cache.insert(host, config.clone());
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_made_once_its_key_is_private_and_leaves_chain_to_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = ensure(dir.path()).expect("ca");
        assert_eq!(ensure(dir.path()).expect("again"), first);
        let mode = |p: PathBuf| {
            std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(p).expect("meta").permissions(),
            ) & 0o777
        };
        assert_eq!(mode(key_path(dir.path())), 0o600);
        let auth = Authority::load(dir.path()).expect("load");
        let config = auth.server_config("API.Example.com").expect("leaf");
        assert!(Arc::ptr_eq(
            &config,
            &auth.server_config("api.example.com").expect("cached")
        ));
        // A client trusting only the CA file accepts the leaf for that name.
        let mut roots = rustls::RootCertStore::empty();
        let ca: CertificateDer<'static> =
            rustls::pki_types::pem::PemObject::from_pem_slice(first.as_bytes()).expect("pem");
        roots.add(ca).expect("root");
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("api.example.com").expect("name");
        let mut c = rustls::ClientConnection::new(Arc::new(client), name).expect("client");
        let mut s = rustls::ServerConnection::new(config).expect("server");
        let mut buf = Vec::new();
        for _ in 0..6 {
            buf.clear();
            while c.wants_write() {
                c.write_tls(&mut buf).expect("write");
            }
            let mut r = &buf[..];
            while !r.is_empty() {
                s.read_tls(&mut r).expect("read");
            }
            s.process_new_packets().expect("server accepts");
            buf.clear();
            while s.wants_write() {
                s.write_tls(&mut buf).expect("write");
            }
            let mut r = &buf[..];
            while !r.is_empty() {
                c.read_tls(&mut r).expect("read");
            }
            c.process_new_packets().expect("client verifies the chain");
        }
        assert!(!c.is_handshaking(), "handshake done");
    }
}
