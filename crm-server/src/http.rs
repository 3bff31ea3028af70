//! The juniper–tide glue: routes, body limits, the bearer token, request logs.
//!
//! There is no official juniper integration for tide, so this is it: read the body (bounded),
//! decode a GraphQL request (JSON, a JSON batch, or `application/graphql` text), run it against
//! the schema with a per-request [`Context`], and answer JSON. Tide stays inside this module, so
//! replacing it touches nothing else.

use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use async_std::net::{TcpListener, TcpStream};
use async_std::stream::StreamExt as _;
use crm_core::CrmStore;
use futures::{AsyncReadExt as _, FutureExt as _};
use juniper::http::graphiql::graphiql_source;
use juniper::http::{GraphQLBatchRequest, GraphQLRequest};
use juniper::{EmptySubscription, RootNode};
use subtle::ConstantTimeEq as _;
use tide::http::mime;
use tide::{Body, Request, Response, StatusCode};

use crate::config::ServerConfig;
use crate::context::{Context, WriteAccess};
use crate::error::ApiError;
use crate::schema::{Mutation, Query, Schema};

/// Most operations one batched request may carry.
const MAX_BATCH: usize = 16;

/// What every request handler shares: the schema (with the configured limits), the store and
/// the settings. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    schema: Arc<Schema>,
    store: Arc<dyn CrmStore>,
    config: Arc<ServerConfig>,
}

impl AppState {
    /// The server's settings.
    pub(crate) fn config(&self) -> &ServerConfig {
        &self.config
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The tide application: `POST /graphql` and `/graphql/` run GraphQL; `GET` on them serves
/// GraphiQL to browsers and runs `?query=` (read-only) for other clients, as graphene-django
/// does; `GET /healthz` answers `ok`; `GET /status` shows the scheduled jobs' health. Every
/// request is logged (method, path, status, duration; never bodies or headers).
pub fn app(store: Arc<dyn CrmStore>, config: ServerConfig) -> tide::Server<AppState> {
    let schema =
        RootNode::new(Query, Mutation, EmptySubscription::new()).limit_depth(config.max_depth);
    let state = AppState {
        schema: Arc::new(schema),
        store,
        config: Arc::new(config),
    };
    let mut app = tide::with_state(state);
    app.with(log_request);
    for path in ["/graphql", "/graphql/"] {
        app.at(path).post(graphql_post).get(graphql_get);
    }
    app.at("/healthz").get(|_| async { Ok("ok") });
    app.at("/status").get(crate::status::page);
    app
}

/// A server bound to its address but not yet accepting connections: bind to port 0, learn the
/// port with [`BoundServer::local_addr`], then [`BoundServer::run`] (e.g. in a spawned task).
pub struct BoundServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    store: Arc<dyn CrmStore>,
    config: ServerConfig,
}

impl std::fmt::Debug for BoundServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl BoundServer {
    /// Binds `config.bind` (port 0 picks a free port) and builds the app over `store`.
    ///
    /// An `api_token` that is empty (or only whitespace) is refused with `InvalidInput`: it
    /// would make every mutation impossible, and is most likely an unset variable. Whitespace
    /// around a token (a trailing newline from a file) is dropped.
    pub async fn bind(store: Arc<dyn CrmStore>, mut config: ServerConfig) -> io::Result<Self> {
        if let Some(token) = &config.api_token {
            let token = token.trim();
            if token.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the API token is empty; set a non-empty CRM_API_TOKEN or leave it unset",
                ));
            }
            config.api_token = Some(token.to_owned());
        }
        let listener = TcpListener::bind(config.bind).await?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            local_addr,
            store,
            config,
        })
    }

    /// Sets the scheduled jobs `/status` and the `jobs` queries report on (see
    /// [`ServerConfig::jobs`]), and, unless one is set, the job control of the job mutations
    /// ([`ServerConfig::job_control`]: the same runner); for jobs that need the bound address
    /// first (they call this server).
    pub fn with_jobs(mut self, jobs: Arc<crm_jobs::Runner>) -> Self {
        if self.config.job_control.is_none() {
            self.config.job_control = Some(jobs.clone());
        }
        self.config.jobs = Some(jobs);
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The GraphQL endpoint's URL, e.g. `http://127.0.0.1:8000/graphql`.
    pub fn graphql_url(&self) -> String {
        format!("http://{}/graphql", self.local_addr)
    }

    /// Serves until the process ends.
    ///
    /// The accept loop is ours rather than tide's so that every connection gets `TCP_NODELAY`:
    /// the HTTP/1.1 writer sends a response's head and body in separate writes, and without it
    /// Nagle's algorithm and the client's delayed ACK stall each answer for about 40 ms.
    pub async fn run(self) -> io::Result<()> {
        tracing::info!(address = %self.local_addr, "GraphQL server listening");
        let app = app(self.store, self.config);
        let mut incoming = self.listener.incoming();
        while let Some(stream) = incoming.next().await {
            let stream = match stream {
                Ok(stream) => stream,
                Err(error) => {
                    // Out of file descriptors, a connection reset before accept…: keep serving
                    // the others, after a pause so a persistent error does not spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    async_std::task::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let app = app.clone();
            async_std::task::spawn(serve_connection(app, stream));
        }
        Ok(())
    }
}

/// Answers the HTTP/1.1 requests of one connection until the client closes it.
async fn serve_connection(app: tide::Server<AppState>, stream: TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "could not set TCP_NODELAY");
    }
    let local_addr = stream.local_addr().ok();
    let peer_addr = stream.peer_addr().ok();
    let served = async_h1::accept(stream, |mut request| {
        request.set_local_addr(local_addr);
        request.set_peer_addr(peer_addr);
        let app = app.clone();
        async move { app.respond(request).await }
    })
    .await;
    if let Err(error) = served {
        tracing::debug!(%error, "connection ended with an HTTP error");
    }
}

/// Binds `config.bind` and serves `store` until the process ends.
pub async fn serve(store: Arc<dyn CrmStore>, config: ServerConfig) -> io::Result<()> {
    BoundServer::bind(store, config).await?.run().await
}

/// Logs each request once it is answered.
fn log_request<'a>(
    request: Request<AppState>,
    next: tide::Next<'a, AppState>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = tide::Result> + Send + 'a>> {
    Box::pin(async move {
        let started = Instant::now();
        let method = request.method();
        let path = request.url().path().to_owned();
        let response = next.run(request).await;
        tracing::info!(
            http.method = %method,
            http.path = %path,
            http.status = u16::from(response.status()),
            duration_us = started.elapsed().as_micros() as u64,
            "request answered"
        );
        Ok(response)
    })
}

/// The parameters of a GraphQL request by GET.
#[derive(serde::Deserialize)]
struct GetParams {
    query: Option<String>,
    variables: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
}

/// GraphiQL for browsers (and for a GET without `query`); otherwise runs the `query` parameter,
/// without mutations.
async fn graphql_get(request: Request<AppState>) -> tide::Result {
    let wants_html = request
        .header("Accept")
        .is_some_and(|accept| accept.as_str().contains("text/html"));
    let params: GetParams = match request.query() {
        Ok(params) => params,
        Err(_) => return Ok(bad_request("the query string is not valid")),
    };
    let Some(query) = params.query.filter(|_| !wants_html) else {
        return Ok(Response::builder(StatusCode::Ok)
            .body(graphiql_source("/graphql", None))
            .content_type(mime::HTML)
            .build());
    };
    if let Err(refused) = check_token(&request) {
        return Ok(refused.into());
    }
    let variables = match params
        .variables
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
    {
        Ok(variables) => variables,
        Err(e) => {
            return Ok(bad_request(&format!(
                "`variables` is not a JSON object ({e})"
            )));
        }
    };
    let batch =
        GraphQLBatchRequest::Single(GraphQLRequest::new(query, params.operation_name, variables));
    execute(request.state(), batch, WriteAccess::ReadOnlyMethod).await
}

async fn graphql_post(mut request: Request<AppState>) -> tide::Result {
    let state = request.state().clone();
    let write_access = match check_token(&request) {
        Ok(access) => access,
        Err(refused) => return Ok(refused.into()),
    };
    let limit = state.config.max_body_bytes;
    if request.len().is_some_and(|len| len > limit) {
        return Ok(too_large(limit));
    }
    let mut body = Vec::new();
    request
        .take_body()
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .await
        .map_err(|e| tide::Error::new(StatusCode::BadRequest, e))?;
    if body.len() > limit {
        return Ok(too_large(limit));
    }
    let is_graphql_text = request
        .content_type()
        .is_some_and(|m| m.essence() == "application/graphql");
    let batch = if is_graphql_text {
        match String::from_utf8(body) {
            Ok(query) => GraphQLBatchRequest::Single(GraphQLRequest::new(query, None, None)),
            Err(_) => return Ok(bad_request("the body is not UTF-8 text")),
        }
    } else {
        match serde_json::from_slice::<GraphQLBatchRequest>(&body) {
            Ok(batch) => batch,
            Err(e) => {
                return Ok(bad_request(&format!(
                    "the body is not a GraphQL request in JSON ({e}); send {{\"query\": \"…\"}}"
                )));
            }
        }
    };
    if let GraphQLBatchRequest::Batch(requests) = &batch
        && requests.len() > MAX_BATCH
    {
        return Ok(bad_request(&format!(
            "a batch holds at most {MAX_BATCH} operations, got {}",
            requests.len()
        )));
    }
    execute(&state, batch, write_access).await
}

/// Whether the request may write. With `token_for_queries`, a request without the token is
/// refused here, whole (HTTP 401), before its body is read.
fn check_token(request: &Request<AppState>) -> Result<WriteAccess, TokenRequired> {
    let config = &request.state().config;
    let Some(token) = &config.api_token else {
        return Ok(WriteAccess::Allowed);
    };
    if bearer_matches(request.header("Authorization").map(|v| v.as_str()), token) {
        return Ok(WriteAccess::Allowed);
    }
    if config.token_for_queries {
        Err(TokenRequired)
    } else {
        Ok(WriteAccess::MissingToken)
    }
}

/// A request refused whole for want of the token (`token_for_queries`).
struct TokenRequired;

impl From<TokenRequired> for Response {
    fn from(_: TokenRequired) -> Self {
        let mut response = error_response(
            StatusCode::Unauthorized,
            "this server needs the header `Authorization: Bearer <token>` with its API token",
            ApiError::Unauthorized.code(),
        );
        response.insert_header("WWW-Authenticate", "Bearer");
        response
    }
}

/// Runs the request with a fresh per-request context and answers its JSON: 200 when it ran
/// (field errors included), 400 when it did not parse or validate.
async fn execute(
    state: &AppState,
    batch: GraphQLBatchRequest,
    write_access: WriteAccess,
) -> tide::Result {
    let context = Context::new(
        state.store.clone(),
        write_access,
        state.config.clock.clone(),
        state.config.max_page_size,
        state.config.max_bulk_customers,
        state.config.job_control.clone(),
    )
    .with_jobs(state.config.jobs.clone());
    let executed = AssertUnwindSafe(batch.execute(&state.schema, &context))
        .catch_unwind()
        .await;
    let Ok(response) = executed else {
        // A bug, not the client's fault: the connection still gets an answer, and the server
        // keeps serving the others. The panic message itself was printed by the panic hook.
        tracing::error!("a GraphQL request panicked");
        return Ok(error_response(
            StatusCode::InternalServerError,
            "internal error",
            ApiError::Internal.code(),
        ));
    };
    if response.is_ok() {
        return Ok(json_response(
            StatusCode::Ok,
            serde_json::to_vec(&response)?,
        ));
    }
    // Refused before running: juniper's messages may quote a whole (huge) variable.
    let mut answer = serde_json::to_value(&response)?;
    crate::error::clip_messages(&mut answer);
    Ok(json_response(
        StatusCode::BadRequest,
        serde_json::to_vec(&answer)?,
    ))
}

/// Whether `header` is `Bearer <token>`, compared in constant time so response timing does not
/// reveal how much of a guess was right.
fn bearer_matches(header: Option<&str>, token: &str) -> bool {
    let Some(given) = header.and_then(|h| {
        let (scheme, value) = h.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| value.trim())
    }) else {
        return false;
    };
    given.as_bytes().ct_eq(token.as_bytes()).into()
}

fn too_large(limit: usize) -> Response {
    error_response(
        StatusCode::PayloadTooLarge,
        &format!("the request body exceeds the limit of {limit} bytes"),
        "PAYLOAD_TOO_LARGE",
    )
}

fn bad_request(message: &str) -> Response {
    error_response(StatusCode::BadRequest, message, "BAD_REQUEST")
}

/// A GraphQL-shaped error answer, so clients read every failure the same way.
fn error_response(status: StatusCode, message: &str, code: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": code } }]
    });
    json_response(status, body.to_string().into_bytes())
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    Response::builder(status)
        .body(Body::from_bytes(body))
        .content_type(mime::JSON)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_matches() {
        assert!(bearer_matches(Some("Bearer s3cret"), "s3cret"));
        assert!(bearer_matches(Some("bearer  s3cret "), "s3cret"));
        assert!(!bearer_matches(Some("Bearer s3cre"), "s3cret"));
        assert!(!bearer_matches(Some("Bearer s3cret2"), "s3cret"));
        assert!(!bearer_matches(Some("Basic s3cret"), "s3cret"));
        assert!(!bearer_matches(Some("s3cret"), "s3cret"));
        assert!(!bearer_matches(Some("Bearer "), "s3cret"));
        assert!(!bearer_matches(None, "s3cret"));
    }
}
