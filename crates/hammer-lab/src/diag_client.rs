//! Provides the lab's view of a target's diagnostics listener over HTTP
//! ([`HttpDiagnostics`]): hammer-diag's or Go's net/http/pprof endpoints
//! for a CPU profile and a trace, and `/metrics` for the CPU the service
//! used; and the bounded [`get`] the CLI also uses for `/info`.

use std::sync::Arc;
use std::time::Duration;

use hammer_core::readings::metric_value;
use hammer_engine::tls::{root_certificates, TlsError, TlsOptions};
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

use crate::{Diagnostics, LabError};

/// How https:// URLs are trusted: the same roots (or `--insecure`) as the
/// engine's. Plain http:// ignores it.
#[derive(Debug, Clone, Default)]
pub struct Trust(Option<TlsConfig>);

impl Trust {
    /// Trust as the flags say: `--cacert`'s CAs or the system's, or anything
    /// with `--insecure`.
    pub fn new(options: &TlsOptions) -> Result<Trust, TlsError> {
        let roots = if options.insecure {
            Vec::new()
        } else {
            root_certificates(options.ca_file.as_deref())?
                .iter()
                .map(|der| Certificate::from_der(der).to_owned())
                .collect()
        };
        let config = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .root_certs(RootCerts::Specific(Arc::new(roots)))
            .disable_verification(options.insecure)
            .build();
        Ok(Trust(Some(config)))
    }
}

/// A diagnostics listener at a base URL such as `http://127.0.0.1:6060`.
#[derive(Debug, Clone)]
pub struct HttpDiagnostics {
    base: String,
    trust: Trust,
}

impl HttpDiagnostics {
    /// The listener at `base` (a trailing `/` is ignored), trusted as `trust` says over https.
    pub fn new(base: &str, trust: Trust) -> HttpDiagnostics {
        HttpDiagnostics {
            base: base.trim_end_matches('/').to_string(),
            trust,
        }
    }

    fn get(&self, path: &str, timeout: Duration) -> Result<Vec<u8>, LabError> {
        get(&format!("{}{path}", self.base), timeout, &self.trust)
    }
}

impl Diagnostics for HttpDiagnostics {
    fn cpu_profile(&self, seconds: u64, hz: u64) -> Result<Vec<u8>, LabError> {
        self.get(
            &format!("/debug/pprof/profile?seconds={seconds}&hz={hz}"),
            Duration::from_secs(seconds + 10),
        )
    }

    fn trace(&self, seconds: u64) -> Result<Vec<u8>, LabError> {
        self.get(
            &format!("/debug/pprof/trace?seconds={seconds}"),
            Duration::from_secs(seconds + 14),
        )
    }

    fn wall_profile(&self, seconds: u64) -> Result<Vec<u8>, LabError> {
        self.get(
            &format!("/debug/pprof/wall?seconds={seconds}&format=folded"),
            Duration::from_secs(seconds + 10),
        )
    }

    fn cpu_seconds(&self) -> Option<f64> {
        let text = self.get("/metrics", Duration::from_secs(5)).ok()?;
        metric_value(&String::from_utf8_lossy(&text), "process_cpu_seconds_total")
    }

    fn metrics(&self) -> Result<String, LabError> {
        let text = self.get("/metrics", Duration::from_secs(2))?;
        Ok(String::from_utf8_lossy(&text).into_owned())
    }
}

/// A GET with a bound on the whole exchange; non-2xx is an error with the body's text.
pub fn get(url: &str, timeout: Duration, trust: &Trust) -> Result<Vec<u8>, LabError> {
    let fetch = |reason: String| LabError::Fetch {
        url: url.to_string(),
        reason,
    };
    let mut config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false);
    if let Some(tls) = &trust.0 {
        config = config.tls_config(tls.clone());
    }
    let agent: ureq::Agent = config.build().into();
    let mut response = agent.get(url).call().map_err(|e| fetch(e.to_string()))?;
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(512 << 20)
        .read_to_vec()
        .map_err(|e| fetch(format!("reading the body: {e}")))?;
    if !status.is_success() {
        return Err(fetch(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body).trim()
        )));
    }
    Ok(body)
}
