//! The load generator's parts: a keep-alive HTTP/1.1 GraphQL client on one loopback
//! connection, latency figures, a small seeded random source, and the server's resource use as
//! `/proc` tells it. Used by `tests/load.rs` (`#[path = "support/load.rs"] mod load;`).
#![allow(dead_code, reason = "each test file uses a part of this module")]

use std::time::Duration;

use async_std::io::BufReader;
use async_std::net::TcpStream;
use async_std::prelude::*;
use base64::Engine as _;

/// One HTTP/1.1 connection kept alive across requests, as a browser or a GraphQL client
/// library keeps it: every request goes down the same socket, one at a time.
pub(crate) struct GraphqlConnection {
    addr: String,
    token: String,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// How many times the connection was opened again.
    pub(crate) reconnects: u64,
    /// Open a new connection for every request (and close the last one), as clients without
    /// keep-alive do.
    fresh_each_request: bool,
    /// Whether the current connection carried a request already.
    used: bool,
}

/// What came back: the HTTP status and the parsed JSON body (`Null` if it was not JSON).
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: serde_json::Value,
}

impl Answer {
    /// The GraphQL errors' messages, empty when there were none.
    pub(crate) fn errors(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| e["message"].as_str().unwrap_or("?").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl GraphqlConnection {
    /// Opens a connection to `addr` (`127.0.0.1:port`); requests carry `Bearer token`.
    pub(crate) async fn open(addr: &str, token: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            addr: addr.to_owned(),
            token: token.to_owned(),
            reader: BufReader::new(stream.clone()),
            writer: stream,
            reconnects: 0,
            fresh_each_request: false,
            used: false,
        })
    }

    /// From now on, one request per connection: each request opens its own (its latency
    /// includes the TCP handshake).
    pub(crate) fn one_request_per_connection(mut self) -> Self {
        self.fresh_each_request = true;
        self
    }

    /// POSTs `{"query": query, "variables": variables}` to `/graphql`, at most `limit` long.
    /// A transport failure (refused, reset, timed out, malformed answer) is an `Err`; the next
    /// call opens a new connection.
    pub(crate) async fn post(
        &mut self,
        query: &str,
        variables: serde_json::Value,
        limit: Duration,
    ) -> Result<Answer, String> {
        let body = serde_json::json!({ "query": query, "variables": variables }).to_string();
        if self.fresh_each_request && self.used {
            self.reconnect()
                .await
                .map_err(|e| format!("connecting: {e}"))?;
        }
        self.used = true;
        let exchange = async_std::future::timeout(limit, self.exchange(&body)).await;
        let outcome = match exchange {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => format!("{e}"),
            Err(_) => format!("no answer within {limit:?}"),
        };
        // The connection is in an unknown state: start afresh for the next request.
        self.reconnect().await.ok();
        Err(outcome)
    }

    /// Closes the connection and opens a new one (counted in `reconnects`).
    pub(crate) async fn reconnect(&mut self) -> std::io::Result<()> {
        let fresh = Self::open(&self.addr, &self.token).await?;
        self.reader = fresh.reader;
        self.writer = fresh.writer;
        self.reconnects += 1;
        self.used = false;
        Ok(())
    }

    async fn exchange(&mut self, body: &str) -> std::io::Result<Answer> {
        let request = format!(
            "POST /graphql HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Authorization: Bearer {}\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            self.token,
            body.len()
        );
        self.writer.write_all(request.as_bytes()).await?;
        let (status, bytes, close) = read_response(&mut self.reader).await?;
        if close {
            self.reconnect().await?;
        }
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Ok(Answer { status, body })
    }
}

fn malformed(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// Reads one HTTP/1.1 response: its status, its body (by `Content-Length` or chunked) and
/// whether the server said it closes the connection.
async fn read_response(reader: &mut BufReader<TcpStream>) -> std::io::Result<(u16, Vec<u8>, bool)> {
    let mut line = String::new();
    if reader.read_line(&mut line).await? == 0 {
        return Err(malformed(
            "the server closed the connection before answering",
        ));
    }
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed("no HTTP status line"))?;
    let mut length = None;
    let mut chunked = false;
    let mut close = false;
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Err(malformed("the answer's head ended early"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| malformed("bad chunk size"))?;
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..]).await?;
            let mut crlf = [0; 2];
            reader.read_exact(&mut crlf).await?;
            if size == 0 {
                break;
            }
        }
    } else if let Some(length) = length {
        body.resize(length, 0);
        reader.read_exact(&mut body).await?;
    } else {
        return Err(malformed(
            "an answer with neither Content-Length nor chunks",
        ));
    }
    Ok((status, body, close))
}

/// The database id inside a global ID the API handed out (base64 of `CustomerType:7`).
pub(crate) fn plain_id(global: &str) -> i64 {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(global)
        .unwrap_or_else(|e| panic!("{global:?} is not a global ID: {e}"));
    let text = String::from_utf8(decoded).unwrap();
    let (_, id) = text.split_once(':').expect("TypeName:id");
    id.parse().unwrap()
}

/// Latencies of one kind of request.
#[derive(Default, Clone)]
pub(crate) struct Latencies(Vec<Duration>);

impl Latencies {
    pub(crate) fn push(&mut self, latency: Duration) {
        self.0.push(latency);
    }

    pub(crate) fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The nearest-rank percentile `p` (0–100); zero when there are none.
    pub(crate) fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    /// `n=…, p50 … p95 … p99 … max …` in milliseconds.
    pub(crate) fn summary(&self) -> String {
        format!(
            "n={} p50={:.1}ms p95={:.1}ms p99={:.1}ms max={:.1}ms",
            self.len(),
            ms(self.percentile(50.0)),
            ms(self.percentile(95.0)),
            ms(self.percentile(99.0)),
            ms(self.percentile(100.0)),
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// xorshift64*: reproducible per-client choices without another dependency.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) % n
    }
}

/// A `/proc/<pid>/status` field in kB (`VmRSS`, `VmHWM`), if the process is there.
pub(crate) fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// How many file descriptors the process has open.
pub(crate) fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The soft limit on open files of a process (`ulimit -n`).
pub(crate) fn max_open_files(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}
