//! The jobs' GraphQL client: typed operations (cynic) over HTTP (surf on async-std, or hyper on
//! tokio: [`HttpTransport`]), one error type.
//!
//! Four of the five jobs talk to the CRM through its GraphQL endpoint, as the original's did,
//! never through the database. Everything that can go wrong between asking and getting an
//! answer (no connection, a timeout, an HTTP error status, GraphQL errors, an unreadable body)
//! comes back as one [`GraphqlError`], whose text is the "reason" the heartbeat logs.
//!
//! The HTTP stack stays inside this module and the transport modules: the rest of the crate
//! sees plain async methods.

mod queries;

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use cynic::{GraphQlResponse, MutationBuilder, Operation, QueryBuilder};
use futures::stream::{BoxStream, StreamExt as _, TryStreamExt as _};
use serde::de::DeserializeOwned;

use crate::HttpTransport;
use crate::config::JobsConfig;
use crate::crm_access::{
    CrmAccess, OrderPages, OrderToRemind, ProductStockLevel, ReportTotals, RestockOutcome,
};
use crate::job::JobError;

/// Most pages followed in one listing: a guard against a server that never says "last page".
const MAX_PAGES: usize = 10_000;
/// How much of an unexpected answer body an error message quotes.
const QUOTED_BODY_CHARS: usize = 200;

/// Why a GraphQL request failed. The text reads on its own, on one line, and never holds the
/// token or a password from the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphqlError {
    /// The client could not be set up (a URL or token that HTTP cannot carry).
    #[error("invalid GraphQL client configuration: {0}")]
    Config(String),
    /// The endpoint could not be reached: connection refused or reset, unknown host.
    #[error("cannot reach {url}: {message}")]
    Transport {
        /// The endpoint, password redacted.
        url: String,
        /// What the network layer said.
        message: String,
    },
    /// No complete answer arrived within the configured timeout.
    #[error("no answer from {url} within {timeout:?}")]
    Timeout {
        /// The endpoint, password redacted.
        url: String,
        /// The limit that passed.
        timeout: Duration,
    },
    /// The endpoint answered with an HTTP error status.
    #[error("HTTP {status} from {url}: {detail}")]
    Http {
        /// The endpoint, password redacted.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The GraphQL error messages of the body if it had any, else the start of the body.
        detail: String,
    },
    /// The endpoint executed the operation and reported errors (the first one is usually the
    /// cause: a refused token, a failed validation).
    #[error("GraphQL error: {}", messages.join("; "))]
    Graphql {
        /// Each error's message, in order.
        messages: Vec<String>,
    },
    /// The answer was not the JSON the operation expects.
    #[error("invalid answer from {url}: {message}")]
    InvalidResponse {
        /// The endpoint, password redacted.
        url: String,
        /// What was wrong with it.
        message: String,
    },
}

impl From<GraphqlError> for JobError {
    fn from(error: GraphqlError) -> Self {
        JobError::Endpoint(error.to_string())
    }
}

/// A client of the CRM's GraphQL endpoint. Cheap to clone (surf's connections are pooled and
/// shared; the tokio transport opens one per request).
#[derive(Clone)]
pub struct GraphqlClient {
    http: Http,
    url: url::Url,
    shown_url: String,
    authorization: Option<String>,
    timeout: Duration,
}

/// The HTTP stack a client was built with.
#[derive(Clone)]
enum Http {
    #[cfg(feature = "https")]
    Surf(surf::Client),
    #[cfg(feature = "tokio-http")]
    Tokio(crate::tokio_http::TokioHttp),
}

impl Http {
    fn transport(&self) -> HttpTransport {
        match self {
            #[cfg(feature = "https")]
            Self::Surf(_) => HttpTransport::Surf,
            #[cfg(feature = "tokio-http")]
            Self::Tokio(_) => HttpTransport::Tokio,
        }
    }
}

impl fmt::Debug for GraphqlClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphqlClient")
            .field("url", &self.shown_url)
            .field("transport", &self.http.transport())
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "Bearer <redacted>"),
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl GraphqlClient {
    /// A client of `config.graphql_url`, sending `config.api_token` as a bearer token, each
    /// request limited to `config.graphql_timeout`, over the default [`HttpTransport`].
    /// An `https://` URL's certificate must chain to the system's roots or to
    /// `config.ca_file`.
    pub fn new(config: &JobsConfig) -> Result<Self, GraphqlError> {
        Self::with_transport(config, HttpTransport::default())
    }

    /// The same client as [`GraphqlClient::new`], its requests carried by `transport` (e.g.
    /// `HttpTransport::Tokio` in a tokio app that has both features on).
    pub fn with_transport(
        config: &JobsConfig,
        transport: HttpTransport,
    ) -> Result<Self, GraphqlError> {
        Self::build(
            transport,
            &config.graphql_url,
            config.api_token.as_deref(),
            config.graphql_timeout,
            config.ca_file.as_deref(),
        )
    }

    /// A client of `url` (`http://` or `https://`, trusting the system's roots), sending
    /// `token` (if any) as `Authorization: Bearer <token>`, each request (connection to last
    /// byte) limited to `timeout`, over the default [`HttpTransport`].
    pub fn with_endpoint(
        url: &str,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, GraphqlError> {
        Self::build(HttpTransport::default(), url, token, timeout, None)
    }

    fn build(
        transport: HttpTransport,
        url: &str,
        token: Option<&str>,
        timeout: Duration,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, GraphqlError> {
        let shown_url = crm_core::redact_password(url);
        let parsed = url::Url::parse(url)
            .map_err(|e| GraphqlError::Config(format!("'{shown_url}' is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
            return Err(GraphqlError::Config(format!(
                "'{shown_url}' is not an http:// or https:// URL"
            )));
        }
        let authorization = match token {
            None => None,
            Some(token) if is_header_safe(token) => Some(format!("Bearer {token}")),
            Some(_) => {
                return Err(GraphqlError::Config(
                    "the API token must be printable ASCII without spaces".to_owned(),
                ));
            }
        };
        // The timeout is applied around the whole exchange in `execute` (connection, request,
        // whole answer), not by the HTTP stack, whose own timeout would race it with a vaguer
        // error.
        let http = match transport {
            // TCP_NODELAY: the client writes a request's head and body separately, and on a
            // kept-alive connection Nagle's algorithm would hold the body back until the
            // server's delayed ACK (40 ms on Linux) for every request after the first.
            #[cfg(feature = "https")]
            HttpTransport::Surf => Http::Surf(
                crate::https::client_for(&parsed, ca_file, timeout, || {
                    surf::Config::new()
                        .set_timeout(None)
                        .set_tcp_no_delay(true)
                        .try_into()
                        .map_err(|e| format!("cannot set up HTTP: {e:?}"))
                })
                .map_err(GraphqlError::Config)?,
            ),
            #[cfg(feature = "tokio-http")]
            HttpTransport::Tokio => Http::Tokio(
                crate::tokio_http::TokioHttp::new(&parsed, ca_file, timeout)
                    .map_err(GraphqlError::Config)?,
            ),
        };
        Ok(Self {
            http,
            url: parsed,
            shown_url,
            authorization,
            timeout,
        })
    }

    /// The HTTP stack that carries the requests.
    pub fn transport(&self) -> HttpTransport {
        self.http.transport()
    }

    /// The endpoint, with any password in it redacted.
    pub fn url(&self) -> &str {
        &self.shown_url
    }

    /// Asks `{ hello }` and returns the greeting: proof that the endpoint executes queries.
    pub async fn hello(&self) -> Result<String, GraphqlError> {
        let data = self.execute(queries::Hello::build(())).await?;
        Ok(data.hello)
    }

    /// Every order dated in `[from, to]` with its customer's e-mail, oldest first and then by
    /// id, one page of the `allOrders` connection at a time.
    ///
    /// The pages are sorted by `orderDate` (the server breaks ties by id) and follow the
    /// server's keyset cursors, so the server seeks to each page in its order-date index and
    /// the pages come in the order the log wants: nothing is collected, sorted or deduplicated
    /// here, and memory holds one page whatever the week's size. No `first`: the server's own
    /// page size, its largest (`CRM_MAX_PAGE_SIZE`), whatever it is set to.
    pub fn order_pages_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> BoxStream<'_, Result<Vec<OrderToRemind>, GraphqlError>> {
        // The state is the cursor to continue after and the pages read so far; `None` once
        // the last page was read.
        let start: Option<(Option<String>, usize)> = Some((None, 0));
        futures::stream::try_unfold(start, move |state| async move {
            let Some((after, pages)) = state else {
                return Ok::<_, GraphqlError>(None);
            };
            if pages == MAX_PAGES {
                return Err(self.too_many_pages());
            }
            let page = self
                .execute(queries::OrdersBetween::build(
                    queries::OrdersBetweenVariables {
                        from: Some(from),
                        to: Some(to),
                        first: None,
                        after: after.clone(),
                    },
                ))
                .await?
                .all_orders;
            let orders = page
                .edges
                .into_iter()
                .map(|edge| {
                    OrderToRemind::new(
                        readable_id(edge.node.id.inner()),
                        edge.node.customer.email,
                        edge.node.order_date,
                    )
                })
                .collect();
            let next = self
                .next_cursor(page.page_info, &after)?
                .map(|cursor| (Some(cursor), pages + 1));
            Ok(Some((orders, next)))
        })
        .boxed()
    }

    /// Every order dated in `[from, to]`, as [`order_pages_between`](Self::order_pages_between)
    /// gives them, in one list.
    pub async fn orders_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<OrderToRemind>, GraphqlError> {
        let pages: Vec<Vec<OrderToRemind>> =
            self.order_pages_between(from, to).try_collect().await?;
        Ok(pages.concat())
    }

    /// Every product whose stock is below `threshold` (what a restock would touch), without
    /// changing anything.
    pub async fn products_below(
        &self,
        threshold: i32,
    ) -> Result<Vec<ProductStockLevel>, GraphqlError> {
        let mut products = Vec::new();
        let mut after = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .execute(queries::ProductsBelow::build(
                    queries::ProductsBelowVariables {
                        threshold: Some(threshold),
                        // No `first`: the server's own page size, whatever its limit is set to.
                        first: None,
                        after: after.clone(),
                    },
                ))
                .await?
                .all_products;
            products.extend(page.edges.into_iter().map(|edge| stock_level(edge.node)));
            match self.next_cursor(page.page_info, &after)? {
                Some(cursor) => after = Some(cursor),
                None => return Ok(products),
            }
        }
        Err(self.too_many_pages())
    }

    /// Runs `updateLowStockProducts` (every product with stock below 10 gets 10 more, on the
    /// server, atomically) and returns what it restocked. With an `idempotency_key` the server
    /// restocks once per key: asked again (the first answer was lost) it changes nothing and
    /// answers the first call's products, marked [`RestockOutcome::replayed`].
    pub async fn update_low_stock_products(
        &self,
        idempotency_key: Option<&str>,
    ) -> Result<RestockOutcome, GraphqlError> {
        let variables = queries::UpdateLowStockVariables {
            idempotency_key: idempotency_key.map(str::to_owned),
        };
        let answer = self
            .execute(queries::UpdateLowStock::build(variables))
            .await?
            .update_low_stock_products;
        Ok(RestockOutcome::new(
            answer.products.into_iter().map(stock_level).collect(),
            answer.message,
        )
        .with_replayed(answer.replayed))
    }

    /// The report's totals: customers, orders and revenue, counted by the server's database.
    pub async fn report_totals(&self) -> Result<ReportTotals, GraphqlError> {
        let report = self.execute(queries::Report::build(())).await?;
        Ok(ReportTotals::new(
            report.total_customers.into(),
            report.total_orders.into(),
            report.total_revenue.0,
        ))
    }

    /// The cursor of the next page, `None` after the last one. A server claiming a next page
    /// without a new cursor would loop forever: that is an invalid answer.
    fn next_cursor(
        &self,
        page: queries::PageInfo,
        previous: &Option<String>,
    ) -> Result<Option<String>, GraphqlError> {
        if !page.has_next_page {
            return Ok(None);
        }
        match page.end_cursor {
            Some(cursor) if Some(&cursor) != previous.as_ref() => Ok(Some(cursor)),
            _ => Err(self.invalid("hasNextPage without a new endCursor")),
        }
    }

    fn too_many_pages(&self) -> GraphqlError {
        self.invalid(&format!("more than {MAX_PAGES} pages"))
    }

    fn invalid(&self, message: &str) -> GraphqlError {
        GraphqlError::InvalidResponse {
            url: self.shown_url.clone(),
            message: message.to_owned(),
        }
    }

    /// Sends one operation and returns its data, or the one error that explains its absence.
    async fn execute<T, V>(&self, operation: Operation<T, V>) -> Result<T, GraphqlError>
    where
        T: DeserializeOwned,
        V: serde::Serialize,
    {
        let body = serde_json::to_vec(&operation)
            .map_err(|e| GraphqlError::Config(format!("cannot encode the operation: {e}")))?;
        let exchange = self.exchange(body);
        let (status, text) = match crate::clock::timeout(self.timeout, exchange).await {
            Ok(answer) => answer?,
            Err(_) => {
                return Err(GraphqlError::Timeout {
                    url: self.shown_url.clone(),
                    timeout: self.timeout,
                });
            }
        };
        if !(200..300).contains(&status) {
            return Err(GraphqlError::Http {
                url: self.shown_url.clone(),
                status,
                detail: http_error_detail(&text),
            });
        }
        let response: GraphQlResponse<T> = serde_json::from_str(&text)
            .map_err(|e| self.invalid(&format!("{e} in {}", quote(&text))))?;
        if let Some(errors) = response.errors.filter(|errors| !errors.is_empty()) {
            return Err(GraphqlError::Graphql {
                messages: errors.into_iter().map(|e| one_line(&e.message)).collect(),
            });
        }
        response
            .data
            .ok_or_else(|| self.invalid("neither data nor errors"))
    }

    /// POSTs the JSON body and reads the whole answer: its status and its text.
    async fn exchange(&self, body: Vec<u8>) -> Result<(u16, String), GraphqlError> {
        match &self.http {
            #[cfg(feature = "https")]
            Http::Surf(http) => self.exchange_over_surf(http, body).await,
            #[cfg(feature = "tokio-http")]
            Http::Tokio(http) => {
                let mut headers = vec![
                    ("Accept", "application/json"),
                    ("Content-Type", "application/json"),
                ];
                if let Some(authorization) = &self.authorization {
                    headers.push(("Authorization", authorization.as_str()));
                }
                http.post(&self.url, &headers, body)
                    .await
                    .map_err(|message| GraphqlError::Transport {
                        url: self.shown_url.clone(),
                        message: one_line(&message),
                    })
            }
        }
    }

    #[cfg(feature = "https")]
    async fn exchange_over_surf(
        &self,
        http: &surf::Client,
        body: Vec<u8>,
    ) -> Result<(u16, String), GraphqlError> {
        let transport = |e: surf::Error| GraphqlError::Transport {
            url: self.shown_url.clone(),
            message: transport_reason(e),
        };
        let mut request = surf::RequestBuilder::new(surf::http::Method::Post, self.url.clone())
            .header("Accept", "application/json")
            .body(surf::Body::from_bytes(body))
            .content_type(surf::http::mime::JSON);
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization.as_str());
        }
        let mut response = http.send(request.build()).await.map_err(transport)?;
        let status = u16::from(response.status());
        let text = response.body_string().await.map_err(transport)?;
        Ok((status, text))
    }
}

/// The jobs over the CRM's GraphQL endpoint, as the original's scripts talk to it. Every error
/// is a [`JobError::Endpoint`], whose text the heartbeat logs as the reason.
#[async_trait::async_trait]
impl CrmAccess for GraphqlClient {
    async fn hello(&self) -> Result<String, JobError> {
        Ok(GraphqlClient::hello(self).await?)
    }

    fn order_pages_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> OrderPages<'_> {
        GraphqlClient::order_pages_between(self, from, to)
            .map_err(JobError::from)
            .boxed()
    }

    async fn products_below(&self, threshold: i32) -> Result<Vec<ProductStockLevel>, JobError> {
        Ok(GraphqlClient::products_below(self, threshold).await?)
    }

    async fn restock_low_stock(
        &self,
        idempotency_key: Option<&str>,
    ) -> Result<RestockOutcome, JobError> {
        Ok(self.update_low_stock_products(idempotency_key).await?)
    }

    async fn report_totals(&self) -> Result<ReportTotals, JobError> {
        Ok(GraphqlClient::report_totals(self).await?)
    }

    /// The GraphQL API has no operation that deletes customers (the original's cleanup ran in
    /// Django's shell, on the database), so this refuses and says what to use.
    async fn delete_inactive_customers(
        &self,
        _as_of: DateTime<Utc>,
        _dry_run: bool,
    ) -> Result<u64, JobError> {
        Err(JobError::Unsupported(format!(
            "the GraphQL API of {} cannot delete inactive customers; run clean_inactive_customers \
             with the in-process CRM access (crm_jobs::InProcessCrm over the CRM's database)",
            self.shown_url
        )))
    }
}

/// The network layer's reason, without the connection pool's wrapping ("An error occured while
/// creating a new object: Connection refused" reads as "Connection refused").
#[cfg(feature = "https")]
fn transport_reason(error: surf::Error) -> String {
    const POOL_PREFIX: &str = "An error occured while creating a new object: ";
    let error = error.into_inner();
    let reason = one_line(&error.root_cause().to_string());
    match reason.strip_prefix(POOL_PREFIX) {
        Some(inner) => inner.to_owned(),
        None => reason,
    }
}

fn stock_level(product: queries::ProductStock) -> ProductStockLevel {
    ProductStockLevel::new(readable_id(product.id.inner()), product.name, product.stock)
}

/// The database number behind an API ID: the ID itself when it is a number, the number after
/// the `:` of a graphene-style global ID (`base64("OrderType:42")`), else the ID unchanged.
pub fn readable_id(id: &str) -> String {
    if id.parse::<i64>().is_ok() {
        return id.to_owned();
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(id)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(id))
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok());
    match decoded
        .as_deref()
        .and_then(|text| text.rsplit_once(':'))
        .filter(|(_, number)| number.parse::<i64>().is_ok())
    {
        Some((_, number)) => number.to_owned(),
        None => id.to_owned(),
    }
}

/// What an HTTP error body says: its GraphQL error messages if it is a GraphQL answer, else
/// its beginning.
fn http_error_detail(body: &str) -> String {
    let messages: Option<Vec<String>> =
        serde_json::from_str::<GraphQlResponse<serde::de::IgnoredAny>>(body)
            .ok()
            .and_then(|r| r.errors)
            .filter(|errors| !errors.is_empty())
            .map(|errors| errors.into_iter().map(|e| one_line(&e.message)).collect());
    match messages {
        Some(messages) => messages.join("; "),
        None if body.trim().is_empty() => "empty body".to_owned(),
        None => quote(body),
    }
}

/// The start of `text`, on one line, for an error message.
fn quote(text: &str) -> String {
    let mut quoted: String = one_line(text).chars().take(QUOTED_BODY_CHARS).collect();
    if text.chars().count() > QUOTED_BODY_CHARS {
        quoted.push('…');
    }
    quoted
}

/// `text` with line breaks turned into spaces, so a reason fits in one log line.
fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `token` can travel in an HTTP header as is.
fn is_header_safe(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;

    #[test]
    fn global_ids_are_shown_as_their_database_number() {
        // base64("OrderType:42")
        assert_eq!(readable_id("T3JkZXJUeXBlOjQy"), "42");
        assert_eq!(readable_id("17"), "17");
    }

    #[test]
    fn ids_that_encode_no_number_are_shown_unchanged() {
        assert_eq!(readable_id("not-base64!"), "not-base64!");
        // base64("hello")
        assert_eq!(readable_id("aGVsbG8="), "aGVsbG8=");
    }

    #[test]
    fn http_error_details_prefer_the_graphql_messages() {
        assert_eq!(
            http_error_detail(r#"{"errors":[{"message":"Unknown field \"x\""}]}"#),
            "Unknown field \"x\""
        );
        assert_eq!(
            http_error_detail("<html>\nBad Gateway\n</html>"),
            "<html> Bad Gateway </html>"
        );
        assert_eq!(http_error_detail(""), "empty body");
    }

    #[test]
    fn a_token_that_http_cannot_carry_is_refused_up_front() {
        let err = GraphqlClient::with_endpoint(
            "http://localhost:8000/graphql",
            Some("two words"),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, GraphqlError::Config(_)), "{err}");
        assert!(!err.to_string().contains("two words"));
    }

    #[test]
    fn a_url_that_is_not_http_or_https_is_refused_up_front() {
        for url in ["ftp://x/graphql", "https://"] {
            let err = GraphqlClient::with_endpoint(url, None, Duration::from_secs(1)).unwrap_err();
            assert!(matches!(err, GraphqlError::Config(_)), "{err}");
        }
    }

    #[test]
    fn debug_output_never_shows_the_token_or_a_password() {
        let client = GraphqlClient::with_endpoint(
            "http://bob:hunter2@localhost:8000/graphql",
            Some("s3cret"),
            Duration::from_secs(1),
        )
        .unwrap();
        let shown = format!("{client:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn a_money_scalar_reads_strings_and_numbers_exactly() {
        let m: queries::Money = serde_json::from_str(r#""1234.50""#).unwrap();
        assert_eq!(m.0, Decimal::new(123450, 2));
        let m: queries::Money = serde_json::from_str("0.1").unwrap();
        assert_eq!(m.0, Decimal::new(1, 1));
        assert!(serde_json::from_str::<queries::Money>("true").is_err());
    }
}
