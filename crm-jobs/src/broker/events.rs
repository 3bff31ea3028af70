//! Celery's monitoring events, so Flower and `celery events` see our workers.
//!
//! Events go to kombu's `celeryev` topic exchange, which its Redis transport implements as a
//! PUBLISH on the channel `/<db>.celeryev/<routing key>` (the event type with `-` as `.`), the
//! message being a kombu envelope whose base64 body is the event as JSON. As Celery does, a
//! worker always sends `worker-online`, `worker-heartbeat` (every 2 s) and `worker-offline`;
//! task events (`task-received`, `-started`, `-succeeded`, `-failed`) only when enabled
//! (`celery worker -E`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use super::Broker;
use super::message::uuid4;

/// How often a worker says it is alive (Celery's default `freq`).
pub(crate) const HEARTBEAT_SECS: f64 = 2.0;

/// Sends one worker's events.
#[derive(Debug)]
pub(crate) struct Events {
    broker: Broker,
    hostname: String,
    channel_prefix: String,
    clock: AtomicU64,
    pub(crate) task_events: bool,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The database number of a `redis://host:port/N` URL (0 when none is given).
fn db_number(url: &str) -> i64 {
    let path = url.split("://").nth(1).unwrap_or_default();
    path.split_once('/')
        .and_then(|(_, db)| db.split('?').next())
        .and_then(|db| db.parse().ok())
        .unwrap_or(0)
}

impl Events {
    pub(crate) fn new(broker: Broker, hostname: String, task_events: bool) -> Self {
        let channel_prefix = broker.key(&format!("/{}.celeryev/", db_number(&broker.config().url)));
        Self {
            broker,
            hostname,
            channel_prefix,
            clock: AtomicU64::new(0),
            task_events,
        }
    }

    /// The name Flower shows for this worker.
    pub(crate) fn hostname(&self) -> &str {
        &self.hostname
    }

    /// Sends an event of type `kind` with `fields`; a failure is logged, never fatal.
    pub(crate) async fn send(&self, kind: &str, fields: Value) {
        if kind.starts_with("task-") && !self.task_events {
            return;
        }
        let mut event = match fields {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        event.insert("type".into(), kind.into());
        event.insert("hostname".into(), self.hostname.as_str().into());
        event.insert("timestamp".into(), unix_now().into());
        event.insert("utcoffset".into(), 0.into());
        event.insert("pid".into(), std::process::id().into());
        event.insert(
            "clock".into(),
            (self.clock.fetch_add(1, Ordering::Relaxed) + 1).into(),
        );
        let routing_key = kind.replace('-', ".");
        let envelope = json!({
            "body": BASE64.encode(Value::Object(event).to_string()),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"hostname": self.hostname},
            "properties": {
                "delivery_mode": 1,
                "delivery_info": {"exchange": "celeryev", "routing_key": routing_key},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": uuid4(),
            }
        });
        let channel = format!("{}{routing_key}", self.channel_prefix);
        if let Err(e) = self.broker.publish_event(&channel, &envelope).await {
            tracing::debug!(error = %e, event = kind, "Could not send a monitoring event");
        }
    }

    /// A heartbeat with the worker's counters.
    pub(crate) async fn heartbeat(&self, kind: &str, active: u64, processed: u64) {
        let loadavg = std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .filter_map(|v| v.parse::<f64>().ok())
            .collect::<Vec<_>>();
        self.send(
            kind,
            json!({
                "freq": HEARTBEAT_SECS,
                "active": active,
                "processed": processed,
                "loadavg": loadavg,
                "sw_ident": "crm-worker",
                "sw_ver": env!("CARGO_PKG_VERSION"),
                "sw_sys": std::env::consts::OS,
            }),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::db_number;

    #[test]
    fn the_database_number_comes_from_the_url_path() {
        assert_eq!(db_number("redis://localhost:6379/0"), 0);
        assert_eq!(db_number("redis://:secret@host:6379/3"), 3);
        assert_eq!(db_number("redis://localhost:6379"), 0);
        assert_eq!(db_number("redis://localhost/5?protocol=resp3"), 5);
    }
}
