//! A destination folder shared with people: the index of its documents by identity and the
//! workspace that edits them in place. Pure: no Git, no I/O — files come through functions.

pub mod index;
pub mod kustomization;
pub mod workspace;

pub use index::{FileVersion, FolderIndex, Place};
pub use workspace::{Edited, Placement, Workspace, WorkspaceError};
