//! A throwaway PKI for TLS tests: a CA, a server certificate for
//! `localhost` and 127.0.0.1 signed by it, and a client certificate for
//! mutual TLS, written as PEM files for hammer's flags.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// The certificates and where their PEM files are.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    server: (CertificateDer<'static>, PrivatePkcs8KeyDer<'static>),
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "hammer test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();

        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(vec!["hammer client".into()]).unwrap();
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = client_params.signed_by(&client_key, &ca).unwrap();

        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", ca.pem());
        write("client.pem", client.pem());
        write("client.key", client_key.serialize_pem());
        Pki {
            ca: ca.der().clone(),
            server: (
                server.der().clone(),
                PrivatePkcs8KeyDer::from(server_key.serialize_der()),
            ),
            dir,
        }
    }

    /// The CA certificate's PEM file, for `--cacert`.
    pub fn ca_file(&self) -> String {
        self.path("ca.pem")
    }

    /// The client certificate and key files, for `--client-cert/--client-key`.
    pub fn client_files(&self) -> (String, String) {
        (self.path("client.pem"), self.path("client.key"))
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// A server configuration offering `alpn`; with `mtls`, it requires a
    /// client certificate signed by the CA.
    pub fn server_config(&self, alpn: &[&[u8]], mtls: bool) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if mtls {
            let mut roots = RootCertStore::empty();
            roots.add(self.ca.clone()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let (cert, key) = &self.server;
        let mut config = builder
            .with_single_cert(vec![cert.clone()], PrivateKeyDer::Pkcs8(key.clone_key()))
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}
