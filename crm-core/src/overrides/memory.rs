//! Overrides in memory: one process (embedding and tests).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use super::{
    AuditEntry, ChangeRequest, JobOverride, MAX_AUDIT_LIMIT, OneOffRun, OverrideChange,
    OverrideSnapshot, OverrideStore, accept_change, next_override,
};
use crate::domain::truncate_to_micros;
use crate::error::Result;

/// Overrides held in this process; lost when it exits. It cannot see a run ledger, so its
/// snapshot lists every one-off run (the runner skips those it already ran).
#[derive(Debug, Default)]
pub struct MemoryOverrides {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    version: u64,
    overrides: BTreeMap<String, JobOverride>,
    one_offs: Vec<OneOffRun>,
    audit: Vec<AuditEntry>,
}

impl MemoryOverrides {
    /// No overrides yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl OverrideStore for MemoryOverrides {
    async fn apply(&self, request: ChangeRequest<'_>) -> Result<u64> {
        let (code, change) = (request.code, request.change);
        let (actor, now) = accept_change(&request)?;
        let mut state = self.state();
        match change {
            OverrideChange::RunAt(at) => {
                let at = truncate_to_micros(*at);
                if !state.one_offs.iter().any(|r| r.code == code && r.at == at) {
                    let id = state.one_offs.len() as i64 + 1;
                    state.one_offs.push(OneOffRun {
                        id,
                        code: code.to_owned(),
                        at,
                        requested_by: actor.clone(),
                        requested_at: now,
                    });
                }
            }
            _ => {
                let next = next_override(state.overrides.get(code), code, change, &actor, now);
                state.overrides.insert(code.to_owned(), next);
            }
        }
        let id = state.audit.len() as i64 + 1;
        state.audit.push(AuditEntry {
            id,
            at: now,
            actor,
            code: code.to_owned(),
            action: change.action().to_owned(),
            detail: change.detail(),
        });
        state.version += 1;
        Ok(state.version)
    }

    async fn version(&self) -> Result<u64> {
        Ok(self.state().version)
    }

    async fn snapshot(&self) -> Result<OverrideSnapshot> {
        let state = self.state();
        let mut pending = state.one_offs.clone();
        pending.sort_by_key(|r| (r.at, r.id));
        Ok(OverrideSnapshot {
            version: state.version,
            overrides: state.overrides.values().cloned().collect(),
            pending,
        })
    }

    async fn audit(&self, code: Option<&str>, limit: u32) -> Result<Vec<AuditEntry>> {
        let limit = limit.min(MAX_AUDIT_LIMIT) as usize;
        Ok(self
            .state()
            .audit
            .iter()
            .rev()
            .filter(|e| code.is_none_or(|c| e.code == c))
            .take(limit)
            .cloned()
            .collect())
    }
}
