//! `crm-tokio-app [--once]`: the CRM's jobs embedded in a tokio program (see the README).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let once = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--once") => true,
        Some(other) => {
            eprintln!("usage: crm-tokio-app [--once] (unknown argument '{other}')");
            return ExitCode::from(2);
        }
    };
    match crm_tokio_app::run(once).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("crm-tokio-app: {e:#}");
            ExitCode::from(2)
        }
    }
}
