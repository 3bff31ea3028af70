//! What a resolver can answer instead of data, and how it reaches the client.
//!
//! Every error becomes a GraphQL error with a message a user can act on and an extension `code`
//! a program can branch on. Storage failures are logged here, once, with their detail, and the
//! client only learns that an internal error happened: SQL text and database messages never
//! leave the server.

use crm_core::CoreError;
use juniper::{FieldError, IntoFieldError, ScalarValue, Value};

/// Why a GraphQL field could not be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The input broke a rule; the message says which field and why.
    #[error("{field}: {message}")]
    Validation {
        /// The argument or input field at fault (`email`, `price`, `first`…).
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A record the request refers to does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The write would duplicate a unique value (an e-mail, in any letter case).
    #[error("{0}")]
    Conflict(String),
    /// A mutation arrived without the configured bearer token, or with a wrong one.
    #[error(
        "this mutation needs the header `Authorization: Bearer <token>` with the server's API token"
    )]
    Unauthorized,
    /// A mutation came from another host to a server without an API token: without a token
    /// only clients on the server's own machine (loopback) may write.
    #[error(
        "this server has no API token, so it takes mutations only from its own machine; \
         set CRM_API_TOKEN on the server and send `Authorization: Bearer <token>`"
    )]
    NoTokenConfigured,
    /// The database could not be reached or stayed busy (locked by another writer, restarting,
    /// connections dropped): passing, so the client is told to try again. A mutation runs in
    /// one transaction, so it was applied whole or not at all; only a connection lost during
    /// the commit itself leaves the server, too, not knowing which.
    #[error("the database is unavailable or busy right now; try again shortly")]
    Unavailable,
    /// Something failed on our side; the detail went to the server's log.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// A validation error on `field`.
    pub(crate) fn validation(field: &'static str, message: impl Into<String>) -> Self {
        Self::Validation {
            field,
            message: message.into(),
        }
    }

    /// The machine-readable code sent in the error's `extensions`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Validation { .. } => "VALIDATION",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::Unauthorized | ApiError::NoTokenConfigured => "UNAUTHORIZED",
            ApiError::Unavailable => "UNAVAILABLE",
            ApiError::Internal => "INTERNAL",
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(error: CoreError) -> Self {
        match error {
            CoreError::Validation { field, message } => ApiError::Validation { field, message },
            CoreError::NotFound { entity, id } => {
                ApiError::NotFound(format!("{entity} {id} not found"))
            }
            CoreError::Conflict(message) => ApiError::Conflict(message),
            // Told apart from a bug so that clients retry and operators see an outage, not a
            // stream of "internal error"s; still logged once here with its detail.
            other if other.is_unavailable() => {
                tracing::warn!(error = %other, "database unavailable while answering a GraphQL request");
                ApiError::Unavailable
            }
            other => {
                tracing::error!(error = %other, "storage failure while answering a GraphQL request");
                ApiError::Internal
            }
        }
    }
}

/// Longest error message sent to a client, in bytes (before the note of how long it was).
/// Messages quote the input they refuse, and a megabyte of input must not come back whole
/// (found by the property tests of issue 8).
pub(crate) const MAX_MESSAGE_BYTES: usize = 500;

/// `message`, cut to [`MAX_MESSAGE_BYTES`] at a character boundary, saying how long it was.
pub(crate) fn clip(message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &message[..end], message.len())
}

/// Clips every `message` of every `errors` list in a GraphQL answer (or a batch of them): the
/// ones juniper writes itself when variables do not fit their types quote the whole value.
pub(crate) fn clip_messages(answer: &mut serde_json::Value) {
    match answer {
        serde_json::Value::Array(answers) => answers.iter_mut().for_each(clip_messages),
        serde_json::Value::Object(fields) => {
            if let Some(serde_json::Value::Array(errors)) = fields.get_mut("errors") {
                for error in errors {
                    if let Some(message) = error.get_mut("message")
                        && let Some(text) = message.as_str()
                        && text.len() > MAX_MESSAGE_BYTES
                    {
                        *message = serde_json::Value::from(clip(text.to_owned()));
                    }
                }
            }
        }
        _ => {}
    }
}

impl<S: ScalarValue> IntoFieldError<S> for ApiError {
    fn into_field_error(self) -> FieldError<S> {
        let mut extensions = juniper::Object::with_capacity(2);
        extensions.add_field("code", Value::scalar(self.code().to_owned()));
        if let ApiError::Validation { field, .. } = &self {
            extensions.add_field("field", Value::scalar((*field).to_owned()));
        }
        FieldError::new(clip(self.to_string()), Value::Object(extensions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use juniper::DefaultScalarValue;

    fn field_error(e: ApiError) -> FieldError<DefaultScalarValue> {
        e.into_field_error()
    }

    /// The text of the error's extension `name`, as a client reads it.
    fn extension(err: &FieldError<DefaultScalarValue>, name: &str) -> Option<String> {
        err.extensions()
            .as_object_value()?
            .get_field_value(name)?
            .as_scalar()?
            .try_as_str()
            .map(str::to_owned)
    }

    #[test]
    fn long_messages_are_clipped_at_a_character_boundary() {
        assert_eq!(clip("short".into()), "short");
        let long = format!("email: '{}'", "é".repeat(1_000));
        let clipped = clip(long.clone());
        assert!(clipped.len() < MAX_MESSAGE_BYTES + 40, "{}", clipped.len());
        assert!(clipped.starts_with("email: 'éé"));
        assert!(clipped.ends_with(&format!("… ({} bytes in all)", long.len())));
        let mut answer = serde_json::json!([{"errors": [{"message": long}]}, {"data": 1}]);
        clip_messages(&mut answer);
        assert_eq!(answer[0]["errors"][0]["message"], clipped);
    }

    #[test]
    fn validation_errors_carry_their_code_and_field() {
        let err = field_error(ApiError::validation(
            "email",
            "'x' is not a valid e-mail address",
        ));
        assert_eq!(err.message(), "email: 'x' is not a valid e-mail address");
        assert_eq!(extension(&err, "code").as_deref(), Some("VALIDATION"));
        assert_eq!(extension(&err, "field").as_deref(), Some("email"));
    }

    #[test]
    fn failures_on_our_side_reach_the_client_as_internal_error_only() {
        let core = CoreError::InvalidUrl("postgres://admin:***@db/crm: SELECT failed".into());
        let err = field_error(ApiError::from(core));
        assert_eq!(err.message(), "internal error");
        assert_eq!(extension(&err, "code").as_deref(), Some("INTERNAL"));
    }
}
