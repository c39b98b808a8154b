//! The manifest core: what a cluster object looks like in Git, decided without I/O or async.
//! Sanitize, exclusions, content hash, equivalence, path layout, the one YAML writer, and editing
//! a document in Git in place.

pub mod documents;
pub mod edit;
pub mod equivalence;
pub mod exclude;
pub mod hash;
pub mod layout;
pub mod object;
pub mod pipeline;
pub mod quantity;
pub mod sanitize;
pub mod user_exclude;
pub mod yaml;

pub use edit::{EditError, edit_document};
pub use exclude::{ExclusionPolicy, exclusion};
pub use hash::{ContentHash, HASH_ANNOTATION, content_hash};
pub use object::{ObjectError, ObjectId, ObjectIdentity};
pub use pipeline::{Manifest, Outcome, prepare};
pub use sanitize::sanitize;
