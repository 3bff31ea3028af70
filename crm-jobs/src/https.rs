//! https for the jobs' GraphQL client and the alert webhook.
//!
//! surf is built without TLS: its own rustls client drags rustls 0.18 and ring 0.16, both under
//! RustSec advisories (see `CRATES.md`). So https URLs go through this [`surf::HttpClient`]: a
//! TCP connection (async-std, as surf's h1 client), rustls 0.23 on ring over it, and HTTP/1.1 by
//! async-h1 (the same codec surf's h1 client uses). The trusted roots are the system's plus an
//! optional private CA file (`CRM_CA_FILE`), set in `tls.rs` for both transports. Connecting and the handshake are each limited, so a
//! peer that accepts the connection and never answers the handshake fails the request with a
//! reason instead of holding the run; callers bound the whole exchange as before.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use async_std::net::TcpStream;
use futures_rustls::TlsConnector;
use rustls::pki_types::ServerName;
use surf::http::{Request, Response, StatusCode};

use crate::tls::{handshake_reason, within};

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
        Ok(Self {
            tls: TlsConnector::from(crate::tls::client_config(ca_file)?),
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
