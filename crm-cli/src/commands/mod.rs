//! One function per subcommand; each turns settings into library calls.

mod crontab;

use crm_core::Database;

use crate::cli::{Cli, Command, Settings};
use crate::outcome::{CommandResult, Failure, UsageContext as _};

pub(crate) async fn run(cli: Cli) -> CommandResult {
    let settings = cli.settings;
    match cli.command {
        Command::Migrate => {
            let db = connect(&settings).await?;
            println!("Database {} is up to date.", db.backend_name());
            Ok(())
        }
        Command::Crontab(command) => {
            let jobs = Vec::new();
            crontab::run(&command, &settings, &jobs)
        }
        _ => Err(Failure::Usage(anyhow::anyhow!("not wired yet"))),
    }
}

/// Opens (and migrates) the configured database. A URL that cannot be understood is a
/// configuration error (exit 2); a database that cannot be reached is a failure (exit 1).
async fn connect(settings: &Settings) -> CommandResult<Database> {
    let url = &settings.database_url;
    match Database::connect(url).await {
        Ok(db) => Ok(db),
        Err(e @ crm_core::CoreError::InvalidUrl(_)) => Err(e).usage("Invalid CRM_DATABASE_URL"),
        Err(e) => Err(Failure::Failed(anyhow::Error::new(e).context(format!(
            "Failed to open the database {}",
            crm_core::redact_password(url)
        )))),
    }
}
