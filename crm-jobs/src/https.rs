//! https for the jobs' GraphQL client and the alert webhook.
//!
//! surf is built without TLS: its own rustls client drags rustls 0.18 and ring 0.16, both under
//! RustSec advisories (see `CRATES.md`). So https URLs go through this [`surf::HttpClient`]: a
//! TCP connection (async-std, as surf's h1 client), rustls 0.23 on ring over it, and HTTP/1.1 by
//! async-h1 (the same codec surf's h1 client uses). The trusted roots are the system's plus an
//! optional private CA file (`CRM_CA_FILE`). Connecting and the handshake are each limited, so a
//! peer that accepts the connection and never answers the handshake fails the request with a
//! reason instead of holding the run; callers bound the whole exchange as before.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_std::net::TcpStream;
use futures_rustls::TlsConnector;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use surf::http::{Request, Response, StatusCode};

/// A surf client for `url`: this module's https client when the URL is `https://`, else surf's
/// own pooled HTTP/1.1 client (`plain`).
pub(crate) fn client_for(
    url: &surf::Url,
    ca_file: Option<&Path>,
    timeout: Duration,
    plain: impl FnOnce() -> Result<surf::Client, String>,
) -> Result<surf::Client, String> {
    if url.scheme() == "https" {
        Ok(surf::Client::with_http_client(HttpsClient::new(
            ca_file, timeout,
        )?))
    } else {
        plain()
    }
}

/// HTTP/1.1 over rustls, one connection per request (https endpoints here are a job's few
/// requests per run and an alert now and then: no pool is worth its code).
#[derive(Clone)]
pub(crate) struct HttpsClient {
    tls: TlsConnector,
    /// The limit on connecting, and again on the TLS handshake.
    timeout: Duration,
}

impl fmt::Debug for HttpsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpsClient {
    /// Trusts the system's roots and, if given, every certificate in the PEM file `ca_file`.
    pub(crate) fn new(ca_file: Option<&Path>, timeout: Duration) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        // Unreadable system stores are skipped: a private CA alone may be all that is needed.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if let Some(path) = ca_file {
            let shown = path.display();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("CRM_CA_FILE: cannot read {shown}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("CRM_CA_FILE: no PEM certificate in {shown}"));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("CRM_CA_FILE: a certificate in {shown}: {e}"))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            tls: TlsConnector::from(Arc::new(config)),
            timeout,
        })
    }

    async fn exchange(&self, request: Request) -> Result<Response, String> {
        let url = request.url().clone();
        if url.scheme() != "https" {
            return Err(format!("{}: not an https URL", url.scheme()));
        }
        let host = url.host_str().ok_or("the URL has no host")?;
        let port = url.port_or_known_default().unwrap_or(443);
        let tcp = within(self.timeout, "no connection", async {
            TcpStream::connect((host.trim_matches(['[', ']']), port))
                .await
                .map_err(|e| e.to_string())
        })
        .await?;
        // The client writes a request's head and body apart: do not let Nagle hold the body.
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
            .map_err(|e| format!("'{host}' is not a TLS server name: {e}"))?;
        let tls = within(self.timeout, "no TLS handshake", async {
            self.tls
                .connect(name, tcp)
                .await
                .map_err(|e| handshake_reason(&e, host))
        })
        .await?;
        async_h1::connect(tls, request)
            .await
            .map_err(|e| e.to_string())
    }
}

#[async_trait::async_trait]
impl surf::HttpClient for HttpsClient {
    async fn send(&self, request: Request) -> Result<Response, surf::Error> {
        self.exchange(request)
            .await
            .map_err(|reason| surf::Error::from_str(StatusCode::BadGateway, reason))
    }
}

/// `work`'s outcome, or "`what` within `limit`" when it takes longer.
async fn within<T>(
    limit: Duration,
    what: &str,
    work: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let timeout = async {
        async_io::Timer::after(limit).await;
        Err(format!("{what} within {limit:?}"))
    };
    futures::pin_mut!(work, timeout);
    futures::future::select(work, timeout)
        .await
        .factor_first()
        .0
}

/// One line saying why the handshake failed: an untrusted or misnamed certificate by name.
fn handshake_reason(error: &std::io::Error, host: &str) -> String {
    let tls = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidCertificate(certificate)) => match certificate {
            CertificateError::UnknownIssuer => "certificate not trusted (UnknownIssuer)".to_owned(),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("certificate not valid for the host name {host} (NotValidForName)")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate expired (Expired)".to_owned()
            }
            other => format!("certificate refused ({other:?})"),
        },
        Some(other) => format!("TLS handshake failed: {other}"),
        None => format!("TLS handshake failed: {error}"),
    }
}
