//! `/healthz` (liveness) and `/readyz` (readiness) with the database really gone: PostgreSQL
//! reached through a forwarder that the test then closes (as when PostgreSQL stops or the
//! network to it fails), and a database dropped under the running server.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_std::net::{Shutdown, TcpListener, TcpStream};
use async_std::stream::StreamExt as _;
use crm_core::testing::TestDb;
use crm_server::{READY_TIMEOUT, ServerConfig};

use crate::helpers::{HttpResponse, TestApp, spawn_app, spawn_app_over, spawn_app_with};

/// A TCP forwarder to PostgreSQL that can be closed: its port then refuses connections and
/// the connections it carried are cut.
struct Forwarder {
    address: std::net::SocketAddr,
    accepting: Option<async_std::task::JoinHandle<()>>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Forwarder {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let streams = Arc::new(Mutex::new(Vec::new()));
        let kept = streams.clone();
        let accepting = async_std::task::spawn(async move {
            let mut incoming = listener.incoming();
            while let Some(Ok(client)) = incoming.next().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                kept.lock()
                    .unwrap()
                    .extend([client.clone(), server.clone()]);
                for (from, to) in [(client.clone(), server.clone()), (server, client)] {
                    async_std::task::spawn(async move {
                        let _ = futures::io::copy(from, &mut &to).await;
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Self {
            address,
            accepting: Some(accepting),
            streams,
        }
    }

    /// Closes the port and cuts every connection through it.
    async fn close(&mut self) {
        if let Some(accepting) = self.accepting.take() {
            accepting.cancel().await;
        }
        for stream in self.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

async fn readyz(app: &TestApp) -> HttpResponse {
    app.request("GET", "/readyz", &[], b"").await
}

/// A 503 whose body is one line naming the database, answered within the probe's bound.
fn assert_not_ready(answer: &HttpResponse, took: std::time::Duration) {
    assert_eq!(answer.status, 503, "{}", answer.body);
    let reason = answer.body.strip_suffix('\n').unwrap_or(&answer.body);
    println!("readyz: {reason} ({took:?})");
    assert!(!reason.contains('\n'), "one line: {reason:?}");
    assert!(reason.starts_with("the database "), "{reason}");
    assert!(
        answer
            .headers
            .to_ascii_lowercase()
            .contains("retry-after: 5"),
        "{}",
        answer.headers
    );
    assert!(
        took < READY_TIMEOUT + std::time::Duration::from_secs(2),
        "{took:?}"
    );
}

#[async_std::test]
async fn readyz_is_ok_with_sqlite_and_healthz_needs_no_database() {
    let app = spawn_app().await;
    let ready = readyz(&app).await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ok"));
    app.store.reset();
    let live = app.request("GET", "/healthz", &[], b"").await;
    assert_eq!((live.status, live.body.as_str()), (200, "ok"));
    assert_eq!(app.store.calls(), 0, "liveness does not touch the database");
}

#[async_std::test]
async fn readyz_answers_503_with_a_reason_when_postgres_stops_answering_and_healthz_stays_ok() {
    let db = TestDb::postgres().await;
    // postgres://user@host:port/name → the same database through the forwarder.
    let (scheme_user, rest) = db.url().split_once('@').unwrap();
    let (upstream, name) = rest.split_once('/').unwrap();
    let mut forwarder = Forwarder::start(upstream.to_owned()).await;
    let url = format!("{scheme_user}@{}/{name}", forwarder.address);
    let through = crm_core::Database::connect(&url).await.unwrap();
    let app = spawn_app_over(db, Arc::new(through), ServerConfig::default()).await;
    let ready = readyz(&app).await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ok"));

    forwarder.close().await;
    let started = Instant::now();
    let answer = readyz(&app).await;
    assert_not_ready(&answer, started.elapsed());
    let live = app.request("GET", "/healthz", &[], b"").await;
    assert_eq!((live.status, live.body.as_str()), (200, "ok"));
}

#[async_std::test]
async fn readyz_answers_503_once_the_database_is_dropped_and_ok_again_once_it_is_back() {
    let db = TestDb::postgres().await;
    let (admin, name) = db.url().rsplit_once('/').unwrap();
    let name = name.split('?').next().unwrap().to_owned();
    let admin = format!("{admin}/postgres");
    let app = spawn_app_with(db, ServerConfig::default()).await;
    assert_eq!(readyz(&app).await.status, 200);

    psql(&admin, &format!("DROP DATABASE {name} WITH (FORCE)"));
    let started = Instant::now();
    let answer = readyz(&app).await;
    assert_not_ready(&answer, started.elapsed());
    assert!(
        answer.body.contains(&name),
        "names what is missing: {}",
        answer.body
    );

    psql(&admin, &format!("CREATE DATABASE {name}"));
    let ready = readyz(&app).await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ok"));
}

/// Runs one statement with the real `psql` (Debian's `postgresql-client`).
fn psql(url: &str, statement: &str) {
    let out = std::process::Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qc", statement])
        .output()
        .expect("psql runs (Debian package postgresql-client)");
    assert!(
        out.status.success(),
        "{statement}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
