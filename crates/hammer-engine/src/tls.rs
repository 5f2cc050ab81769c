//! Provides TLS for `https://` targets: the client configuration, built
//! once from the flags (trusted roots, `--insecure`, a client certificate,
//! ALPN, session resumption), and the blocking pre-flight handshake that
//! turns a bad certificate into one line before the run.
//!
//! rustls does the protocol without I/O of its own, so the worker's poll
//! loop drives it like a plain socket (the `conn` module). The crypto is
//! *ring*'s: the same assembly for AES-GCM and ChaCha20 as aws-lc-rs, a
//! fraction of the build (no C++ toolchain, no cmake). Roots come from the
//! system store (rustls-native-certs), as curl's do: a team's private CA
//! installed on the machine is trusted, which webpki-roots' fixed Mozilla
//! list would not do. `--cacert FILE` replaces the store, as it does in curl.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// What the user asked of TLS.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Accept any server certificate (`--insecure`).
    pub insecure: bool,
    /// Trust only the CA certificates in this PEM file (`--cacert`).
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain, PEM (`--client-cert`).
    pub client_cert: Option<PathBuf>,
    /// Its private key, PEM (`--client-key`).
    pub client_key: Option<PathBuf>,
    /// Do not resume sessions: every connection makes a full handshake.
    pub no_resume: bool,
    /// Protocols offered by ALPN, most preferred first (e.g. `http/1.1`).
    pub alpn: Vec<Vec<u8>>,
    /// The server must choose one of them (HTTP/2 has no fallback); HTTP/1.1
    /// goes on with a server that ignores ALPN.
    pub alpn_required: bool,
}

/// Why TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {why}")]
    Read {
        /// The file.
        path: String,
        /// The reader's complaint.
        why: String,
    },
    /// A certificate file held no certificate.
    #[error("{0} holds no PEM certificate")]
    NoCertificate(String),
    /// Only one of `--client-cert` and `--client-key`.
    #[error("--client-cert and --client-key go together")]
    HalfClientAuth,
    /// No root to check the server against.
    #[error("no trusted CA certificates in the system store{0}: use --cacert FILE, or --insecure")]
    NoRoots(String),
    /// rustls refused the configuration (a key that does not fit its certificate).
    #[error("TLS configuration: {0}")]
    Config(String),
    /// The host is not a valid TLS server name.
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    /// The pre-flight handshake failed.
    #[error("TLS handshake with {addr} failed: {why}")]
    Handshake {
        /// Where.
        addr: SocketAddr,
        /// What went wrong, with a hint where there is one.
        why: String,
    },
    /// The server did not agree to the protocol hammer must speak.
    #[error("the server at {addr} did not agree to {wanted} by ALPN (it chose {chose})")]
    Alpn {
        /// Where.
        addr: SocketAddr,
        /// What hammer offered.
        wanted: String,
        /// What the server chose, or "nothing".
        chose: String,
    },
}

/// A TLS client set-up shared by every connection of a run.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    alpn_required: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("name", &self.name).finish()
    }
}

/// What the pre-flight handshake agreed.
#[derive(Debug, Clone)]
pub struct Agreed {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    /// The cipher suite.
    pub suite: String,
    /// The protocol chosen by ALPN, if any.
    pub alpn: Option<String>,
    /// How long the handshake took (TCP connect not included).
    pub handshake: Duration,
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.display().to_string(),
        why: e.to_string(),
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Read {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.display().to_string()));
    }
    Ok(certs)
}

/// The CA certificates a server is checked against: those of `ca_file`
/// (`--cacert`), else the system store's. For other HTTP clients of the same
/// run (the lab's diagnostics fetches) to trust what the engine trusts.
pub fn root_certificates(ca_file: Option<&Path>) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    if let Some(path) = ca_file {
        return certificates(path);
    }
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why = found
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(TlsError::NoRoots(why));
    }
    Ok(found.certs)
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(root_certificates(ca_file)?);
    if added == 0 {
        return Err(match ca_file {
            Some(path) => TlsError::NoCertificate(path.display().to_string()),
            None => TlsError::NoRoots(" (none parsed)".into()),
        });
    }
    Ok(roots)
}

impl Tls {
    /// Builds the client set-up for `host` (the URL's host: SNI and the name
    /// the certificate must carry).
    pub fn new(host: &str, options: &TlsOptions) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = if options.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        } else {
            builder.with_root_certificates(roots(options.ca_file.as_deref())?)
        };
        let mut config = match (&options.client_cert, &options.client_key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = certificates(cert)?;
                let key =
                    PrivateKeyDer::from_pem_slice(&read_pem(key)?).map_err(|e| TlsError::Read {
                        path: key.display().to_string(),
                        why: e.to_string(),
                    })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsError::Config(e.to_string()))?
            }
            _ => return Err(TlsError::HalfClientAuth),
        };
        config.alpn_protocols = options.alpn.clone();
        if options.no_resume {
            config.resumption = Resumption::disabled();
        }
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
            .map_err(|_| TlsError::ServerName(host.into()))?;
        Ok(Tls {
            config: Arc::new(config),
            name,
            alpn_required: options.alpn_required,
        })
    }

    /// A new client session for one connection.
    pub(crate) fn session(&self) -> io::Result<ClientConnection> {
        ClientConnection::new(self.config.clone(), self.name.clone()).map_err(io::Error::other)
    }

    /// Connects and handshakes once, blocking, so that a certificate the
    /// run would reject is one clear error before the run. Fails when ALPN
    /// was offered and the server chose none of it.
    pub fn preflight(&self, addr: SocketAddr, timeout: Duration) -> Result<Agreed, TlsError> {
        let failed = |why: String| TlsError::Handshake { addr, why };
        let mut tcp = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| failed(format!("cannot connect: {e} (is the service running?)")))?;
        tcp.set_read_timeout(Some(timeout)).ok();
        tcp.set_write_timeout(Some(timeout)).ok();
        let mut session = self.session().map_err(|e| failed(e.to_string()))?;
        let start = Instant::now();
        while session.is_handshaking() {
            if let Err(e) = session.complete_io(&mut tcp) {
                return Err(failed(explain(&e)));
            }
        }
        let handshake = start.elapsed();
        if session.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
            // A TLS 1.3 client is done before the server has checked its
            // Finished (and its certificate): a refusal comes as an alert
            // after. Wait briefly for it, or for the session tickets that
            // say the server accepted.
            await_verdict(&mut session, &mut tcp).map_err(|e| failed(explain(&e)))?;
        }
        let chose = session
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        if self.alpn_required && chose.is_none() {
            let wanted = self
                .config
                .alpn_protocols
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect::<Vec<_>>()
                .join(" or ");
            return Err(TlsError::Alpn {
                addr,
                wanted,
                chose: "nothing".into(),
            });
        }
        let agreed = Agreed {
            version: session
                .protocol_version()
                .and_then(|v| v.as_str())
                .unwrap_or("TLS")
                .replace('_', "."),
            suite: session
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .unwrap_or("?")
                .into(),
            alpn: chose,
            handshake,
        };
        session.send_close_notify();
        let _ = session.write_tls(&mut tcp);
        let _ = tcp.flush();
        let mut rest = [0u8; 512];
        let _ = tcp.set_read_timeout(Some(Duration::from_millis(1)));
        let _ = tcp.read(&mut rest);
        Ok(agreed)
    }
}

/// How long the pre-flight waits for a TLS 1.3 server's verdict.
const VERDICT_WAIT: Duration = Duration::from_millis(250);

/// Reads what a TLS 1.3 server sends right after the handshake: an alert
/// (an error) or session tickets (accepted). Silence is taken as accepted.
fn await_verdict(session: &mut ClientConnection, tcp: &mut TcpStream) -> io::Result<()> {
    let closed = || io::Error::other("the server closed the connection after the handshake");
    tcp.set_read_timeout(Some(VERDICT_WAIT))?;
    match session.read_tls(tcp) {
        Ok(0) => return Err(closed()),
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            return Ok(())
        }
        Err(e) => return Err(e),
    }
    let state = session.process_new_packets().map_err(io::Error::other)?;
    if state.peer_has_closed() {
        return Err(closed());
    }
    Ok(())
}

/// One line for a failed handshake, with the fix where there is one.
fn explain(e: &io::Error) -> String {
    let text = e.to_string();
    let hint = if text.contains("UnknownIssuer") {
        " (the server's certificate is not signed by a trusted CA: give its CA with --cacert FILE, or use --insecure)"
    } else if text.contains("NotValidForName") {
        " (the certificate does not name this host: connect by the name it carries, or use --insecure)"
    } else if text.contains("CaUsedAsEndEntity") {
        " (the server presents a CA certificate as its own, as `openssl req -x509` makes; sign a server certificate with that CA, or use --insecure)"
    } else if text.contains("Expired") {
        " (the server's certificate has expired; --insecure skips the check)"
    } else if text.contains("CertificateRequired") || text.contains("HandshakeFailure") {
        " (the server may require a client certificate: --client-cert FILE --client-key FILE)"
    } else if text.contains("NoApplicationProtocol") {
        " (the server speaks none of the protocols offered: with --http2, it does not speak HTTP/2 over TLS (ALPN h2); --http2=auto falls back to HTTP/1.1)"
    } else if text.contains("InvalidContentType") || text.contains("corrupt message") {
        " (is the port speaking plain HTTP? then use http://)"
    } else {
        ""
    };
    format!("{text}{hint}")
}

/// `--insecure`: any certificate is accepted, but the handshake signatures
/// are still checked, so the session is still encrypted to the key the
/// server presented.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
