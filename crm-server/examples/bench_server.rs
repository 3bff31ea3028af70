//! This example demonstrates the server's throughput against the HTTP floor, with `wrk`.
//!
//! It seeds a SQLite database in a temporary directory with 10,000 orders
//! (`SeedConfig::demo`), serves the CRM API on a free port, and beside it a bare tide app whose
//! handlers answer fixed bytes: the API's own answers to the two benchmark requests (the floor:
//! HTTP and tide without GraphQL or the database; connections set up the same way, with
//! `TCP_NODELAY`). It first times one request at a time in process (no HTTP) and the orders
//! request's store calls, then runs `wrk` (64 connections, 2 threads) on each server: ROUNDS
//! rounds (default 5) of SECONDS (default 5) each, the two servers taking turns so that drifting
//! load on a shared machine hits both alike. It prints Markdown tables (medians).
//!
//! ```text
//! cargo run --release -p crm-server --example bench_server [-- SECONDS [ROUNDS]]
//! ```
//! Needs `wrk` on the PATH (`apt-get install wrk`).

use std::process::Command;
use std::sync::Arc;

use async_std::io::{ReadExt as _, WriteExt as _};
use async_std::net::{TcpListener, TcpStream};
use std::time::Instant;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use crm_core::{CrmStore, Database, OrderField, OrderFilter, PageRequest, SeedConfig, Sort, seed};
use crm_server::{BoundServer, ServerConfig};
use tide::http::{Method, Request, Url};

const CONNECTIONS: u32 = 64;

#[async_std::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u32 = std::env::args().nth(1).map_or(Ok(5), |s| s.parse())?;
    let rounds: u32 = std::env::args().nth(2).map_or(Ok(5), |s| s.parse())?;
    let dir = tempfile_dir()?;
    let url = format!("sqlite://{}/bench.db", dir.display());
    let db = Database::connect(&url).await?;
    let now = Utc::now();
    let summary = seed(&db, &SeedConfig::demo(now), &mut |_| {}).await?;
    eprintln!("seeded {} orders into {url}", summary.orders);

    let config = ServerConfig {
        bind: "127.0.0.1:0".parse()?,
        ..ServerConfig::default()
    };
    let server = BoundServer::bind(Arc::new(db.clone()), config).await?;
    let api = server.local_addr();
    async_std::task::spawn(server.run());

    let hello = r#"{"query":"{ hello }"}"#.to_owned();
    let week_ago = (now - Duration::days(7)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let until = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let orders = serde_json::json!({
        "query": "query($from: DateTime!, $to: DateTime!) { allOrders(first: 100, \
                  filter: {orderDateGte: $from, orderDateLte: $to}, orderBy: \"orderDate\") { \
                  edges { node { id orderDate totalAmount customer { email } } } \
                  pageInfo { hasNextPage endCursor } } }",
        "variables": { "from": week_ago, "to": until }
    })
    .to_string();

    // The issue's page: 100 orders with their customers and products (about 30 KB).
    let page = serde_json::json!({
        "query": "{ allOrders(first: 100) { edges { node { id orderDate totalAmount \
                  customer { name email } products { name price } } } } }"
    })
    .to_string();

    // The floor answers exactly what the API answers.
    let mut answers = Vec::new();
    for (name, body) in [("hello", &hello), ("page", &page), ("orders", &orders)] {
        let answer = post(api, body).await?;
        eprintln!(
            "`{name}` answers {} orders ({} bytes)",
            answer.matches("\"node\"").count(),
            answer.len()
        );
        answers.push((name, answer));
    }
    let floor = floor_app(answers);
    let floor_listener = TcpListener::bind("127.0.0.1:0").await?;
    let floor_addr = floor_listener.local_addr()?;
    async_std::task::spawn(serve_floor(floor, floor_listener));

    breakdown(&db, &hello, &orders, now).await?;

    // Load on a shared machine drifts: the two servers take turns, several short rounds each,
    // and the table shows medians and the spread of the per-round ratio.
    let scripts = [("hello", &hello), ("page", &page), ("orders", &orders)];
    let mut medians = Vec::new();
    println!(
        "| request | crm-server requests/s served | floor requests/s served | crm-server / floor (median, range) | crm-server p99 | floor p99 |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, body) in scripts {
        let script = dir.join(format!("{name}.lua"));
        std::fs::write(&script, wrk_script(body))?;
        let ours_url = format!("http://{api}/graphql");
        let floor_url = format!("http://{floor_addr}/{name}");
        let (mut ours, mut floor, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let (a, b) = if round % 2 == 0 {
                let a = run_wrk(&script, &ours_url, seconds)?;
                (a, run_wrk(&script, &floor_url, seconds)?)
            } else {
                let b = run_wrk(&script, &floor_url, seconds)?;
                (run_wrk(&script, &ours_url, seconds)?, b)
            };
            eprintln!("{name} round {round}: ours {a:?}, floor {b:?}");
            ratios.push(a.0 / b.0);
            ours.push(a);
            floor.push(b);
        }
        let rps = |runs: &[(f64, f64)]| median(runs.iter().map(|r| r.0).collect());
        let p99 = |runs: &[(f64, f64)]| median(runs.iter().map(|r| r.1).collect());
        let (low, high) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        medians.push(rps(&ours));
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} % ({:.0}–{:.0} %) | {:.1} ms | {:.1} ms |",
            rps(&ours),
            rps(&floor),
            100.0 * median(ratios.clone()),
            100.0 * low,
            100.0 * high,
            p99(&ours),
            p99(&floor)
        );
    }
    println!();
    println!(
        "page / hello: {:.1} %; orders / hello: {:.1} % (crm-server medians)",
        100.0 * medians[1] / medians[0],
        100.0 * medians[2] / medians[0]
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// Where one request's time goes, in process and one at a time (no HTTP, no concurrency): the
/// store calls of the orders request, and each whole request through the app (`respond`).
async fn breakdown(
    db: &Database,
    hello: &str,
    orders: &str,
    now: DateTime<Utc>,
) -> Result<(), Box<dyn std::error::Error>> {
    const RUNS: u32 = 300;
    let filter = OrderFilter {
        order_date_gte: Some(now - Duration::days(7)),
        order_date_lte: Some(now),
        ..OrderFilter::default()
    };
    let sort = [Sort {
        field: OrderField::OrderDate,
        descending: false,
    }];
    let started = Instant::now();
    let mut customer_ids = Vec::new();
    for _ in 0..RUNS {
        let page = db
            .list_orders(&filter, &sort, PageRequest::first(101))
            .await?;
        customer_ids = page.iter().map(|o| o.customer_id).collect();
    }
    let list = started.elapsed() / RUNS;
    let started = Instant::now();
    for _ in 0..RUNS {
        std::hint::black_box(db.customers_by_ids(&customer_ids).await?);
    }
    let customers = started.elapsed() / RUNS;
    let app = crm_server::app(Arc::new(db.clone()), ServerConfig::default());
    let mut whole = Vec::new();
    for body in [hello, orders] {
        let started = Instant::now();
        for _ in 0..RUNS {
            let mut request = Request::new(Method::Post, Url::parse("http://localhost/graphql")?);
            request.insert_header("Content-Type", "application/json");
            request.set_body(body.to_owned());
            let response: tide::http::Response = app.respond(request).await?;
            std::hint::black_box(response);
        }
        whole.push(started.elapsed() / RUNS);
    }
    println!("| in process, one at a time | time per call |");
    println!("|---|---:|");
    println!("| `hello` request through the app | {:?} |", whole[0]);
    println!("| orders request through the app | {:?} |", whole[1]);
    println!("| of which `list_orders` (101 rows) | {list:?} |");
    println!("| of which `customers_by_ids` | {customers:?} |");
    println!();
    Ok(())
}

/// A tide app answering `POST /NAME` with the fixed JSON `answers` holds for NAME: the HTTP
/// floor.
fn floor_app(answers: Vec<(&str, String)>) -> tide::Server<()> {
    let mut app = tide::new();
    for (name, answer) in answers {
        app.at(&format!("/{name}")).post(move |_| {
            let body = answer.clone();
            async move {
                Ok(tide::Response::builder(200)
                    .body(body)
                    .content_type(tide::http::mime::JSON)
                    .build())
            }
        });
    }
    app
}

/// Tide's own accept loop, plus `TCP_NODELAY` on every connection as crm-server sets it, so
/// the floor and the server differ only by what runs inside the handler.
async fn serve_floor(app: tide::Server<()>, listener: TcpListener) {
    use async_std::stream::StreamExt as _;
    let mut incoming = listener.incoming();
    while let Some(Ok(stream)) = incoming.next().await {
        stream.set_nodelay(true).ok();
        let app = app.clone();
        async_std::task::spawn(async move {
            let _ = async_h1::accept(stream, |request| {
                let app = app.clone();
                async move { app.respond(request).await }
            })
            .await;
        });
    }
}

/// One POST over a fresh connection; the answer's body.
async fn post(addr: std::net::SocketAddr, body: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!(
        "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    Ok(answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}

/// The wrk script: POSTs `body` and counts as failed every answer that is not HTTP 200 or that
/// carries GraphQL `errors` (a GraphQL error answered with 200 is not a request served); `done`
/// prints the counts for [`run_wrk`].
fn wrk_script(body: &str) -> String {
    let escaped = body.replace('\\', "\\\\").replace('\'', "\\'");
    format!(
        r#"wrk.method = 'POST'
wrk.headers['Content-Type'] = 'application/json'
wrk.body = '{escaped}'
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) failed = 0 end
function response(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then failed = failed + 1 end
end
function done(summary, latency, requests)
  local failed = 0
  for _, thread in ipairs(threads) do failed = failed + thread:get("failed") end
  io.write(string.format("crm_requests %d\ncrm_failed %d\ncrm_duration_us %d\n",
    summary.requests, failed, summary.duration))
end
"#
    )
}

/// Runs wrk; returns the requests served per second (answered 200 without GraphQL errors)
/// and the p99 latency in milliseconds. Failed answers are reported on stderr.
fn run_wrk(
    script: &std::path::Path,
    url: &str,
    seconds: u32,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let output = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        eprintln!("warning from wrk on {url}:\n{text}");
    }
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_owned())
            .ok_or_else(|| format!("no `{prefix}` in wrk's output: {text}"))
    };
    let requests: f64 = field("crm_requests")?.parse()?;
    let failed: f64 = field("crm_failed")?.parse()?;
    let duration_us: f64 = field("crm_duration_us")?.parse()?;
    if failed > 0.0 {
        eprintln!("{failed} of {requests} answers from {url} failed (not 200, or GraphQL errors)");
    }
    let served = (requests - failed) / (duration_us / 1e6);
    Ok((served, milliseconds(&field("99%")?)?))
}

/// wrk's `850.00us`, `23.83ms` or `1.05s` in milliseconds.
fn milliseconds(text: &str) -> Result<f64, Box<dyn std::error::Error>> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return Err(format!("unknown latency unit in `{text}`").into());
    };
    Ok(number.parse::<f64>()? * scale)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("crm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
