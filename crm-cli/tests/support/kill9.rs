//! What the kill -9 tests need besides running `crm`: the database the killed processes wrote,
//! read with plain SQL (SQLite or PostgreSQL), and a GraphQL client over a raw socket that
//! tells an answer from a connection cut by a kill.
#![allow(dead_code, reason = "each test uses a part of this module")]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use sqlx::{Connection as _, Row as _};

/// One connection to the database under test, opened after a kill as the next process would.
pub(crate) enum Db {
    Sqlite(sqlx::SqliteConnection),
    Pg(sqlx::PgConnection),
}

impl Db {
    pub(crate) fn open(url: &str) -> Self {
        async_std::task::block_on(async {
            if url.starts_with("sqlite:") {
                Db::Sqlite(sqlx::SqliteConnection::connect(url).await.expect(url))
            } else {
                Db::Pg(sqlx::PgConnection::connect(url).await.expect("postgres"))
            }
        })
    }

    pub(crate) fn is_pg(&self) -> bool {
        matches!(self, Db::Pg(_))
    }

    /// Every row of `sql`, each column read as an i64 (cast in the SQL where needed).
    pub(crate) fn rows(&mut self, sql: &str) -> Vec<Vec<i64>> {
        async_std::task::block_on(async {
            match self {
                Db::Sqlite(c) => sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(c)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
                    .iter()
                    .map(|r| (0..r.len()).map(|i| r.get::<i64, _>(i)).collect())
                    .collect(),
                Db::Pg(c) => sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(c)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
                    .iter()
                    .map(|r| (0..r.len()).map(|i| r.get::<i64, _>(i)).collect())
                    .collect(),
            }
        })
    }

    pub(crate) fn scalar(&mut self, sql: &str) -> i64 {
        self.rows(sql)[0][0]
    }

    /// The text of each row's first column.
    pub(crate) fn texts(&mut self, sql: &str) -> Vec<String> {
        async_std::task::block_on(async {
            match self {
                Db::Sqlite(c) => sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(c)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
                    .iter()
                    .map(|r| r.get::<String, _>(0))
                    .collect(),
                Db::Pg(c) => sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(c)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
                    .iter()
                    .map(|r| r.get::<String, _>(0))
                    .collect(),
            }
        })
    }

    pub(crate) fn exec(&mut self, sql: &str) {
        async_std::task::block_on(async {
            match self {
                Db::Sqlite(c) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(c)
                    .await
                    .map(drop),
                Db::Pg(c) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(c)
                    .await
                    .map(drop),
            }
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
        });
    }

    pub(crate) fn close(self) {
        async_std::task::block_on(async {
            match self {
                Db::Sqlite(c) => c.close().await.ok(),
                Db::Pg(c) => c.close().await.ok(),
            }
        });
    }

    /// The column (or expression) of a run's tick as whole microseconds.
    pub(crate) fn tick_us(&self) -> &'static str {
        if self.is_pg() {
            "CAST(EXTRACT(EPOCH FROM tick) * 1000000 AS BIGINT)"
        } else {
            "tick_us"
        }
    }

    /// `(code, tick)` of every tick (scheduled or retried) that succeeded more than once, and
    /// of every one-off (manual) run that did: what must never happen.
    pub(crate) fn ticks_succeeded_twice(&mut self) -> Vec<Vec<i64>> {
        let tick = self.tick_us();
        self.rows(&format!(
            "SELECT CAST(COUNT(*) AS BIGINT), {tick} FROM job_runs WHERE outcome = 'succeeded' \
             GROUP BY code, CASE WHEN kind = 'manual' THEN 1 ELSE 0 END, {tick} \
             HAVING COUNT(*) > 1"
        ))
    }
}

/// What a GraphQL request came back with.
#[derive(Debug)]
pub(crate) enum Answer {
    /// An HTTP answer: status and JSON body (`Null` if the body was not JSON).
    Http(u16, serde_json::Value),
    /// The connection was refused: the server is not there (the request was never sent).
    Refused,
    /// The connection was cut before a whole answer (the server was killed meanwhile).
    Cut,
}

/// POSTs a GraphQL request to `url` (plain HTTP on loopback) with the bearer token.
pub(crate) fn graphql(url: &str, token: &str, query: &str, variables: serde_json::Value) -> Answer {
    let rest = url.strip_prefix("http://").expect(url);
    let (host, path) = rest.split_once('/').expect(url);
    let Ok(mut stream) = TcpStream::connect(host) else {
        return Answer::Refused;
    };
    stream.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let body = serde_json::json!({"query": query, "variables": variables}).to_string();
    let request = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return Answer::Cut;
    }
    let mut raw = Vec::new();
    if stream.read_to_end(&mut raw).is_err() {
        return Answer::Cut;
    }
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Answer::Cut;
    };
    let Some(status) = head.split(' ').nth(1).and_then(|s| s.parse().ok()) else {
        return Answer::Cut;
    };
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        match dechunk(body) {
            Some(body) => body,
            None => return Answer::Cut,
        }
    } else {
        if let Some(len) = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            && body.len() < len
        {
            return Answer::Cut;
        }
        body.to_owned()
    };
    Answer::Http(
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// A chunked body put together; `None` if it was cut before its last chunk.
fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size + 2..)?;
    }
}

/// The number inside a global ID (`base64("OrderType:12")` → 12).
pub(crate) fn id_number(id: &str) -> i64 {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut bytes = Vec::new();
    for c in id.bytes().filter(|&c| c != b'=') {
        let value = ALPHABET.iter().position(|&a| a == c).expect(id) as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    let text = String::from_utf8(bytes).expect(id);
    text.rsplit(':').next().unwrap().parse().expect(id)
}
