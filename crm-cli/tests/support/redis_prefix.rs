//! A Redis key prefix of a test's own (kombu's `global_keyprefix`), every key under it deleted
//! when the test ends, on the real Redis (127.0.0.1:6379, or `CRM_TEST_REDIS_URL`). Without
//! Redis a test fails with the line that installs it, unless `CRM_TESTS_LEAVE_OUT` names
//! `redis` (`crm_core::testing::require`).
#![allow(dead_code, reason = "each test file uses a part of this module")]

/// The Redis the broker tests use.
pub(crate) fn redis_url() -> String {
    std::env::var("CRM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// A key prefix and a connection to read what is under it.
pub(crate) struct Prefix {
    pub(crate) prefix: String,
    pub(crate) conn: redis::Connection,
}

impl Prefix {
    /// A fresh prefix starting `crm_<tag>_<pid>_<random>:`; `None` when the person left
    /// Redis out (`CRM_TESTS_LEAVE_OUT=redis`, said on the terminal).
    pub(crate) fn new(tag: &str) -> Option<Self> {
        let prefix = format!(
            "crm_{tag}_{}_{:08x}:",
            std::process::id(),
            fastrand::u32(..)
        );
        use crm_core::testing::{Need, require, this_test};
        if !require(&this_test(), Need::Redis) {
            return None;
        }
        match redis::Client::open(redis_url()).and_then(|c| c.get_connection()) {
            Ok(conn) => Some(Self { prefix, conn }),
            Err(e) => panic!("Redis at {} refused the test: {e}", redis_url()),
        }
    }

    /// `kind` (`LLEN`, `HLEN`, `ZCARD`…) of the key `key` under the prefix.
    pub(crate) fn len(&mut self, kind: &str, key: &str) -> usize {
        redis::cmd(kind)
            .arg(format!("{}{key}", self.prefix))
            .query(&mut self.conn)
            .unwrap()
    }

    /// The keys under the prefix matching `pattern`.
    pub(crate) fn keys(&mut self, pattern: &str) -> Vec<String> {
        redis::cmd("KEYS")
            .arg(format!("{}{pattern}", self.prefix))
            .query(&mut self.conn)
            .unwrap()
    }

    /// The string at `key` (a whole key, prefix included).
    pub(crate) fn get(&mut self, key: &str) -> Option<String> {
        redis::cmd("GET").arg(key).query(&mut self.conn).unwrap()
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let keys = self.keys("*");
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut self.conn);
        }
    }
}
