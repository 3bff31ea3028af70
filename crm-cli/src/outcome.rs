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
        match self {
            Failure::Usage(e) | Failure::Failed(e) => f.write_str(&one_line(e)),
        }
    }
}

/// The context chain on one line, "Failed to open …: cause", as `{:#}` joins it, but with each
/// cause that its predecessor already quotes left out: errors that show their source in their
/// own message (thiserror's `"storage failure: {0}"` on a `#[from]` field, sqlx's I/O errors)
/// would otherwise say the same reason two or three times over.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    let mut previous = String::new();
    for cause in error.chain() {
        let text = cause.to_string().replace('\n', " ");
        if !previous.is_empty() && previous.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
        previous = text;
    }
    line
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_quoted_by_its_error_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 15 s");
        let error = anyhow::Error::new(crm_core::CoreError::from(sqlx_io(io)))
            .context("Failed to open the database postgres://h/crm");
        assert_eq!(
            Failure::Failed(error).to_string(),
            "Failed to open the database postgres://h/crm: storage failure: error communicating \
             with database: no answer within 15 s"
        );
    }

    #[test]
    fn causes_that_add_something_are_all_kept() {
        let error = anyhow::anyhow!("root cause")
            .context("middle")
            .context("top");
        assert_eq!(
            Failure::Failed(error).to_string(),
            "top: middle: root cause"
        );
    }

    fn sqlx_io(io: std::io::Error) -> sqlx::Error {
        sqlx::Error::Io(io)
    }
}
