//! kombu's Redis transport and Celery's Redis result backend, as the Python side lays them out,
//! so that Python producers, workers, beats and Flower share the same keys with us.
//!
//! - a queue is a list: producers `LPUSH`, consumers `BRPOP` (the queue and its priority
//!   lists `<queue>\x06\x163`, `…6`, `…9`, in that order);
//! - `_kombu.binding.<exchange>` is a set of `routing_key\x06\x16pattern\x06\x16queue`;
//! - a message taken but not yet acknowledged is in the hash `unacked` (delivery tag →
//!   `[envelope, exchange, routing_key]`) and the sorted set `unacked_index` (tag → the Unix
//!   time it was taken); after the visibility timeout it is pushed back onto its queue, marked
//!   `redelivered`, under the `unacked_mutex` lock (kombu's `restore_visible`);
//! - a result is the JSON `celery-task-meta-<id>`, written with an expiry and PUBLISHed on the
//!   channel of the same name, which `AsyncResult.get()` listens on.
//!
//! Every key starts with the configured prefix (kombu's and Celery's `global_keyprefix`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};
use redis::AsyncCommands as _;
use redis::aio::MultiplexedConnection;
use serde_json::{Value, json};

use super::message::{MalformedMessage, TaskMessage, uuid4};
use super::{BrokerConfig, BrokerError};

/// kombu's separator inside binding entries and priority queue names.
const SEP: &str = "\x06\x16";

/// How long kombu's restore lock holds if its holder dies.
const UNACKED_MUTEX_EXPIRE_SECS: u64 = 300;

/// At most this many expired messages are restored per sweep, as kombu does.
const RESTORE_BATCH: isize = 10;

/// Publishes the message unless the (code, tick) lock exists: the lock and the push happen in
/// one step, so a beat dying between them cannot lose the tick nor publish it twice.
const PUBLISH_ONCE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('LPUSH', KEYS[2], ARGV[3])
  return 1
end
return 0";

/// Pushes a message back onto its queue only if it is still unacknowledged (someone else may
/// have restored or acknowledged it meanwhile).
const RESTORE_ONE: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call(ARGV[3], KEYS[3], ARGV[2])
  return 1
end
return 0";

/// Takes the next message (`KEYS[1..n-3]`: the queue, then its priority lists) and records it
/// as unacknowledged (`KEYS[n-2]`: `unacked_index`, `KEYS[n-1]`: `unacked`) in one step, so a
/// worker killed -9 right after taking a message cannot lose it: it is either still queued or
/// recorded, and restored after the visibility timeout. (kombu pops with BRPOP and records in
/// a second round trip; a worker killed between the two loses the message for good. The kill -9
/// tests hit that window.) `ARGV[1]`: now (Unix seconds), `ARGV[2]`: the default routing key.
/// Answers `{raw, delivery_tag}` (`''` when the message has no tag: not recorded, malformed),
/// or nil when every list is empty.
///
/// First, if `ARGV[3]` (a delivery tag) is not empty, the slot's previous task, which has
/// finished, gets its result (`KEYS[n]`: its result key, `ARGV[4]`: the JSON, `ARGV[5]`: the
/// expiry in seconds; also PUBLISHed) and is acknowledged: a worker pays one round trip per task
/// instead of two, and the acknowledgement still comes after the run, never before.
const TAKE: &str = r"
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[#KEYS], ARGV[4], 'EX', ARGV[5])
  redis.call('PUBLISH', KEYS[#KEYS], ARGV[4])
  redis.call('ZREM', KEYS[#KEYS - 2], ARGV[3])
  redis.call('HDEL', KEYS[#KEYS - 1], ARGV[3])
end
for i = 1, #KEYS - 3 do
  local raw = redis.call('RPOP', KEYS[i])
  if raw then
    local ok, msg = pcall(cjson.decode, raw)
    local props = ok and type(msg) == 'table' and msg['properties']
    local tag = type(props) == 'table' and props['delivery_tag']
    if type(tag) == 'string' and tag ~= '' then
      local info = props['delivery_info']
      local exchange, routing_key = '', ''
      if type(info) == 'table' then
        if type(info['exchange']) == 'string' then exchange = info['exchange'] end
        if type(info['routing_key']) == 'string' then routing_key = info['routing_key'] end
      end
      if routing_key == '' then routing_key = ARGV[2] end
      redis.call('ZADD', KEYS[#KEYS - 2], ARGV[1], tag)
      redis.call('HSET', KEYS[#KEYS - 1], tag,
        '[' .. raw .. ',' .. cjson.encode(exchange) .. ',' .. cjson.encode(routing_key) .. ']')
      return {raw, tag}
    end
    return {raw, ''}
  end
end
return false";

/// Releases kombu's restore lock only if we still hold it.
const RELEASE_MUTEX: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// What a fetch from the queue gave.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// A readable message, now recorded as unacknowledged.
    Message {
        /// What the worker needs from it.
        message: TaskMessage,
        /// The raw envelope, kept for a requeue or the dead-letter list.
        raw: String,
    },
    /// Something that is not a Celery v2 JSON message.
    Malformed {
        /// The raw bytes, as text (lossy).
        raw: String,
        /// Why it could not be read.
        reason: MalformedMessage,
        /// Its delivery tag if it was recorded as unacknowledged (it had one), to drop that
        /// record when it is dead-lettered.
        tag: Option<String>,
    },
}

/// A finished task's result, to be written and the task acknowledged in one step (with the
/// worker's next take, or on its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finished {
    /// The task id (its result key).
    id: String,
    /// The result as Celery's backend stores it.
    meta: String,
    /// The message to acknowledge.
    delivery_tag: String,
}

/// A connection to the broker with the layout above. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    client: redis::Client,
    config: BrokerConfig,
    conn: MultiplexedConnection,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: show only the queue and prefix.
        f.debug_struct("Broker")
            .field("queue", &self.config.queue)
            .field("key_prefix", &self.config.key_prefix)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

impl Broker {
    /// Connects to the broker (checking it answers) and declares the queue's binding, as a
    /// kombu consumer does, so Python producers route to it.
    pub async fn connect(config: BrokerConfig) -> Result<Self, BrokerError> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| BrokerError::InvalidUrl(e.to_string()))?;
        let mut conn = super::rt::connect(&client)
            .await
            .map_err(BrokerError::Unreachable)?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(BrokerError::Unreachable)?;
        let broker = Self {
            client,
            config,
            conn,
        };
        broker.declare().await?;
        Ok(broker)
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// A key under the configured prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{}", self.config.key_prefix, name)
    }

    fn queue_key(&self) -> String {
        self.key(&self.config.queue)
    }

    /// The list bad messages are moved to, with the reason (`<queue>.dead_letter`).
    pub fn dead_letter_key(&self) -> String {
        self.key(&format!("{}.dead_letter", self.config.queue))
    }

    /// The result key Celery's Redis backend reads for task `id`.
    pub fn result_key(&self, id: &str) -> String {
        self.key(&format!("celery-task-meta-{id}"))
    }

    /// A dedicated connection, for a blocking pop that must not hold up other commands.
    pub(crate) async fn dedicated(&self) -> Result<MultiplexedConnection, BrokerError> {
        super::rt::connect(&self.client)
            .await
            .map_err(BrokerError::Unreachable)
    }

    async fn declare(&self) -> Result<(), BrokerError> {
        let queue = &self.config.queue;
        let binding = format!("{queue}{SEP}{SEP}{queue}");
        let mut conn = self.conn.clone();
        let _: () = conn
            .sadd(self.key(&format!("_kombu.binding.{queue}")), binding)
            .await?;
        Ok(())
    }

    /// Pushes an envelope onto the queue, as `send_task` does.
    pub async fn publish(&self, envelope: &Value) -> Result<(), BrokerError> {
        let mut conn = self.conn.clone();
        let _: () = conn.lpush(self.queue_key(), envelope.to_string()).await?;
        Ok(())
    }

    /// Pushes an envelope unless `lock` exists, setting `lock` (with `ttl`) in the same step;
    /// `true` if this call published it.
    pub async fn publish_once(
        &self,
        lock: &str,
        ttl: Duration,
        envelope: &Value,
    ) -> Result<bool, BrokerError> {
        let mut conn = self.conn.clone();
        let published: i64 = redis::Script::new(PUBLISH_ONCE)
            .key(self.key(lock))
            .key(self.queue_key())
            .arg(envelope["headers"]["origin"].as_str().unwrap_or("crm"))
            .arg(ttl.as_secs().max(1))
            .arg(envelope.to_string())
            .invoke_async(&mut conn)
            .await?;
        Ok(published == 1)
    }

    /// PUBLISHes a monitoring event's envelope on `channel` (already prefixed).
    pub(crate) async fn publish_event(
        &self,
        channel: &str,
        envelope: &Value,
    ) -> Result<(), BrokerError> {
        let _: i64 = self
            .conn
            .clone()
            .publish(channel, envelope.to_string())
            .await?;
        Ok(())
    }

    /// Waits up to `wait` for a message (on `conn`, which it blocks) and records it as
    /// unacknowledged, in the same step as it leaves the queue ([`TAKE`]). `None` if none came.
    /// `finished`, the previous task's result, is written and that task acknowledged first, in
    /// the same step (done once this returns `Ok`).
    pub(crate) async fn fetch(
        &self,
        conn: &mut MultiplexedConnection,
        wait: Duration,
        finished: Option<&Finished>,
    ) -> Result<Option<Delivery>, BrokerError> {
        let queue = self.queue_key();
        let mut taken = self.take(&queue, finished).await?;
        if taken.is_none() {
            // Blocks until the queue holds something without taking it (the list rotated onto
            // itself, last to last, is unchanged), then takes it atomically. A message only on
            // a priority list is found at the next fetch.
            let arrived: Option<Vec<u8>> = redis::cmd("BLMOVE")
                .arg(&queue)
                .arg(&queue)
                .arg("RIGHT")
                .arg("RIGHT")
                .arg(wait.as_secs_f64().max(0.01))
                .query_async(conn)
                .await?;
            if arrived.is_some() {
                taken = self.take(&queue, None).await?;
            }
        }
        let Some((bytes, tag)) = taken else {
            return Ok(None);
        };
        let raw = String::from_utf8_lossy(&bytes).into_owned();
        let tag = (!tag.is_empty()).then_some(tag);
        let message = match TaskMessage::parse(&bytes) {
            Ok((message, _)) => message,
            Err(reason) => return Ok(Some(Delivery::Malformed { raw, reason, tag })),
        };
        if tag.as_deref() != Some(message.delivery_tag.as_str()) {
            // Readable to us but not to the script (it found no delivery tag): recorded now.
            let entry = format!(
                "[{raw},{},{}]",
                Value::from(message.exchange.as_str()),
                Value::from(self.routing_key(&message))
            );
            let _: () = redis::pipe()
                .atomic()
                .zadd(self.key("unacked_index"), &message.delivery_tag, unix_now())
                .hset(self.key("unacked"), &message.delivery_tag, entry)
                .query_async(&mut self.conn.clone())
                .await?;
        }
        Ok(Some(Delivery::Message { message, raw }))
    }

    /// Runs [`TAKE`] over the queue and its priority lists, `finished` first.
    async fn take(
        &self,
        queue: &str,
        finished: Option<&Finished>,
    ) -> Result<Option<(Vec<u8>, String)>, BrokerError> {
        let (result_key, tag, meta) = match finished {
            Some(f) => (
                self.result_key(&f.id),
                f.delivery_tag.as_str(),
                f.meta.as_str(),
            ),
            None => (self.result_key(""), "", ""),
        };
        Ok(redis::Script::new(TAKE)
            .key(queue)
            .key(format!("{queue}{SEP}3"))
            .key(format!("{queue}{SEP}6"))
            .key(format!("{queue}{SEP}9"))
            .key(self.key("unacked_index"))
            .key(self.key("unacked"))
            .key(result_key)
            .arg(unix_now())
            .arg(&self.config.queue)
            .arg(tag)
            .arg(meta)
            .arg(self.config.result_expires.as_secs().max(1))
            .invoke_async(&mut self.conn.clone())
            .await?)
    }

    /// The routing key a message is restored with: its own, else the queue's name.
    fn routing_key<'a>(&'a self, message: &'a TaskMessage) -> &'a str {
        if message.routing_key.is_empty() {
            &self.config.queue
        } else {
            &message.routing_key
        }
    }

    /// Acknowledges a message: it leaves the unacknowledged hash and index for good.
    pub async fn ack(&self, delivery_tag: &str) -> Result<(), BrokerError> {
        let _: () = redis::pipe()
            .atomic()
            .zrem(self.key("unacked_index"), delivery_tag)
            .hdel(self.key("unacked"), delivery_tag)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Acknowledges a message and puts it back at the end of its queue (to be tried again after
    /// the messages waiting), in one step.
    pub(crate) async fn requeue(&self, delivery_tag: &str, raw: &str) -> Result<(), BrokerError> {
        self.restore_one(delivery_tag, raw, "LPUSH").await
    }

    /// Puts a taken message back at the head of its queue (the next one taken), acknowledged
    /// in the same step, if it is still unacknowledged: a held eta task whose time has come.
    pub(crate) async fn requeue_front(
        &self,
        delivery_tag: &str,
        raw: &str,
    ) -> Result<(), BrokerError> {
        self.restore_one(delivery_tag, raw, "RPUSH").await
    }

    /// Runs [`RESTORE_ONE`]: acknowledges the message and pushes it onto its queue with `push`
    /// (`LPUSH`: the tail, taken last; `RPUSH`: the head, taken next).
    async fn restore_one(
        &self,
        delivery_tag: &str,
        raw: &str,
        push: &str,
    ) -> Result<(), BrokerError> {
        let _: i64 = redis::Script::new(RESTORE_ONE)
            .key(self.key("unacked"))
            .key(self.key("unacked_index"))
            .key(self.queue_key())
            .arg(delivery_tag)
            .arg(raw)
            .arg(push)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Marks taken messages as taken now (one `ZADD XX`), so that no worker's sweep restores
    /// them after the visibility timeout while this worker holds them; a message restored or
    /// acknowledged meanwhile is not brought back.
    pub(crate) async fn touch_unacked(&self, delivery_tags: &[String]) -> Result<(), BrokerError> {
        if delivery_tags.is_empty() {
            return Ok(());
        }
        let now = unix_now();
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(self.key("unacked_index")).arg("XX");
        for tag in delivery_tags {
            cmd.arg(now).arg(tag);
        }
        let _: i64 = cmd.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Moves a bad message to the dead-letter list with the reason, and acknowledges it if it
    /// was recorded as unacknowledged.
    pub(crate) async fn dead_letter(
        &self,
        raw: &str,
        reason: &str,
        delivery_tag: Option<&str>,
    ) -> Result<(), BrokerError> {
        let entry = json!({
            "reason": reason,
            "at": Utc::now().to_rfc3339_opts(SecondsFormat::Micros, false),
            "message": raw,
        });
        let mut pipe = redis::pipe();
        pipe.atomic()
            .lpush(self.dead_letter_key(), entry.to_string())
            .ignore();
        if let Some(tag) = delivery_tag {
            pipe.zrem(self.key("unacked_index"), tag)
                .ignore()
                .hdel(self.key("unacked"), tag)
                .ignore();
        }
        let _: () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Pushes messages taken more than the visibility timeout ago and never acknowledged (their
    /// worker died) back onto their queues, marked redelivered, as kombu's `restore_visible`.
    /// Returns how many were restored.
    pub async fn restore_visible(&self) -> Result<usize, BrokerError> {
        let mut conn = self.conn.clone();
        let mutex = self.key("unacked_mutex");
        let token = uuid4();
        let locked: Option<String> = redis::cmd("SET")
            .arg(&mutex)
            .arg(&token)
            .arg("NX")
            .arg("EX")
            .arg(UNACKED_MUTEX_EXPIRE_SECS)
            .query_async(&mut conn)
            .await?;
        if locked.is_none() {
            return Ok(0);
        }
        let result = self.restore_expired(&mut conn).await;
        let _: i64 = redis::Script::new(RELEASE_MUTEX)
            .key(&mutex)
            .arg(&token)
            .invoke_async(&mut conn)
            .await?;
        result
    }

    async fn restore_expired(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<usize, BrokerError> {
        let ceil = unix_now() - self.config.visibility_timeout.as_secs_f64();
        let tags: Vec<String> = conn
            .zrangebyscore_limit(self.key("unacked_index"), "-inf", ceil, 0, RESTORE_BATCH)
            .await?;
        let mut restored = 0;
        for tag in tags {
            let entry: Option<String> = conn.hget(self.key("unacked"), &tag).await?;
            let Some(entry) = entry else {
                let _: () = conn.zrem(self.key("unacked_index"), &tag).await?;
                continue;
            };
            let Ok(Value::Array(mut parts)) = serde_json::from_str::<Value>(&entry) else {
                tracing::warn!(delivery_tag = %tag, "An unacknowledged entry is not kombu's [message, exchange, routing key]; moved to the dead-letter list");
                self.dead_letter(&entry, "unreadable unacked entry", Some(&tag))
                    .await?;
                continue;
            };
            let routing_key = parts
                .get(2)
                .and_then(Value::as_str)
                .filter(|rk| !rk.is_empty())
                .unwrap_or(&self.config.queue)
                .to_owned();
            let mut payload = parts.swap_remove(0);
            if let Some(headers) = payload.get_mut("headers").and_then(Value::as_object_mut) {
                headers.insert("redelivered".into(), Value::Bool(true));
            }
            if let Some(info) = payload
                .pointer_mut("/properties/delivery_info")
                .and_then(Value::as_object_mut)
            {
                info.insert("redelivered".into(), Value::Bool(true));
            }
            let done: i64 = redis::Script::new(RESTORE_ONE)
                .key(self.key("unacked"))
                .key(self.key("unacked_index"))
                .key(self.key(&routing_key))
                .arg(&tag)
                .arg(payload.to_string())
                .arg("RPUSH")
                .invoke_async(conn)
                .await?;
            restored += usize::try_from(done).unwrap_or(0);
        }
        if restored > 0 {
            tracing::info!(
                restored,
                "Restored messages whose worker stopped before acknowledging them"
            );
        }
        Ok(restored)
    }

    /// Writes a task's result as Celery's Redis backend does: the JSON under
    /// `celery-task-meta-<id>` with the configured expiry, and PUBLISHed on that channel.
    pub async fn store_result(
        &self,
        id: &str,
        status: &str,
        result: Value,
        traceback: Option<&str>,
    ) -> Result<(), BrokerError> {
        let mut pipe = redis::pipe();
        self.result_commands(&mut pipe, id, status, result, traceback);
        let _: () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// [`Broker::store_result`] and [`Broker::ack`] in one Redis step: a worker dying between
    /// the two cannot leave a written result with its message still to be redelivered.
    pub async fn store_result_and_ack(
        &self,
        id: &str,
        status: &str,
        result: Value,
        traceback: Option<&str>,
        delivery_tag: &str,
    ) -> Result<(), BrokerError> {
        let finished = Self::finished(id, status, result, traceback, delivery_tag);
        self.store_finished(&finished).await
    }

    /// What [`Broker::store_result_and_ack`] writes, to send later (with the next take).
    pub(crate) fn finished(
        id: &str,
        status: &str,
        result: Value,
        traceback: Option<&str>,
        delivery_tag: &str,
    ) -> Finished {
        Finished {
            id: id.to_owned(),
            meta: result_meta(id, status, result, traceback),
            delivery_tag: delivery_tag.to_owned(),
        }
    }

    /// Writes a finished task's result and acknowledges it, in one Redis step.
    pub(crate) async fn store_finished(&self, finished: &Finished) -> Result<(), BrokerError> {
        let mut pipe = redis::pipe();
        self.result_meta_commands(&mut pipe, &finished.id, &finished.meta);
        pipe.zrem(self.key("unacked_index"), &finished.delivery_tag)
            .ignore()
            .hdel(self.key("unacked"), &finished.delivery_tag)
            .ignore();
        let _: () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    fn result_commands(
        &self,
        pipe: &mut redis::Pipeline,
        id: &str,
        status: &str,
        result: Value,
        traceback: Option<&str>,
    ) {
        let meta = result_meta(id, status, result, traceback);
        self.result_meta_commands(pipe, id, &meta);
    }

    fn result_meta_commands(&self, pipe: &mut redis::Pipeline, id: &str, meta: &str) {
        let key = self.result_key(id);
        pipe.atomic()
            .set_ex(&key, meta, self.config.result_expires.as_secs().max(1))
            .ignore()
            .publish(&key, meta)
            .ignore();
    }

    /// Reads a task's result as written by [`Broker::store_result`] (or by a Python worker).
    pub async fn result(&self, id: &str) -> Result<Option<Value>, BrokerError> {
        let raw: Option<String> = self.conn.clone().get(self.result_key(id)).await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    /// Deletes the key `name` (before the prefix); `true` if it existed.
    pub(crate) async fn delete_key(&self, name: &str) -> Result<bool, BrokerError> {
        let n: i64 = self.conn.clone().del(self.key(name)).await?;
        Ok(n > 0)
    }

    /// Remembers the first instant a message id was seen, so every delivery of a message that
    /// names no tick (a `send_task` from Python) runs for the same ledger tick.
    pub(crate) async fn first_seen(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, BrokerError> {
        let key = self.key(&format!("crm.first_seen.{id}"));
        let ttl = (self.config.visibility_timeout * 4).max(Duration::from_secs(86_400));
        let mut conn = self.conn.clone();
        let value = now.to_rfc3339_opts(SecondsFormat::Micros, true);
        let (stored,): (String,) = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(&key)
            .arg(&value)
            .arg("NX")
            .arg("EX")
            .arg(ttl.as_secs())
            .ignore()
            .get(&key)
            .query_async(&mut conn)
            .await?;
        Ok(DateTime::parse_from_rfc3339(&stored)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(now))
    }

    /// How many messages wait in the queue (not counting priority lists).
    pub async fn queue_len(&self) -> Result<usize, BrokerError> {
        Ok(self.conn.clone().llen(self.queue_key()).await?)
    }

    /// How many messages are taken and not yet acknowledged.
    pub async fn unacked_len(&self) -> Result<usize, BrokerError> {
        Ok(self.conn.clone().hlen(self.key("unacked")).await?)
    }

    /// The dead-letter entries, newest first.
    pub async fn dead_letters(&self) -> Result<Vec<Value>, BrokerError> {
        let raw: Vec<String> = self
            .conn
            .clone()
            .lrange(self.dead_letter_key(), 0, -1)
            .await?;
        Ok(raw
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect())
    }

    /// Deletes every key under the configured prefix (tests and benchmarks clean up with it).
    /// Refuses an empty prefix, which would mean the whole database.
    pub async fn delete_prefixed_keys(&self) -> Result<usize, BrokerError> {
        if self.config.key_prefix.is_empty() {
            return Err(BrokerError::InvalidConfig(
                "refusing to delete every key: no key prefix is set".into(),
            ));
        }
        let mut conn = self.conn.clone();
        let pattern = format!("{}*", self.config.key_prefix);
        let keys: Vec<String> = conn.keys(pattern).await?;
        if keys.is_empty() {
            return Ok(0);
        }
        let n: usize = conn.del(&keys).await?;
        Ok(n)
    }
}

/// A task's result as Celery's Redis backend stores it (`celery-task-meta-<id>`).
fn result_meta(id: &str, status: &str, result: Value, traceback: Option<&str>) -> String {
    json!({
        "status": status,
        "result": result,
        "traceback": traceback,
        "children": [],
        "date_done": Utc::now().to_rfc3339_opts(SecondsFormat::Micros, false),
        "task_id": id,
    })
    .to_string()
}
