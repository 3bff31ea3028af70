//! Which HTTP stack carries the GraphQL client's and the webhook's requests: each behind its
//! feature, so an app compiles only the runtime it runs on.

/// The HTTP stack of a [`GraphqlClient`](crate::GraphqlClient) or a
/// [`WebhookAlert`](crate::WebhookAlert). The variants present are those whose feature is on;
/// [`HttpTransport::default`] is surf when compiled in (the `crm` binary's), else tokio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpTransport {
    /// surf's HTTP/1.1 client on async-std's I/O (features `graphql-surf`, `webhook-surf`).
    #[cfg(feature = "https")]
    Surf,
    /// hyper's HTTP/1.1 on tokio's I/O (features `graphql-tokio`, `webhook-tokio`): requests
    /// must run inside a tokio runtime (one outside fails with that reason).
    #[cfg(feature = "tokio-http")]
    Tokio,
}

impl Default for HttpTransport {
    fn default() -> Self {
        #[cfg(feature = "https")]
        return Self::Surf;
        #[cfg(not(feature = "https"))]
        return Self::Tokio;
    }
}
