//! Celery's task message, protocol version 2, in kombu's JSON envelope.
//!
//! The envelope is what kombu's Redis transport stores in a queue list:
//! `{"body": base64([args, kwargs, embed]), "content-type", "content-encoding", "headers",
//! "properties"}`. The headers carry the task name and id; the properties carry the delivery
//! tag the transport uses to acknowledge. We add one header of our own, `crm_tick`: the
//! scheduled instant a beat published the message for (Celery ignores headers it does not know).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// The prefix of our jobs' Celery task names: `crm.tasks.<job code>`.
pub const TASK_PREFIX: &str = "crm.tasks.";

/// The header carrying the scheduled tick of a message published by a beat.
pub const TICK_HEADER: &str = "crm_tick";

/// The header marking a message a beat published for a one-off run (`crm jobs at`): its
/// `crm_tick` is the run's instant, and it runs as a manual run at that instant.
pub const ONE_OFF_HEADER: &str = "crm_one_off";

/// The Celery task name of a job: `crm.tasks.generate_crm_report`.
pub fn task_name(code: &str) -> String {
    format!("{TASK_PREFIX}{code}")
}

/// The task id of a job's scheduled tick: `crm.tasks.<code>@<tick, RFC 3339 UTC>`. Every beat
/// derives the same id for the same tick, so a duplicate publish is recognisable (and its
/// result lands under one key).
pub fn tick_task_id(code: &str, tick: DateTime<Utc>) -> String {
    format!(
        "{}@{}",
        task_name(code),
        tick.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    )
}

/// The task id of a job's one-off run at `at`: `crm.tasks.<code>@<at, RFC 3339 UTC>/one-off`,
/// distinct from a scheduled tick at the same instant.
pub fn one_off_task_id(code: &str, at: DateTime<Utc>) -> String {
    format!("{}/one-off", tick_task_id(code, at))
}

/// A task message read from the queue, with what the worker needs from it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TaskMessage {
    /// The task id (`headers.id`).
    pub id: String,
    /// The task name (`headers.task`).
    pub task: String,
    /// The scheduled tick, when a beat published it (`headers.crm_tick`).
    pub tick: Option<DateTime<Utc>>,
    /// Whether `tick` is a one-off run's instant rather than a schedule's tick
    /// (`headers.crm_one_off`).
    pub one_off: bool,
    /// When the message expires (`headers.expires`); an expired message is not run.
    pub expires: Option<DateTime<Utc>>,
    /// Not to be run before (`headers.eta`).
    pub eta: Option<DateTime<Utc>>,
    /// The transport's acknowledgement key (`properties.delivery_tag`).
    pub delivery_tag: String,
    /// The exchange it was published to (`properties.delivery_info.exchange`).
    pub exchange: String,
    /// The routing key it was published with (`properties.delivery_info.routing_key`).
    pub routing_key: String,
    /// The keyword arguments (the second item of the decoded body).
    pub kwargs: serde_json::Map<String, Value>,
}

/// Why a message could not be read; it goes to the dead-letter list with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedMessage(pub String);

fn malformed(reason: impl Into<String>) -> MalformedMessage {
    MalformedMessage(reason.into())
}

fn header_time(headers: &Value, name: &str) -> Result<Option<DateTime<Utc>>, MalformedMessage> {
    match headers.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_celery_time(s)
            .map(Some)
            .ok_or_else(|| malformed(format!("header {name} is not a date-time: {s:?}"))),
        Some(other) => Err(malformed(format!(
            "header {name} is not a date-time: {other}"
        ))),
    }
}

/// Celery writes ISO 8601 with an offset (`2026-11-30T06:00:00+00:00`); a naive time is UTC.
fn parse_celery_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

impl TaskMessage {
    /// Reads a message as kombu's Redis transport stores it. Only protocol v2 with a JSON body
    /// is understood; anything else is [`MalformedMessage`].
    pub fn parse(raw: &[u8]) -> Result<(Self, Value), MalformedMessage> {
        let envelope: Value = serde_json::from_slice(raw)
            .map_err(|e| malformed(format!("the envelope is not JSON: {e}")))?;
        let msg = Self::from_envelope(&envelope)?;
        Ok((msg, envelope))
    }

    /// Reads an already-decoded envelope.
    pub fn from_envelope(envelope: &Value) -> Result<Self, MalformedMessage> {
        let headers = envelope
            .get("headers")
            .filter(|h| h.is_object())
            .ok_or_else(|| malformed("no headers (not Celery protocol v2)"))?;
        let text = |v: &Value, name: &str| -> Result<String, MalformedMessage> {
            v.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| malformed(format!("no {name}")))
        };
        let task = text(headers, "task")?;
        let id = text(headers, "id")?;
        let properties = envelope
            .get("properties")
            .filter(|p| p.is_object())
            .ok_or_else(|| malformed("no properties"))?;
        let delivery_tag = text(properties, "delivery_tag")?;
        let info = properties.get("delivery_info");
        let exchange = info
            .and_then(|i| i.get("exchange"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let routing_key = info
            .and_then(|i| i.get("routing_key"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let content_type = envelope
            .get("content-type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if content_type != "application/json" {
            return Err(malformed(format!(
                "content type {content_type:?} is not application/json"
            )));
        }
        let body = envelope
            .get("body")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("no body"))?;
        let encoding = properties
            .get("body_encoding")
            .and_then(Value::as_str)
            .unwrap_or("base64");
        let body = match encoding {
            "base64" => BASE64
                .decode(body)
                .map_err(|e| malformed(format!("the body is not base64: {e}")))?,
            other => return Err(malformed(format!("unknown body encoding {other:?}"))),
        };
        let body: Value = serde_json::from_slice(&body)
            .map_err(|e| malformed(format!("the body is not JSON: {e}")))?;
        let kwargs = match body.as_array().map(Vec::as_slice) {
            Some([args, Value::Object(kwargs), ..]) if args.is_array() => kwargs.clone(),
            _ => return Err(malformed("the body is not [args, kwargs, embed]")),
        };
        let tick = header_time(headers, TICK_HEADER)?;
        let one_off = match headers.get(ONE_OFF_HEADER) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::Bool(true)) if tick.is_some() => true,
            Some(Value::Bool(true)) => {
                return Err(malformed(format!(
                    "header {ONE_OFF_HEADER} without {TICK_HEADER}"
                )));
            }
            Some(other) => {
                return Err(malformed(format!(
                    "header {ONE_OFF_HEADER} is not a boolean: {other}"
                )));
            }
        };
        Ok(Self {
            tick,
            one_off,
            expires: header_time(headers, "expires")?,
            eta: header_time(headers, "eta")?,
            id,
            task,
            delivery_tag,
            exchange,
            routing_key,
            kwargs,
        })
    }

    /// The job code the task name stands for, if it is one of ours (`crm.tasks.<code>`).
    pub fn job_code(&self) -> Option<&str> {
        self.task.strip_prefix(TASK_PREFIX)
    }
}

/// The envelope of a message for job `code`'s scheduled `tick`, routed to `queue`, as Celery's
/// `send_task` would write it (no arguments; `origin` names the publisher).
pub fn scheduled_envelope(code: &str, tick: DateTime<Utc>, queue: &str, origin: &str) -> Value {
    envelope(code, tick_task_id(code, tick), tick, false, queue, origin)
}

/// The envelope of a message for job `code`'s one-off run at `at` (`crm jobs at`), as a beat
/// publishes it: task id [`one_off_task_id`], headers `crm_tick` = `at` and `crm_one_off`.
pub fn one_off_envelope(code: &str, at: DateTime<Utc>, queue: &str, origin: &str) -> Value {
    envelope(code, one_off_task_id(code, at), at, true, queue, origin)
}

fn envelope(
    code: &str,
    id: String,
    tick: DateTime<Utc>,
    one_off: bool,
    queue: &str,
    origin: &str,
) -> Value {
    let body = json!([[], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]);
    json!({
        "body": BASE64.encode(body.to_string()),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": task_name(code),
            "id": id,
            "shadow": null,
            "eta": null,
            "expires": null,
            "group": null,
            "group_index": null,
            "retries": 0,
            "timelimit": [null, null],
            "root_id": id,
            "parent_id": null,
            "argsrepr": "()",
            "kwargsrepr": "{}",
            "origin": origin,
            "ignore_result": false,
            "replaced_task_nesting": 0,
            "stamped_headers": null,
            "stamps": {},
            TICK_HEADER: tick.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            ONE_OFF_HEADER: one_off,
        },
        "properties": {
            "correlation_id": id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": uuid4(),
        }
    })
}

/// A random UUID (version 4) in its usual text form, as kombu's delivery tags are.
pub(crate) fn uuid4() -> String {
    let mut b: [u8; 16] = fastrand::u128(..).to_le_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn tick() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 6, 0, 0).unwrap()
    }

    #[test]
    fn a_scheduled_envelope_reads_back_with_its_tick_and_the_tick_as_id() {
        let envelope = scheduled_envelope("generate_crm_report", tick(), "celery", "beat@host");
        let raw = envelope.to_string();
        let (msg, _) = TaskMessage::parse(raw.as_bytes()).unwrap();
        assert_eq!(msg.task, "crm.tasks.generate_crm_report");
        assert_eq!(msg.id, "crm.tasks.generate_crm_report@2026-11-30T06:00:00Z");
        assert_eq!(msg.tick, Some(tick()));
        assert_eq!(msg.job_code(), Some("generate_crm_report"));
        assert_eq!(msg.routing_key, "celery");
        assert!(msg.kwargs.is_empty());
    }

    #[test]
    fn a_one_off_envelope_reads_back_as_a_one_off_with_an_id_of_its_own() {
        let envelope = one_off_envelope("generate_crm_report", tick(), "celery", "beat@host");
        let (msg, _) = TaskMessage::parse(envelope.to_string().as_bytes()).unwrap();
        assert!(msg.one_off);
        assert_eq!(msg.tick, Some(tick()));
        assert_eq!(
            msg.id,
            "crm.tasks.generate_crm_report@2026-11-30T06:00:00Z/one-off"
        );
        let scheduled = scheduled_envelope("generate_crm_report", tick(), "celery", "o");
        let (msg, _) = TaskMessage::parse(scheduled.to_string().as_bytes()).unwrap();
        assert!(!msg.one_off);
        let mut bad = envelope.clone();
        bad["headers"][ONE_OFF_HEADER] = json!("yes");
        assert!(TaskMessage::parse(bad.to_string().as_bytes()).is_err());
        bad["headers"][ONE_OFF_HEADER] = json!(true);
        bad["headers"][TICK_HEADER] = Value::Null;
        assert!(TaskMessage::parse(bad.to_string().as_bytes()).is_err());
    }

    #[test]
    fn two_publishes_of_one_tick_share_the_id_but_not_the_delivery_tag() {
        let a = scheduled_envelope("x", tick(), "celery", "o");
        let b = scheduled_envelope("x", tick(), "celery", "o");
        assert_eq!(a["headers"]["id"], b["headers"]["id"]);
        assert_ne!(
            a["properties"]["delivery_tag"],
            b["properties"]["delivery_tag"]
        );
    }

    #[test]
    fn garbage_and_foreign_serialisations_are_malformed_with_a_reason() {
        let err = TaskMessage::parse(b"not json").unwrap_err();
        assert!(err.0.contains("not JSON"), "{err}");
        let mut envelope = scheduled_envelope("x", tick(), "celery", "o");
        envelope["content-type"] = json!("application/x-python-serialize");
        let err = TaskMessage::parse(envelope.to_string().as_bytes()).unwrap_err();
        assert!(err.0.contains("not application/json"), "{err}");
        let mut envelope = scheduled_envelope("x", tick(), "celery", "o");
        envelope["body"] = json!("!!!");
        let err = TaskMessage::parse(envelope.to_string().as_bytes()).unwrap_err();
        assert!(err.0.contains("base64"), "{err}");
        let err = TaskMessage::parse(br#"{"body": "W10=", "headers": {}}"#).unwrap_err();
        assert!(err.0.contains("no task"), "{err}");
    }

    #[test]
    fn celery_offsets_and_naive_times_are_read_as_instants() {
        assert_eq!(parse_celery_time("2026-11-30T07:00:00+01:00"), Some(tick()));
        assert_eq!(
            parse_celery_time("2026-11-30T06:00:00.000000"),
            Some(tick())
        );
        assert_eq!(parse_celery_time("Monday"), None);
    }

    #[test]
    fn delivery_tags_look_like_uuid4() {
        let tag = uuid4();
        assert_eq!(tag.len(), 36);
        assert_eq!(&tag[14..15], "4");
    }
}
