//! What the outage tests need besides the `crm` binary: a TCP proxy on loopback that can cut
//! the way to PostgreSQL (without stopping the shared server), a plain HTTP POST with a
//! bounded wait for the GraphQL answers, and small tmpfs mounts for the log directory.
#![allow(dead_code, reason = "each test file uses a part of this module")]

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Mode {
    /// Forwards both ways.
    Pass = 0,
    /// Closes each new connection at once (the server is down); existing ones were cut.
    Refuse = 1,
    /// Accepts new connections and never answers (a network partition, a hung server).
    BlackHole = 2,
    /// Like [`Mode::BlackHole`] for new connections, and the open ones stop carrying data
    /// (held, not closed): a network partition in the middle of a conversation.
    Stall = 3,
}

/// A TCP proxy on `127.0.0.1:0` in front of `upstream`, run by std threads. Dropping it stops
/// it and closes every connection it holds.
pub(crate) struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    mode: AtomicU8,
    stopped: AtomicBool,
    /// Every socket of every connection (both ends), so a cut can close them all.
    sockets: Mutex<Vec<TcpStream>>,
}

impl Shared {
    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::SeqCst) {
            0 => Mode::Pass,
            1 => Mode::Refuse,
            2 => Mode::BlackHole,
            _ => Mode::Stall,
        }
    }

    fn close_all(&self) {
        for socket in self.sockets.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

impl Proxy {
    /// Starts forwarding to `upstream`.
    pub(crate) fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(Mode::Pass as u8),
            stopped: AtomicBool::new(false),
            sockets: Mutex::new(Vec::new()),
        });
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                match accepting.mode() {
                    Mode::Refuse => {
                        let _ = client.shutdown(Shutdown::Both);
                    }
                    Mode::BlackHole | Mode::Stall => {
                        accepting.sockets.lock().unwrap().push(client);
                    }
                    Mode::Pass => {
                        let Ok(server) = TcpStream::connect(upstream) else {
                            let _ = client.shutdown(Shutdown::Both);
                            continue;
                        };
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        {
                            let mut sockets = accepting.sockets.lock().unwrap();
                            sockets.push(client.try_clone().unwrap());
                            sockets.push(server.try_clone().unwrap());
                        }
                        pipe(
                            client.try_clone().unwrap(),
                            server.try_clone().unwrap(),
                            accepting.clone(),
                        );
                        pipe(server, client, accepting.clone());
                    }
                }
            }
        });
        Self { addr, shared }
    }

    /// Where clients connect.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server goes away: every connection is closed and new ones are closed at once.
    pub(crate) fn cut(&self) {
        self.shared.mode.store(Mode::Refuse as u8, Ordering::SeqCst);
        self.shared.close_all();
    }

    /// New connections are accepted and never answered (existing ones are closed).
    pub(crate) fn black_hole(&self) {
        self.shared
            .mode
            .store(Mode::BlackHole as u8, Ordering::SeqCst);
        self.shared.close_all();
    }

    /// Open connections stop carrying data without being closed, and new ones are never
    /// answered: a network partition.
    pub(crate) fn stall(&self) {
        self.shared.mode.store(Mode::Stall as u8, Ordering::SeqCst);
    }

    /// Traffic flows again (for new connections; stalled ones carry on).
    pub(crate) fn restore(&self) {
        self.shared.mode.store(Mode::Pass as u8, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.close_all();
        // Wake the accepting thread so it sees `stopped`.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies `from` to `to` on a thread of its own until either side closes; while the proxy is
/// stalled, what was read is held back.
fn pipe(mut from: TcpStream, mut to: TcpStream, shared: Arc<Shared>) {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            while shared.mode() == Mode::Stall && !shared.stopped.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
            if to.write_all(&buffer[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// `url` (a PostgreSQL URL) with its `host:port` replaced by `addr`.
pub(crate) fn via(url: &str, addr: SocketAddr) -> String {
    let start = url.find("://").unwrap() + 3;
    let host_start = url[start..].find('@').map_or(start, |at| start + at + 1);
    let host_end = url[host_start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| host_start + i);
    format!("{}{addr}{}", &url[..host_start], &url[host_end..])
}

/// The `host:port` a PostgreSQL URL names (port 5432 if none).
pub(crate) fn upstream_of(url: &str) -> SocketAddr {
    let start = url.find("://").unwrap() + 3;
    let host_start = url[start..].find('@').map_or(start, |at| start + at + 1);
    let host_end = url[host_start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| host_start + i);
    let authority = &url[host_start..host_end];
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:5432")
    };
    use std::net::ToSocketAddrs as _;
    authority.to_socket_addrs().unwrap().next().unwrap()
}

/// One GraphQL answer: the HTTP status, the JSON body, and how long it took.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: serde_json::Value,
    pub(crate) took: Duration,
}

impl Answer {
    /// The `extensions.code` of each error.
    pub(crate) fn error_codes(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| e["extensions"]["code"].as_str().unwrap_or("?").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The messages of the errors.
    pub(crate) fn error_messages(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| e["message"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn ok(&self) -> bool {
        self.status == 200 && self.body.get("errors").is_none()
    }
}

/// POSTs a GraphQL `query` with `variables` to `url` (plain HTTP), with an optional bearer
/// token; waits at most `limit` for the whole answer (a longer wait fails the test: a hang).
pub(crate) fn graphql(
    url: &str,
    token: Option<&str>,
    query: &str,
    variables: serde_json::Value,
    limit: Duration,
) -> Answer {
    let started = Instant::now();
    let rest = url.strip_prefix("http://").expect(url);
    let (host, path) = rest.split_once('/').expect(url);
    let body = serde_json::json!({ "query": query, "variables": variables }).to_string();
    let mut stream = TcpStream::connect(host).unwrap();
    stream.set_read_timeout(Some(limit)).unwrap();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = Vec::new();
    if let Err(e) = stream.read_to_end(&mut answer) {
        panic!(
            "no answer to a GraphQL request within {limit:?} ({e}): the server hung; read so far: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    let took = started.elapsed();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let json = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or_default();
    let body = serde_json::from_str(json).unwrap_or(serde_json::Value::Null);
    Answer { status, body, took }
}

/// A tmpfs mounted on a fresh directory, unmounted (and the directory removed) on drop, even
/// when the test fails. We run as root, so permissions do not stop writes: a read-only or a
/// full file system is the way to make a directory unwritable.
pub(crate) struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=…` takes it) with the extra `options`
    /// (e.g. `ro`). Under CI a refused mount fails the test; elsewhere, too, since the rows
    /// of RELIABILITY.md depend on it, with the reason.
    pub(crate) fn mount(size: &str, options: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("crm-logs-tmpfs-")
            .tempdir()
            .unwrap();
        let mut opts = format!("size={size},mode=0700");
        if !options.is_empty() {
            opts.push(',');
            opts.push_str(options);
        }
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &opts, "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("the mount program runs");
        assert!(
            output.status.success(),
            "cannot mount a tmpfs on {} (this test needs root or CAP_SYS_ADMIN to make a log \
             directory read-only or full): {}",
            dir.path().display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Self { dir }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Remounts it read-write or read-only.
    pub(crate) fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount {options} failed");
    }

    /// Fills it to the last byte: writes a file until the file system says it is full.
    pub(crate) fn fill(&self) -> PathBuf {
        let path = self.dir.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = [b'x'; 512];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        // A last partial page may still take single bytes.
        while file.write(b"x").is_ok_and(|n| n > 0) {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let status = Command::new("umount").arg(self.dir.path()).status();
        if !status.is_ok_and(|s| s.success()) {
            // Busy: detach it lazily so the directory can go.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}
