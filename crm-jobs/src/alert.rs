//! What the runner tells people when a job keeps failing, and when it recovers.
//!
//! The runner calls the [`AlertHook`] once per incident: when a job's consecutive failures
//! reach its `failures_before_alert`, and once more when it next succeeds; and, from
//! [`crate::Runner::check_schedules`], when a job is late or missed a tick, and once more when
//! it is back on schedule. Two hooks come ready:
//! [`LogAlert`] (a `tracing` event) and [`WebhookAlert`] (a JSON POST, retried, with a timeout).

use std::fmt;
#[cfg(any(feature = "webhook-surf", feature = "webhook-tokio"))]
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Something worth telling a human about a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Alert {
    /// The job failed this many times in a row (its threshold was just reached).
    Failing {
        /// The job's code.
        code: String,
        /// Consecutive failures so far.
        consecutive_failures: u32,
        /// The latest failure's message.
        message: String,
        /// The tick of the latest failed run.
        tick: DateTime<Utc>,
        /// The host that ran it.
        host: String,
    },
    /// The job succeeded again after an alerted run of failures.
    Recovered {
        /// The job's code.
        code: String,
        /// How many failures in a row came before this success.
        after_failures: u32,
        /// The tick of the successful run.
        tick: DateTime<Utc>,
        /// The host that ran it.
        host: String,
    },
    /// The job's latest tick is due and has not started within the grace period.
    Late {
        /// The job's code.
        code: String,
        /// The tick that has not started.
        tick: DateTime<Utc>,
        /// The tick after it.
        next_run: Option<DateTime<Utc>>,
    },
    /// A tick of the job passed with no run (or was skipped).
    Missed {
        /// The job's code.
        code: String,
        /// The tick that got no run.
        tick: DateTime<Utc>,
        /// The next tick.
        next_run: Option<DateTime<Utc>>,
    },
    /// The job, late or missing ticks before, runs on schedule again.
    BackOnSchedule {
        /// The job's code.
        code: String,
        /// What the incident was: `late` or `missed`.
        was: String,
        /// The tick the incident was about.
        tick: DateTime<Utc>,
        /// When the incident was first seen.
        since: DateTime<Utc>,
    },
}

impl Alert {
    /// The job the alert is about.
    pub fn code(&self) -> &str {
        match self {
            Self::Failing { code, .. }
            | Self::Recovered { code, .. }
            | Self::Late { code, .. }
            | Self::Missed { code, .. }
            | Self::BackOnSchedule { code, .. } => code,
        }
    }
}

/// Why an alert could not be delivered. The runner logs it; the run's record is unaffected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AlertError {
    /// The webhook URL could not be parsed.
    #[error("invalid webhook URL: {0}")]
    InvalidUrl(String),
    /// The private CA file for an https webhook cannot be read or holds no certificate.
    #[error("{0}")]
    CaFile(String),
    /// The webhook could not be reached, or answered with an error status, on every attempt.
    #[error("webhook delivery failed after {attempts} attempts: {reason}")]
    Webhook {
        /// How many times it was tried.
        attempts: u32,
        /// The last attempt's error.
        reason: String,
    },
}

/// Receives alerts. Object-safe: the runner holds `Arc<dyn AlertHook>`.
#[async_trait]
pub trait AlertHook: Send + Sync + fmt::Debug {
    /// Delivers one alert.
    async fn alert(&self, alert: &Alert) -> Result<(), AlertError>;
}

/// Alerts as `tracing` events: an error for a failing job, info for a recovery.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAlert;

#[async_trait]
impl AlertHook for LogAlert {
    async fn alert(&self, alert: &Alert) -> Result<(), AlertError> {
        match alert {
            Alert::Failing {
                code,
                consecutive_failures,
                message,
                ..
            } => tracing::error!(
                job.code = %code,
                consecutive_failures,
                // A job's message may quote customers' addresses: not in the service's log.
                error = %crate::redact::redact_emails(message),
                "Job keeps failing"
            ),
            Alert::Recovered {
                code,
                after_failures,
                ..
            } => tracing::info!(job.code = %code, after_failures, "Job recovered"),
            Alert::Late { code, tick, .. } => {
                tracing::warn!(job.code = %code, %tick, "Job is late: its due run has not started")
            }
            Alert::Missed { code, tick, .. } => {
                tracing::error!(job.code = %code, %tick, "Job missed a run")
            }
            Alert::BackOnSchedule { code, was, .. } => {
                tracing::info!(job.code = %code, was = %was, "Job is back on schedule")
            }
        }
        Ok(())
    }
}

/// Alerts POSTed as JSON (feature `webhook-surf`, or `webhook-tokio` for tokio's I/O; the [`Alert`] with an `event` field of `failing`, `recovered`, `late`,
/// `missed` or `back_on_schedule`) to a
/// webhook, tried `attempts` times with a pause between tries, each with a timeout.
#[cfg(any(feature = "webhook-surf", feature = "webhook-tokio"))]
#[derive(Clone)]
pub struct WebhookAlert {
    url: url::Url,
    /// The HTTP stack that carries the POSTs.
    transport: crate::HttpTransport,
    /// A private CA trusted besides the system's roots for an `https://` webhook.
    ca_file: Option<std::path::PathBuf>,
    attempts: u32,
    timeout: Duration,
    pause: Duration,
}

#[cfg(any(feature = "webhook-surf", feature = "webhook-tokio"))]
impl fmt::Debug for WebhookAlert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a token in its path or query: show only where it goes.
        f.debug_struct("WebhookAlert")
            .field("host", &self.url.host_str())
            .field("transport", &self.transport)
            .field("attempts", &self.attempts)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[cfg(any(feature = "webhook-surf", feature = "webhook-tokio"))]
impl WebhookAlert {
    /// A webhook at `url` (http or https), tried 3 times, 10 seconds each, 1 second apart,
    /// over the default [`HttpTransport`](crate::HttpTransport).
    pub fn new(url: &str) -> Result<Self, AlertError> {
        let url = url::Url::parse(url).map_err(|e| AlertError::InvalidUrl(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(AlertError::InvalidUrl(format!(
                "scheme '{}' is not http or https",
                url.scheme()
            )));
        }
        Ok(Self {
            url,
            transport: crate::HttpTransport::default(),
            ca_file: None,
            attempts: 3,
            timeout: Duration::from_secs(10),
            pause: Duration::from_secs(1),
        })
    }

    /// Trusts the CA certificates in the PEM file `file` (`CRM_CA_FILE`) besides the system's
    /// roots for an `https://` webhook. The file is read now, so a bad one is refused at start
    /// rather than failing every alert later (it is read again for each alert: a renewed CA
    /// needs no restart).
    pub fn ca_file(mut self, file: Option<std::path::PathBuf>) -> Result<Self, AlertError> {
        if self.url.scheme() == "https" {
            crate::tls::client_config(file.as_deref()).map_err(AlertError::CaFile)?;
        }
        self.ca_file = file;
        Ok(self)
    }

    /// Sets the HTTP stack that carries the POSTs (e.g. [`HttpTransport::Tokio`] in a tokio
    /// app that has both webhook features on).
    ///
    /// [`HttpTransport::Tokio`]: crate::HttpTransport
    pub fn transport(mut self, transport: crate::HttpTransport) -> Self {
        self.transport = transport;
        self
    }

    /// Sets how many times delivery is tried (at least once).
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Sets the timeout of each attempt.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the pause between attempts.
    pub fn pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }

    async fn try_once(&self, alert: &Alert) -> Result<(), String> {
        let timeout = async {
            async_io::Timer::after(self.timeout).await;
            Err(format!("no answer within {:?}", self.timeout))
        };
        let send = self.send(alert);
        futures::pin_mut!(send, timeout);
        futures::future::select(send, timeout)
            .await
            .factor_first()
            .0
    }

    /// One POST, not time-limited (the caller limits it). A fresh client (and connection) per
    /// attempt: a pooled connection whose last request timed out may still carry that
    /// request's unanswered exchange.
    async fn send(&self, alert: &Alert) -> Result<(), String> {
        match self.transport {
            #[cfg(feature = "https")]
            crate::HttpTransport::Surf => {
                let client = crate::https::client_for(
                    &self.url,
                    self.ca_file.as_deref(),
                    self.timeout,
                    || Ok(surf::Client::new()),
                )?;
                let response = client
                    .post(self.url.as_str())
                    .body_json(alert)
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("the webhook answered {}", response.status()))
                }
            }
            #[cfg(feature = "tokio-http")]
            crate::HttpTransport::Tokio => {
                let http = crate::tokio_http::TokioHttp::new(
                    &self.url,
                    self.ca_file.as_deref(),
                    self.timeout,
                )?;
                let body = serde_json::to_vec(alert).map_err(|e| e.to_string())?;
                let (status, _) = http
                    .post(&self.url, &[("Content-Type", "application/json")], body)
                    .await?;
                if (200..300).contains(&status) {
                    Ok(())
                } else {
                    Err(format!("the webhook answered {status}"))
                }
            }
        }
    }
}

#[cfg(any(feature = "webhook-surf", feature = "webhook-tokio"))]
#[async_trait]
impl AlertHook for WebhookAlert {
    async fn alert(&self, alert: &Alert) -> Result<(), AlertError> {
        let mut reason = String::new();
        for attempt in 1..=self.attempts {
            match self.try_once(alert).await {
                Ok(()) => return Ok(()),
                Err(e) => reason = e,
            }
            if attempt < self.attempts {
                async_io::Timer::after(self.pause).await;
            }
        }
        Err(AlertError::Webhook {
            attempts: self.attempts,
            reason,
        })
    }
}

/// Several hooks at once (e.g. the log and a webhook), each told every alert in turn; delivery
/// fails if any hook failed, after all were tried.
#[derive(Debug, Clone, Default)]
pub struct AlertHooks(pub Vec<std::sync::Arc<dyn AlertHook>>);

#[async_trait]
impl AlertHook for AlertHooks {
    async fn alert(&self, alert: &Alert) -> Result<(), AlertError> {
        let mut result = Ok(());
        for hook in &self.0 {
            if let Err(e) = hook.alert(alert).await {
                result = Err(e);
            }
        }
        result
    }
}
