//! kube-apiserver audit events: reading them (JSON lines, EventList, YAML, gzip) and deciding
//! which are persisted changes, with who made them and when. Used by `replay` and the webhook.

pub mod change;
pub mod event;
pub mod read;

pub use change::{
    AuditChange, ChangeKind, ChangeTarget, Classified, ScaleChange, SkipReason, Verb, classify,
};
pub use event::{AuditEvent, ObjectReference, ResponseStatus};
pub use read::{AuditInput, AuditReader, Entry, Malformed, Position, read_events};

pub use crate::identity::UserInfo;

/// Audit input that could not be read at all. Each message names the input and, where known,
/// the position; entries that are merely not audit events are [`Malformed`], not errors.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(
        "{input}: cannot read{}: {error}",
        .position.map(|p| format!(" at {p}")).unwrap_or_default()
    )]
    Io {
        input: String,
        position: Option<Position>,
        #[source]
        error: std::io::Error,
    },
    #[error("{input}: document {document}: invalid JSON at line {line} column {column}: {message}")]
    Json {
        input: String,
        document: usize,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{input}: invalid YAML: {message}")]
    Yaml { input: String, message: String },
    #[error("{input}: not audit data: not UTF-8 text (invalid byte at offset {offset})")]
    NotText { input: String, offset: usize },
    #[error("{input}: not audit data: none of {count} entries is an audit event (first: {first})")]
    NotAuditData {
        input: String,
        count: usize,
        first: String,
    },
}

#[cfg(test)]
mod tests;
