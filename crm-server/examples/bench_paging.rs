//! This example demonstrates what a page deep in a long list costs beside the first page.
//!
//! It opens an existing database (`CRM_DATABASE_URL`, seeded beforehand, e.g. with
//! `crm seed --customers 100000 --products 1000 --orders 1000000 --seed 42`), builds the API
//! in process (the tide app, `respond`, no socket) and pages through the last seven days'
//! orders 100 at a time, oldest first, following `endCursor`: the reminders job's request with
//! `first: 100`. Each page's time is the whole request (parse, the SQL, resolution, JSON).
//!
//! ```text
//! CRM_DATABASE_URL=sqlite:///path/1m.db cargo run --release -p crm-server --example bench_paging [-- walk ROUNDS]
//! ```
//!
//! `walk ROUNDS` (the default, 3 rounds) walks the whole week ROUNDS times and prints, per
//! round, the median of the first 10 pages, of the last 10 pages and their ratio, and the first
//! and last page alone. `page first N` and `page last N` send one page N times (the first page,
//! or the page after the last full page's cursor), for callgrind: the difference of two runs'
//! instruction counts over the difference of N is one page, start-up and the walk to the last
//! cursor cancelled out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use crm_core::Database;
use crm_server::ServerConfig;
use tide::http::{Method, Request, Url};

/// The reminders job's request with 100 orders a page.
const QUERY: &str = "query($from: DateTime!, $to: DateTime!, $after: String) { \
                     allOrders(first: 100, after: $after, orderBy: \"orderDate\", \
                     filter: {orderDateGte: $from, orderDateLte: $to}) { \
                     edges { node { id orderDate totalAmount customer { email } } } \
                     pageInfo { hasNextPage endCursor } } }";

/// Pages averaged at each end of the walk.
const ENDS: usize = 10;

#[async_std::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = std::env::var("CRM_DATABASE_URL")
        .map_err(|_| "set CRM_DATABASE_URL to a seeded database")?;
    let db = Database::connect(&url).await?;
    let app = crm_server::app(Arc::new(db), ServerConfig::default());
    let to = Utc::now();
    let from = to - chrono::Duration::days(7);
    let pager = Pager {
        app,
        from: from.to_rfc3339_opts(SecondsFormat::Micros, true),
        to: to.to_rfc3339_opts(SecondsFormat::Micros, true),
    };
    match args.first().map(String::as_str) {
        None | Some("walk") => {
            let rounds: usize = args.get(1).map_or(Ok(3), |s| s.parse())?;
            for round in 1..=rounds {
                let times = pager.walk().await?;
                let n = times.len();
                let first = median(&times[..ENDS.min(n)]);
                let last = median(&times[n.saturating_sub(ENDS)..]);
                println!(
                    "round {round}: {n} pages; first {ENDS}: median {:.2} ms; last {ENDS}: median \
                     {:.2} ms; last/first {:.2}; page 1 {:.2} ms, page {n} {:.2} ms",
                    ms(first),
                    ms(last),
                    last.as_secs_f64() / first.as_secs_f64(),
                    ms(times[0]),
                    ms(times[n - 1]),
                );
            }
        }
        Some("page") => {
            let which = args.get(1).map(String::as_str).unwrap_or("first");
            let runs: usize = args.get(2).map_or(Ok(10), |s| s.parse())?;
            let after = match which {
                "first" => None,
                "last" => pager.last_full_cursor().await?,
                other => return Err(format!("unknown page `{other}` (first or last)").into()),
            };
            let started = Instant::now();
            for _ in 0..runs {
                pager.page(after.as_deref()).await?;
            }
            eprintln!(
                "{runs} × the {which} page: {:.2} ms each",
                ms(started.elapsed()) / runs as f64
            );
        }
        Some(other) => return Err(format!("unknown mode `{other}` (walk or page)").into()),
    }
    Ok(())
}

struct Pager {
    app: tide::Server<crm_server::AppState>,
    from: String,
    to: String,
}

/// One page's answer: its orders, and the cursor of the next page if there is one.
struct Page {
    orders: usize,
    next: Option<String>,
}

impl Pager {
    /// Sends the page after `after` and reads its answer whole.
    async fn page(&self, after: Option<&str>) -> Result<Page, Box<dyn std::error::Error>> {
        let body = serde_json::json!({
            "query": QUERY,
            "variables": { "from": self.from, "to": self.to, "after": after },
        });
        let mut request = Request::new(Method::Post, Url::parse("http://localhost/graphql")?);
        request.insert_header("Content-Type", "application/json");
        request.set_body(body.to_string());
        let mut response: tide::http::Response = self.app.respond(request).await?;
        let answer: serde_json::Value = serde_json::from_slice(&response.body_bytes().await?)?;
        if response.status() != 200 || answer.get("errors").is_some() {
            return Err(answer.to_string().into());
        }
        let connection = &answer["data"]["allOrders"];
        let info = &connection["pageInfo"];
        Ok(Page {
            orders: connection["edges"].as_array().map_or(0, Vec::len),
            next: match info["hasNextPage"].as_bool() {
                Some(true) => info["endCursor"].as_str().map(str::to_owned),
                _ => None,
            },
        })
    }

    /// Walks the whole week and returns each page's time.
    async fn walk(&self) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
        let mut times = Vec::new();
        let mut after = None;
        let mut orders = 0;
        loop {
            let started = Instant::now();
            let page = self.page(after.as_deref()).await?;
            times.push(started.elapsed());
            orders += page.orders;
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        eprintln!("walked {orders} orders in {} pages", times.len());
        Ok(times)
    }

    /// The cursor of the week's last full page's predecessor: the page after it is the last
    /// page of 100 orders.
    async fn last_full_cursor(&self) -> Result<Option<String>, Box<dyn std::error::Error>> {
        let mut cursors: Vec<Option<String>> = vec![None];
        loop {
            let page = self.page(cursors.last().unwrap().as_deref()).await?;
            match page.next {
                Some(next) => cursors.push(Some(next)),
                None if page.orders == 100 || cursors.len() < 2 => {
                    return Ok(cursors.pop().flatten());
                }
                None => return Ok(cursors.swap_remove(cursors.len() - 2)),
            }
        }
    }
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
