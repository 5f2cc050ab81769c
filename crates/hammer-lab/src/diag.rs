//! Provides the lab's view of a target's diagnostics listener over HTTP
//! ([`HttpDiagnostics`]): hammer-diag's or Go's net/http/pprof endpoints
//! for a CPU profile and a trace, and `/metrics` for the CPU the service
//! used; and the bounded [`get`] the CLI also uses for `/info`.

use std::time::Duration;

use hammer_core::diagnostics::metric_value;

use crate::{Diagnostics, LabError};

/// A diagnostics listener at a base URL such as `http://127.0.0.1:6060`.
#[derive(Debug, Clone)]
pub struct HttpDiagnostics {
    base: String,
}

impl HttpDiagnostics {
    /// The listener at `base` (a trailing `/` is ignored).
    pub fn new(base: &str) -> HttpDiagnostics {
        HttpDiagnostics {
            base: base.trim_end_matches('/').to_string(),
        }
    }
}

impl Diagnostics for HttpDiagnostics {
    fn cpu_profile(&self, seconds: u64, hz: u64) -> Result<Vec<u8>, LabError> {
        get(
            &format!(
                "{}/debug/pprof/profile?seconds={seconds}&hz={hz}",
                self.base
            ),
            Duration::from_secs(seconds + 10),
        )
    }

    fn trace(&self, seconds: u64) -> Result<Vec<u8>, LabError> {
        get(
            &format!("{}/debug/pprof/trace?seconds={seconds}", self.base),
            Duration::from_secs(seconds + 14),
        )
    }

    fn cpu_seconds(&self) -> Option<f64> {
        let text = get(&format!("{}/metrics", self.base), Duration::from_secs(5)).ok()?;
        metric_value(&String::from_utf8_lossy(&text), "process_cpu_seconds_total")
    }
}

/// A GET with a bound on the whole exchange; non-2xx is an error with the body's text.
pub fn get(url: &str, timeout: Duration) -> Result<Vec<u8>, LabError> {
    let fetch = |reason: String| LabError::Fetch {
        url: url.to_string(),
        reason,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
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
