//! `--metrics-bind ADDR` of `crm scheduler`, `crm worker` and `crm beat`: `/metrics` on a
//! listener of its own, so Prometheus can scrape the processes that have no GraphQL server.

use std::sync::Arc;

use crm_core::{CrmStore, Database};
use crm_jobs::Runner;
use crm_server::{BoundServer, ServerConfig};

use crate::cli::{MetricsArgs, Settings};
use crate::outcome::{CommandResult, Failure};

/// Binds `--metrics-bind`'s address, if given, before the process starts any work: an address
/// that cannot be used (taken, not this machine's, a privileged port) is a configuration
/// error, exit 2 with one line, rather than a service that runs unseen by its monitoring.
pub(crate) async fn bind(
    db: &Database,
    settings: &Settings,
    args: &MetricsArgs,
) -> CommandResult<Option<BoundServer>> {
    let Some(addr) = args.metrics_bind else {
        return Ok(None);
    };
    let store: Arc<dyn CrmStore> = Arc::new(db.clone());
    let config = ServerConfig {
        bind: addr,
        api_token: settings.api_token.clone(),
        ..ServerConfig::default()
    };
    BoundServer::bind_metrics(store, config)
        .await
        .map(Some)
        .map_err(|e| {
            Failure::Usage(anyhow::anyhow!(
                "cannot serve metrics on --metrics-bind {addr}: {e}"
            ))
        })
}

/// Serves `/metrics` for `runner`'s jobs on `server` (if bound) in a task of its own, for as
/// long as the process runs; says where on stderr.
pub(crate) fn start(server: Option<BoundServer>, runner: Arc<Runner>) {
    let Some(server) = server else {
        return;
    };
    let server = server.with_jobs(runner);
    eprintln!("Serving metrics at http://{}/metrics", server.local_addr());
    async_std::task::spawn(async move {
        if let Err(e) = server.run().await {
            tracing::error!(error = %e, "The metrics listener stopped");
        }
    });
}
