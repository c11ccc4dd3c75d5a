//! Test certificates, made with rcgen: a CA, a broker certificate for `127.0.0.1` and
//! `localhost`, and a client certificate for mutual TLS, all written as PEM files.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// PEM files of one test PKI.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate (`KAFKA_SSL_CA_LOCATION`, kafka-python's `ssl_cafile`).
    pub ca: PathBuf,
    /// The broker certificate, valid for `127.0.0.1` and `localhost`, signed by the CA.
    pub server_cert: PathBuf,
    /// The broker certificate's private key.
    pub server_key: PathBuf,
    /// A client certificate signed by the CA (`KAFKA_SSL_CERTIFICATE_LOCATION`).
    pub client_cert: PathBuf,
    /// The client certificate's private key (`KAFKA_SSL_KEY_LOCATION`).
    pub client_key: PathBuf,
}

fn write(dir: &Path, name: &str, pem: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, pem).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

impl Pki {
    /// Generates a fresh CA and certificates into `dir` (created if missing).
    pub fn generate(dir: &Path, name: &str) -> anyhow::Result<Pki> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let mut server = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])?;
        server
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server_cert = server.signed_by(&server_key, &issuer)?;

        let mut client = CertificateParams::new(Vec::<String>::new())?;
        client.distinguished_name.push(DnType::CommonName, "oa");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate()?;
        let client_cert = client.signed_by(&client_key, &issuer)?;

        Ok(Pki {
            ca: write(dir, "ca.pem", &ca_cert.pem())?,
            server_cert: write(dir, "server.pem", &server_cert.pem())?,
            server_key: write(dir, "server.key", &server_key.serialize_pem())?,
            client_cert: write(dir, "client.pem", &client_cert.pem())?,
            client_key: write(dir, "client.key", &client_key.serialize_pem())?,
        })
    }
}
