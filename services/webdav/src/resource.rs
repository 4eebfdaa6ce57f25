//! What a WebDAV path is in storage: a file (an entry), a collection, or nothing.
//!
//! Storage has files; a collection is a directory that holds a file somewhere below it
//! or a folder made by `MKCOL` (`dir_created`), plus the drive and its two top folders,
//! which always exist. A file wins where both could be named the same: REST forbids a
//! file with entries under it, and WebDAV refuses to write one over a collection.

use crate::path::DavTarget;
use api::{ApiError, AppState};
use store::entries::EntryRow;

#[derive(Debug, Clone)]
pub enum Resource {
    File(EntryRow),
    /// The collection's path, ending with `/`.
    Collection(String),
    Missing,
}

impl Resource {
    pub fn exists(&self) -> bool {
        !matches!(self, Resource::Missing)
    }
}

/// Looks `target` up, whether its URL ended with `/` or not.
pub async fn resolve(state: &AppState, target: &DavTarget) -> Result<Resource, ApiError> {
    if target.is_scaffolding() {
        return Ok(Resource::Collection(target.dir_form()));
    }
    if let Some(entry) = state.store.entry(&target.owner, target.file_form()).await? {
        return Ok(Resource::File(entry));
    }
    let dir = target.dir_form();
    if state.store.dav_dir_exists(&target.owner, &dir).await? {
        return Ok(Resource::Collection(dir));
    }
    Ok(Resource::Missing)
}
