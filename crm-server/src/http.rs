//! The juniper–tide glue: routes, body limits, the bearer token, request logs.
//!
//! There is no official juniper integration for tide, so this is it: read the body (bounded),
//! decode a GraphQL request (JSON, a JSON batch, or `application/graphql` text), run it against
//! the schema with a per-request [`Context`], and answer JSON. Tide stays inside this module, so
//! replacing it touches nothing else.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use async_std::net::{TcpListener, TcpStream};
use async_std::stream::StreamExt as _;
use crm_core::CrmStore;
use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, FutureExt as _};
use juniper::http::{GraphQLBatchRequest, GraphQLRequest};
use juniper::{EmptySubscription, RootNode};
use subtle::ConstantTimeEq as _;
use tide::http::mime;
use tide::{Body, Request, Response, StatusCode};

use crate::config::ServerConfig;
use crate::context::{Context, WriteAccess};
use crate::error::ApiError;
use crate::scalar_value::CrmScalar;
use crate::schema::{Mutation, Query, Schema};

/// Most operations one batched request may carry.
const MAX_BATCH: usize = 16;

/// Fewest bytes of a request body the server still reads (and throws away) after it has
/// answered without reading it all (HTTP 413, 401, a GET with a body): the larger of this and
/// twice `max_body_bytes`. Reading the rest lets the client read the answer (closing on unread data
/// would reset the connection under it) and send its next request; a client that sends more
/// is disconnected instead. Without this bound async-h1 would read an announced 10 GB body,
/// or an endless chunked one, to its end.
const MAX_DISCARDED_BODY_BYTES: u64 = 64 * 1024;

/// What every request handler shares: the schema (with the configured limits), the store and
/// the settings. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    schema: Arc<Schema>,
    store: Arc<dyn CrmStore>,
    config: Arc<ServerConfig>,
    http: Arc<crate::metrics::HttpStats>,
}

impl AppState {
    /// The server's settings.
    pub(crate) fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The requests answered so far, for `/metrics`.
    pub(crate) fn http(&self) -> &crate::metrics::HttpStats {
        &self.http
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
/// GraphiQL (embedded, see [`crate::graphiql`]; its files under `/graphiql/`) to browsers and
/// runs `?query=` (read-only) for other clients, as graphene-django does; `GET /healthz`
/// answers `ok` (liveness: the process serves); `GET /readyz` answers `ok` only when the
/// database does (readiness); `GET /status` shows the scheduled jobs' health and `GET /metrics`
/// the same in Prometheus' text format (see [`crate::render_metrics`]). Every
/// request is logged (method, path, status, duration; never bodies or headers).
pub fn app(store: Arc<dyn CrmStore>, config: ServerConfig) -> tide::Server<AppState> {
    let mut app = tide::with_state(state(store, config));
    app.with(log_request);
    for path in ["/graphql", "/graphql/"] {
        app.at(path).post(graphql_post).get(graphql_get);
    }
    app.at(crate::graphiql::ASSET_ROUTE)
        .get(crate::graphiql::asset::<AppState>);
    app.at("/healthz").get(|_| async { Ok("ok") });
    app.at("/readyz").get(ready);
    app.at("/status").get(crate::status::page);
    app.at("/metrics").get(crate::metrics::scrape);
    app
}

/// The app of a metrics-only listener ([`BoundServer::bind_metrics`]): `GET /metrics`, the same
/// exposition as [`app`]'s, and `GET /healthz`; no GraphQL, no status page, nothing that
/// reads or writes customer data.
fn metrics_app(state: AppState) -> tide::Server<AppState> {
    let mut app = tide::with_state(state);
    app.with(log_request);
    app.at("/healthz").get(|_| async { Ok("ok") });
    app.at("/metrics").get(crate::metrics::scrape);
    app
}

/// The state [`app`] and [`metrics_app`] share.
fn state(store: Arc<dyn CrmStore>, config: ServerConfig) -> AppState {
    let schema = RootNode::new_with_scalar_value(Query, Mutation, EmptySubscription::new())
        .limit_depth(config.max_depth);
    AppState {
        schema: Arc::new(schema),
        store,
        config: Arc::new(config),
        http: Arc::default(),
    }
}

/// A server bound to its address but not yet accepting connections: bind to port 0, learn the
/// port with [`BoundServer::local_addr`], then [`BoundServer::run`] (e.g. in a spawned task).
pub struct BoundServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    store: Arc<dyn CrmStore>,
    config: ServerConfig,
    /// Serves only `/metrics` and `/healthz` ([`BoundServer::bind_metrics`]).
    metrics_only: bool,
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
            metrics_only: false,
        })
    }

    /// Binds `config.bind` for `/metrics` alone (and `/healthz`): what `crm scheduler`, `crm
    /// worker` and `crm beat` serve with `--metrics-bind`, so Prometheus can scrape a process
    /// that has no GraphQL server. The exposition is [`crate::render_metrics`]' over the run
    /// ledger of [`BoundServer::with_jobs`]' runner, under the same token rule as `crm serve`'s
    /// `/metrics` (`config.api_token`); only the `bind`, `api_token`, `idle_timeout` and `jobs`
    /// settings matter.
    pub async fn bind_metrics(store: Arc<dyn CrmStore>, config: ServerConfig) -> io::Result<Self> {
        let mut server = Self::bind(store, config).await?;
        server.metrics_only = true;
        Ok(server)
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
        let app = if self.metrics_only {
            tracing::info!(address = %self.local_addr, "Metrics listening");
            metrics_app(state(self.store, self.config))
        } else {
            tracing::info!(address = %self.local_addr, "GraphQL server listening");
            if self.config.api_token.is_none() && !self.local_addr.ip().is_loopback() {
                tracing::warn!(
                    address = %self.local_addr,
                    "No API token is set: clients on other hosts can query but not run \
                     mutations; set CRM_API_TOKEN to allow them"
                );
            }
            app(self.store, self.config)
        };
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

/// Longest a client may take to send a request's head, as async-h1's own bound.
const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Answers the HTTP/1.1 requests of one connection until the client closes it.
///
/// async-h1's parser and writer, in a loop of our own rather than `async_h1::accept`: that one
/// bounds the time to read each request's head with a timer of async-io 1, whose reactor is
/// not async-std's (async-io 2), so every request woke a thread of its own on the way in (a
/// system call and a context switch; without it `{ hello }` is served 8–25 % faster on two
/// cores, BENCHMARKS.md). The head's time is bounded here by the connection's stream instead
/// ([`DiscardLimitedStream`]), with no timer a request. Upgrades (HTTP 101) are not served, as
/// no route answers one.
async fn serve_connection(app: tide::Server<AppState>, stream: TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "could not set TCP_NODELAY");
    }
    let local_addr = stream.local_addr().ok();
    let peer_addr = stream.peer_addr().ok();
    let mut stream = DiscardLimitedStream::new(stream, app.state().config.idle_timeout);
    let discard_limit = MAX_DISCARDED_BODY_BYTES.max(2 * app.state().config.max_body_bytes as u64);
    loop {
        match serve_request(&app, &mut stream, discard_limit, local_addr, peer_addr).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(error) => {
                tracing::debug!(%error, "connection ended with an HTTP error");
                break;
            }
        }
    }
}

/// Reads one request from `stream`, answers it and throws away what the handler left of its
/// body: whether the connection stays open for another.
async fn serve_request(
    app: &tide::Server<AppState>,
    stream: &mut DiscardLimitedStream,
    discard_limit: u64,
    local_addr: Option<SocketAddr>,
    peer_addr: Option<SocketAddr>,
) -> tide::http::Result<bool> {
    use futures::AsyncWriteExt as _;

    stream.idle_wait().head_since = Some(Instant::now());
    let decoded = async_h1::server::decode(stream.clone()).await;
    stream.idle_wait().head_since = None;
    let Some((mut request, mut unread)) = decoded? else {
        return Ok(false);
    };
    request.set_local_addr(local_addr);
    request.set_peer_addr(peer_addr);
    let closes = |connection: Option<&tide::http::headers::HeaderValues>| {
        connection.is_some_and(|c| c.as_str().eq_ignore_ascii_case("close"))
    };
    let mut keep_alive = !closes(request.header("Connection"));
    let method = request.method();
    // The handler reads as much of the body as it wants (itself bounded by `max_body_bytes`);
    // what it left unread may only be discarded up to a bound.
    stream.budget.store(u64::MAX, Ordering::SeqCst);
    let response: tide::http::Response = app.respond(request).await?;
    stream.budget.store(discard_limit, Ordering::SeqCst);
    keep_alive &= !closes(response.header("Connection"));
    let mut encoder = async_h1::server::Encoder::new(response, method);
    futures::io::copy(&mut encoder, stream).await?;
    stream.flush().await?;
    futures::io::copy(&mut unread, &mut futures::io::sink()).await?;
    Ok(keep_alive)
}

/// The connection as async-h1 reads it, with the bounds a connection of [`serve_connection`]
/// keeps:
///
/// - between the moment a response is ready and the start of the next request's handler (that
///   is, while the unread body is discarded and the next request's head read), at most
///   `budget` bytes are read; then the stream reads as ended, and the connection closes.
///   Writes are untouched, so the response still goes out;
/// - a read that waits longer than `idle_timeout` for the client fails (`TimedOut`), which ends
///   the connection: a client that announces a body and stalls, or trickles it, or keeps an
///   idle connection, no longer holds a task and a file descriptor for ever;
/// - a request's head that takes longer than [`HEAD_TIMEOUT`] fails at its next piece.
#[derive(Clone)]
struct DiscardLimitedStream {
    stream: TcpStream,
    /// Bytes that may still be read; `u64::MAX` while a handler runs (no bound).
    budget: Arc<AtomicU64>,
    idle_timeout: std::time::Duration,
    /// Shared by the clones async-h1 makes of the connection (one to read each request), so
    /// that the idle timer belongs to the connection, not to one request.
    idle: Arc<std::sync::Mutex<IdleWait>>,
}

/// A connection's wait for its client.
#[derive(Default)]
struct IdleWait {
    /// Since when a read has been waiting for the client; `None` while none waits.
    since: Option<Instant>,
    /// Fires at or after `since + idle_timeout`. Armed once per connection and moved forward
    /// only when it fires early, not re-armed for every read or request: arming a timer wakes
    /// async-io's reactor thread (a system call and a context switch), which at tens of
    /// thousands of keep-alive requests a second cost CPU and tail latency.
    timer: Option<async_io::Timer>,
    /// Since when the connection has been reading a request's head; `None` between heads.
    head_since: Option<Instant>,
}

impl DiscardLimitedStream {
    fn new(stream: TcpStream, idle_timeout: std::time::Duration) -> Self {
        Self {
            stream,
            budget: Arc::new(AtomicU64::new(u64::MAX)),
            idle_timeout,
            idle: Arc::default(),
        }
    }

    fn idle_wait(&self) -> std::sync::MutexGuard<'_, IdleWait> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the read waiting since `since` has waited past the idle timeout (which then
    /// ends the wait); otherwise makes sure the timer will wake this task when it does.
    fn idle_expired(&self, cx: &mut TaskContext<'_>) -> bool {
        use std::future::Future as _;

        let mut wait = self.idle_wait();
        let now = Instant::now();
        let deadline = *wait.since.get_or_insert(now) + self.idle_timeout;
        if now >= deadline {
            *wait = IdleWait::default();
            return true;
        }
        let timer = wait
            .timer
            .get_or_insert_with(|| async_io::Timer::at(deadline));
        // An earlier wait's deadline that has passed (the timer fired, or is about to) is moved
        // to this wait's; one still ahead stays, and this wait is checked again when it fires.
        while Pin::new(&mut *timer).poll(cx).is_ready() {
            if Instant::now() >= deadline {
                *wait = IdleWait::default();
                return true;
            }
            timer.set_at(deadline);
        }
        false
    }
}

impl AsyncRead for DiscardLimitedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let budget = this.budget.load(Ordering::SeqCst);
        if budget == 0 {
            return Poll::Ready(Ok(0));
        }
        let allowed = usize::try_from(budget).unwrap_or(usize::MAX).min(buf.len());
        let read = Pin::new(&mut this.stream).poll_read(cx, &mut buf[..allowed]);
        match &read {
            Poll::Pending => {
                if this.idle_expired(cx) {
                    let timeout = this.idle_timeout;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the client sent nothing for {timeout:?}"),
                    )));
                }
            }
            Poll::Ready(result) => {
                let mut wait = this.idle_wait();
                wait.since = None;
                // Checked as each piece of a head comes, so a client that sends its head a
                // byte at a time, each within the idle timeout, is still cut off.
                if result.is_ok() && wait.head_since.is_some_and(|t| t.elapsed() >= HEAD_TIMEOUT) {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the client took over {HEAD_TIMEOUT:?} to send a request's head"),
                    )));
                }
                drop(wait);
                if let Ok(n) = result
                    && budget != u64::MAX
                {
                    // Only this connection's task reads or resets the budget, one step at a
                    // time.
                    this.budget
                        .store(budget.saturating_sub(*n as u64), Ordering::SeqCst);
                }
            }
        }
        read
    }
}

impl AsyncWrite for DiscardLimitedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_close(cx)
    }
}

/// Binds `config.bind` and serves `store` until the process ends.
pub async fn serve(store: Arc<dyn CrmStore>, config: ServerConfig) -> io::Result<()> {
    BoundServer::bind(store, config).await?.run().await
}

/// Logs each request once it is answered, and counts it for `/metrics`.
fn log_request<'a>(
    request: Request<AppState>,
    next: tide::Next<'a, AppState>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = tide::Result> + Send + 'a>> {
    Box::pin(async move {
        let started = Instant::now();
        let method = request.method();
        let path = request.url().path().to_owned();
        let stats = request.state().http.clone();
        let response = next.run(request).await;
        let took = started.elapsed();
        stats.record(&path, u16::from(response.status()), took);
        tracing::info!(
            http.method = %method,
            http.path = %path,
            http.status = u16::from(response.status()),
            duration_us = took.as_micros() as u64,
            "request answered"
        );
        Ok(response)
    })
}

/// How long `/readyz` waits for the database: less than the probe timeouts of common
/// orchestrators, so the probe gets the reason rather than a timeout of its own.
pub const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /readyz`: 200 `ok` when the database answers [`CrmStore::ping`] within
/// [`READY_TIMEOUT`]; otherwise 503 with the reason on one line, so that a load balancer stops
/// sending requests that could only fail while `/healthz` keeps the process alive.
async fn ready(request: Request<AppState>) -> tide::Result {
    let pinged = async_std::future::timeout(READY_TIMEOUT, request.state().store.ping()).await;
    let reason = match pinged {
        Ok(Ok(())) => return Ok(Response::builder(StatusCode::Ok).body("ok").build()),
        Ok(Err(error)) => format!("the database is unavailable: {error}"),
        Err(_) => format!(
            "the database did not answer within {} s",
            READY_TIMEOUT.as_secs()
        ),
    };
    let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    tracing::warn!(%reason, "Not ready");
    Ok(Response::builder(StatusCode::ServiceUnavailable)
        .body(format!("{reason}\n"))
        .content_type(mime::PLAIN)
        .header("Retry-After", "5")
        .build())
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
        return Ok(crate::graphiql::page());
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
    let batch = GraphQLBatchRequest::<CrmScalar>::Single(GraphQLRequest::new(
        query,
        params.operation_name,
        variables,
    ));
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
            Ok(query) => {
                GraphQLBatchRequest::<CrmScalar>::Single(GraphQLRequest::new(query, None, None))
            }
            Err(_) => return Ok(bad_request("the body is not UTF-8 text")),
        }
    } else {
        match serde_json::from_slice::<GraphQLBatchRequest<CrmScalar>>(&body) {
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
///
/// Without a configured token, only clients on this machine (a loopback peer) may write: a
/// server bound to a public address with no token would otherwise let anyone on the network
/// create orders and change job schedules.
fn check_token(request: &Request<AppState>) -> Result<WriteAccess, TokenRequired> {
    let config = &request.state().config;
    let Some(token) = &config.api_token else {
        return Ok(if peer_is_loopback(request.peer_addr()) {
            WriteAccess::Allowed
        } else {
            WriteAccess::NoTokenConfigured
        });
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

/// How long a GraphQL request may take before it is answered 503. Waiting for a connection is
/// bounded by the pool (10 s), but a query already sent on a connection whose server stopped
/// answering (a network partition) would wait for TCP to give up, many minutes; the client
/// gets a clear answer instead, and the abandoned query's connection is dropped with it.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs the request with a fresh per-request context and answers its JSON: 200 when it ran
/// (field errors included), 400 when it did not parse or validate, 503 when it took longer
/// than [`REQUEST_TIMEOUT`].
async fn execute(
    state: &AppState,
    batch: GraphQLBatchRequest<CrmScalar>,
    write_access: WriteAccess,
) -> tide::Result {
    let mut context = Context::new(
        state.store.clone(),
        write_access,
        state.config.clone(),
        state.http.clone(),
    );
    // A batch shares one context over several documents: it is answered by juniper alone.
    if let GraphQLBatchRequest::Single(request) = &batch {
        context.allow_prerender(&request.query);
    }
    let executed = async_std::future::timeout(
        REQUEST_TIMEOUT,
        AssertUnwindSafe(batch.execute(&state.schema, &context)).catch_unwind(),
    )
    .await;
    let Ok(executed) = executed else {
        tracing::warn!(
            timeout_s = REQUEST_TIMEOUT.as_secs(),
            "A GraphQL request timed out: the database is slow or unreachable"
        );
        let mut response = error_response(
            StatusCode::ServiceUnavailable,
            &format!(
                "the request did not complete within {} s (the database is slow or unreachable); \
                 try again shortly",
                REQUEST_TIMEOUT.as_secs()
            ),
            ApiError::Unavailable.code(),
        );
        response.insert_header("Retry-After", "5");
        return Ok(response);
    };
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

/// Whether the peer's address (as async-h1 recorded it, `ip:port`) is a loopback address
/// (`127.0.0.0/8`, `::1`, or IPv4-mapped `::ffff:127.x.y.z`). Unknown means no.
fn peer_is_loopback(peer: Option<&str>) -> bool {
    peer.and_then(|p| p.parse::<SocketAddr>().ok())
        .map(|addr| addr.ip())
        .is_some_and(|ip: IpAddr| ip.to_canonical().is_loopback())
}

/// Whether `header` is `Bearer <token>`, compared in constant time so response timing does not
/// reveal how much of a guess was right.
fn bearer_matches(header: Option<&str>, token: &str) -> bool {
    bearer_matches_by(header, token, |given, token| given.ct_eq(token).into())
}

/// [`bearer_matches`] with the byte comparison given: the timing test runs the real one and an
/// early-exit `==` through the same path, to show that it would catch the latter.
fn bearer_matches_by(header: Option<&str>, token: &str, equal: fn(&[u8], &[u8]) -> bool) -> bool {
    let Some(given) = header.and_then(|h| {
        let (scheme, value) = h.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| value.trim())
    }) else {
        return false;
    };
    equal(given.as_bytes(), token.as_bytes())
}

/// HTTP 413. The connection is closed after it (the rest of the body is not read).
fn too_large(limit: usize) -> Response {
    let mut response = error_response(
        StatusCode::PayloadTooLarge,
        &format!("the request body exceeds the limit of {limit} bytes"),
        "PAYLOAD_TOO_LARGE",
    );
    response.insert_header("Connection", "close");
    response
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

    #[test]
    fn the_token_comparison_is_subtles_constant_time_one_whatever_the_lengths() {
        let token = "a".repeat(64);
        // Same length, differing in the first or the last byte; longer and shorter; a prefix.
        let mut last = token.clone();
        last.replace_range(63.., "b");
        let first = format!("b{}", &token[1..]);
        for wrong in [last, first, format!("{token}a"), token[..63].to_owned()] {
            assert!(!bearer_matches(Some(&format!("Bearer {wrong}")), &token));
        }
        assert!(bearer_matches(Some(&format!("Bearer {token}")), &token));
        // Unicode and control characters are just bytes to compare.
        assert!(!bearer_matches(Some("Bearer é\u{0}"), "é"));
    }

    /// The median time of `rounds` batches of `batch` calls of `matches` for each of two
    /// wrong headers, interleaved; `(near, far)`.
    fn median_times(
        (rounds, batch): (usize, usize),
        near: &str,
        far: &str,
        token: &str,
        matches: impl Fn(Option<&str>, &str) -> bool,
    ) -> (std::time::Duration, std::time::Duration) {
        use std::hint::black_box;
        use std::time::Instant;
        let (mut near_times, mut far_times) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            for (header, times) in [(near, &mut near_times), (far, &mut far_times)] {
                let started = Instant::now();
                for _ in 0..batch {
                    assert!(!matches(black_box(Some(header)), black_box(token)));
                }
                times.push(started.elapsed());
            }
        }
        near_times.sort();
        far_times.sort();
        (near_times[rounds / 2], far_times[rounds / 2])
    }

    /// S2. A guess sharing all but the last byte of a 1 MiB token is refused in the same time
    /// as one sharing nothing. The same measurement of an early-exit comparison (`==`, the
    /// byte-by-byte compare a regression would bring) through the same path shows a wide gap:
    /// the test would catch one (and a measurement too noisy to see it fails the test).
    #[test]
    fn a_guess_sharing_a_long_prefix_is_refused_as_fast_as_one_sharing_nothing() {
        let token = "a".repeat(1024 * 1024);
        let near = format!("Bearer {}b", &token[1..]);
        let far = format!("Bearer b{}", &token[1..]);
        let early = |h: Option<&str>, t: &str| bearer_matches_by(h, t, |a, b| a == b);
        let (e_near, e_far) = median_times((101, 20), &near, &far, &token, early);
        let early_exit = e_near.as_secs_f64() / e_far.as_secs_f64();
        // subtle's loop in a debug build takes tens of ms a call: fewer, single calls.
        let (c_near, c_far) = median_times((9, 1), &near, &far, &token, bearer_matches);
        let constant = c_near.as_secs_f64() / c_far.as_secs_f64();
        eprintln!(
            "S2: refusing a 1 MiB guess sharing all but its last byte vs none: early-exit == \
             {e_near:?} vs {e_far:?} per 20 (ratio {early_exit:.1}); bearer_matches {c_near:?} \
             vs {c_far:?} (ratio {constant:.3})"
        );
        assert!(
            early_exit > 10.0,
            "the measurement cannot see an early-exit compare here (ratio {early_exit:.2}): \
             it would not catch one either"
        );
        assert!(
            (0.67..1.5).contains(&constant),
            "the token comparison's time depends on how much of the guess is right: \
             {c_near:?} vs {c_far:?}"
        );
    }

    #[test]
    fn only_loopback_peers_count_as_this_machine() {
        for peer in [
            "127.0.0.1:5000",
            "127.9.9.9:1",
            "[::1]:80",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(peer_is_loopback(Some(peer)), "{peer}");
        }
        for peer in [
            "192.0.2.2:5000",
            "[2001:db8::1]:80",
            "[::ffff:10.0.0.1]:80",
            "0.0.0.0:1",
        ] {
            assert!(!peer_is_loopback(Some(peer)), "{peer}");
        }
        assert!(!peer_is_loopback(None));
        assert!(!peer_is_loopback(Some("not an address")));
    }
}
