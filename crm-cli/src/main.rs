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
        Some(path) => {
            dotenvy::from_path(&path)
                .map_err(|e| format!("cannot read the environment file {}: {e}", path.display()))?;
            if let Some(warning) = env_file_warning(std::path::Path::new(&path)) {
                eprintln!("crm: warning: {warning}");
            }
            Ok(())
        }
        None => Ok(()),
    }
}

/// A warning when the environment file can be read by users other than its owner: it is where
/// the README tells operators to keep `CRM_API_TOKEN` and database passwords. Only a warning
/// (on stderr, naming the file and its mode, never its contents): a group-readable file can be
/// deliberate, and refusing to start would turn a working deployment into an outage.
fn env_file_warning(path: &std::path::Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then(|| {
            format!(
                "the environment file {} can be read by other users (mode {mode:04o}); it may \
                 hold secrets: chmod 600 {}",
                path.display(),
                path.display()
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Service logs go to stderr, filtered by `RUST_LOG`, so stdout stays for what a command
/// prints. By default a service (`serve`, `scheduler`) logs at info; a one-shot command only
/// reports errors, since it prints its own outcome: the runner's errors (each one ends up in
/// the run's report, which the command prints) and the pool's warnings about a connection the
/// server dropped are left out, so a failure is said once, on one line.
fn init_tracing(long_running: bool) {
    use std::io::IsTerminal as _;

    let default = if long_running {
        "warn,crm_core=info,crm_jobs=info,crm_server=info,crm=info"
    } else {
        "warn,crm_jobs::alert=off,crm_jobs::runner=off,sqlx=error"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
        // async-h1's trace level dumps whole HTTP requests, the jobs' `Authorization: Bearer`
        // header included: never let it through, whatever RUST_LOG asks (security review S8).
        .add_directive("async_h1=debug".parse().expect("a valid tracing directive"));
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
