//! `crm`: the command line of the CRM. Parsing, configuration and wiring only; the work is done
//! by `crm-core`, `crm-jobs` and `crm-server`.

mod cli;
mod commands;
mod outcome;

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    if let Err(reason) = load_env_file() {
        eprintln!("crm: {reason}");
        return std::process::ExitCode::from(2);
    }
    let cli = cli::Cli::parse();
    init_tracing(cli.command.is_long_running());
    match async_std::task::block_on(commands::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("crm: {failure}");
            failure.exit_code()
        }
    }
}

/// Reads `--env-file FILE` (or `CRM_ENV_FILE`) into the environment before the command line is
/// parsed, so that its variables act as defaults for every flag.
fn load_env_file() -> Result<(), String> {
    let mut args = std::env::args_os().skip(1);
    let mut file = std::env::var_os("CRM_ENV_FILE");
    while let Some(arg) = args.next() {
        if arg == "--env-file" {
            file = args.next();
        } else if let Some(value) = arg.to_str().and_then(|a| a.strip_prefix("--env-file=")) {
            file = Some(value.into());
        }
    }
    match file {
        Some(path) => dotenvy::from_path(&path)
            .map_err(|e| format!("cannot read the environment file {}: {e}", path.display())),
        None => Ok(()),
    }
}

/// Service logs go to stderr, filtered by `RUST_LOG`, so stdout stays for what a command
/// prints. By default a service (`serve`, `scheduler`) logs at info; a one-shot command only
/// reports errors, since it prints its own outcome.
fn init_tracing(long_running: bool) {
    use std::io::IsTerminal as _;

    let default = if long_running {
        "warn,crm_core=info,crm_jobs=info,crm_server=info,crm=info"
    } else {
        "warn,crm_jobs::alert=off,crm_jobs::runner=error"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        // A failed write (stderr closed: its reader or log collector went away) is otherwise
        // reported with `eprintln!`, which panics on the same closed stderr, in whatever task
        // logged: a scheduler's round died that way and its shutdown then waited 60 s for it.
        .log_internal_errors(false)
        .init();
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::cli::Cli::command().debug_assert();
    }
}
