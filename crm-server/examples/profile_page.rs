//! This example runs one GraphQL request N times through the app in process, for a profiler.
//!
//! It seeds a SQLite file (WAL) in a temporary directory with `SeedConfig::demo` (1,000
//! customers, 100 products, 10,000 orders), then sends the request N times through the tide
//! app (`respond`, no socket) and reads each answer's body whole. Run it under callgrind twice
//! with two values of N: the difference of the two instruction counts divided by the
//! difference of N is the cost of one request, seeding and start-up cancelled out.
//!
//! ```text
//! cargo build --release -p crm-server --example profile_page
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.10 target/release/examples/profile_page page 10
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.60 target/release/examples/profile_page page 60
//! ```
//!
//! REQUEST is `page` (the issue's 100-order page with customers and products), `reminders`
//! (the reminders job's page) or `hello`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use crm_core::{Database, SeedConfig, seed};
use crm_server::ServerConfig;
use tide::http::{Method, Request, Url};

/// The issue's page: 100 orders, each with its customer and products.
const PAGE: &str = "{ allOrders(first: 100) { edges { node { id orderDate totalAmount \
                    customer { name email } products { name price } } } } }";

/// The reminders job's page: 100 orders and their customers' e-mail, with the cursor.
const REMINDERS: &str = "{ allOrders(first: 100, orderBy: \"orderDate\") { edges { node { id \
                         orderDate totalAmount customer { email } } } pageInfo { hasNextPage \
                         endCursor } } }";

#[async_std::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let which = std::env::args().nth(1).unwrap_or_else(|| "page".to_owned());
    let runs: u32 = std::env::args().nth(2).map_or(Ok(10), |s| s.parse())?;
    let query = match which.as_str() {
        "page" => PAGE,
        "reminders" => REMINDERS,
        "hello" => "{ hello }",
        other => return Err(format!("unknown request `{other}`").into()),
    };
    let body = serde_json::json!({ "query": query }).to_string();
    let dir = std::env::temp_dir().join(format!("crm-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}/profile.db", dir.display());
    let db = Database::connect(&url).await?;
    // A fixed instant, so every run seeds the same rows.
    let now: DateTime<Utc> = "2026-11-26T12:00:00Z".parse()?;
    seed(&db, &SeedConfig::demo(now), &mut |_| {}).await?;
    let app = crm_server::app(Arc::new(db), ServerConfig::default());
    let mut bytes = 0;
    for _ in 0..runs {
        let mut request = Request::new(Method::Post, Url::parse("http://localhost/graphql")?);
        request.insert_header("Content-Type", "application/json");
        request.set_body(body.clone());
        let mut response: tide::http::Response = app.respond(request).await?;
        let answer = response.body_bytes().await?;
        if response.status() != 200 || answer.starts_with(b"{\"errors\"") {
            return Err(String::from_utf8_lossy(&answer).into_owned().into());
        }
        bytes = answer.len();
    }
    eprintln!("{runs} × `{which}`, {bytes} bytes each");
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
