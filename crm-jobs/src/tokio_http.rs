//! The tokio-native HTTP client of the GraphQL client and the alert webhook (features
//! `graphql-tokio`, `webhook-tokio`): HTTP/1.1 by hyper over tokio's TCP, and for `https://`
//! the same rustls configuration as surf's transport (`tls.rs`: the system's roots plus
//! `CRM_CA_FILE`) by tokio-rustls. A tokio app gets the jobs' HTTP without async-std or surf.
//!
//! One connection per request, plain or TLS: a job sends a handful of requests per run and an
//! alert is rare, so a pool would buy little, and a fresh connection never inherits an
//! unanswered exchange from a request that timed out. Connecting and the TLS handshake are each
//! limited; callers bound the whole exchange. The futures need tokio's reactor: a request made
//! outside a tokio runtime fails with that reason instead of panicking.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use url::Url;

use crate::tls::{handshake_reason, within};

/// POSTs over hyper on tokio. Cheap to clone.
#[derive(Clone)]
pub(crate) struct TokioHttp {
    /// Set for `https://` URLs.
    tls: Option<TlsConnector>,
    /// The limit on connecting, and again on the TLS handshake.
    timeout: Duration,
}

impl fmt::Debug for TokioHttp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioHttp")
            .field("tls", &self.tls.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl TokioHttp {
    /// A client for `url`'s scheme: TLS trusting the system's roots and `ca_file` for
    /// `https://`, plain TCP for `http://`.
    pub(crate) fn new(
        url: &Url,
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let tls = match url.scheme() {
            "https" => Some(TlsConnector::from(crate::tls::client_config(ca_file)?)),
            "http" => None,
            other => return Err(format!("{other}: not an http:// or https:// URL")),
        };
        Ok(Self { tls, timeout })
    }

    /// POSTs `body` to `url` with `headers` and reads the whole answer: its status and text.
    pub(crate) async fn post(
        &self,
        url: &Url,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(u16, String), String> {
        tokio::runtime::Handle::try_current()
            .map_err(|e| format!("the tokio HTTP transport needs a tokio runtime: {e}"))?;
        let host = url.host_str().ok_or("the URL has no host")?;
        let bare_host = host.trim_matches(['[', ']']);
        let port = url.port_or_known_default().unwrap_or(80);
        let mut request =
            hyper::Request::post(&url[url::Position::BeforePath..url::Position::AfterQuery])
                .header(
                    hyper::header::HOST,
                    &url[url::Position::BeforeHost..url::Position::AfterPort],
                );
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("cannot build the request: {e}"))?;

        let tcp = within(self.timeout, "no connection", async {
            TcpStream::connect((bare_host, port))
                .await
                .map_err(|e| e.to_string())
        })
        .await?;
        // hyper writes a request's head and body apart: do not let Nagle hold the body back.
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => exchange(tcp, request).await,
            Some(tls) => {
                let name = ServerName::try_from(bare_host.to_owned())
                    .map_err(|e| format!("'{host}' is not a TLS server name: {e}"))?;
                let stream = within(self.timeout, "no TLS handshake", async {
                    tls.connect(name, tcp)
                        .await
                        .map_err(|e| handshake_reason(&e, host))
                })
                .await?;
                exchange(stream, request).await
            }
        }
    }
}

/// Sends `request` over the connected `stream` and reads the whole answer, driving the
/// connection in the same future (no task spawned).
async fn exchange<S>(
    stream: S,
    request: hyper::Request<Full<Bytes>>,
) -> Result<(u16, String), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use futures::future::{Either, select};

    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| reason(&e))?;
    let answer = async {
        let response = sender.send_request(request).await.map_err(|e| reason(&e))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| reason(&e))?
            .to_bytes();
        let text = String::from_utf8(body.to_vec())
            .map_err(|_| "the answer is not UTF-8 text".to_owned())?;
        Ok((status, text))
    };
    futures::pin_mut!(answer, connection);
    match select(answer, connection).await {
        Either::Left((answer, _)) => answer,
        Either::Right((Err(e), _)) => Err(reason(&e)),
        // The server closed the connection: the answer, complete or not, is settled now.
        Either::Right((Ok(()), answer)) => answer.await,
    }
}

/// `error` and its causes on one line ("error sending request: connection reset").
fn reason(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
