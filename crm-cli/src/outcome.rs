//! How a command ends: the contract's exit codes with a one-line reason.

use std::fmt;
use std::process::ExitCode;

/// A command that did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad usage or configuration (a malformed URL, an unknown job code…): exit 2.
    Usage(anyhow::Error),
    /// A job or request failed: exit 1.
    Failed(anyhow::Error),
}

impl Failure {
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            Failure::Usage(_) => ExitCode::from(2),
            Failure::Failed(_) => ExitCode::from(1),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:#}` joins the context chain on one line: "Failed to open …: cause".
        match self {
            Failure::Usage(e) | Failure::Failed(e) => {
                write!(f, "{}", format!("{e:#}").replace('\n', " "))
            }
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Failed(error)
    }
}

/// `Result` of a command.
pub(crate) type CommandResult<T = ()> = Result<T, Failure>;

/// Marks an error as a usage or configuration error.
pub(crate) trait UsageContext<T> {
    /// Turns an error into [`Failure::Usage`] with `context`.
    fn usage(self, context: &str) -> CommandResult<T>;
}

impl<T, E: Into<anyhow::Error>> UsageContext<T> for Result<T, E> {
    fn usage(self, context: &str) -> CommandResult<T> {
        self.map_err(|e| Failure::Usage(e.into().context(context.to_owned())))
    }
}
