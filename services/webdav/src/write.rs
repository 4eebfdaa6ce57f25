//! `PUT`, `DELETE` and `MKCOL`.
//!
//! A file's `PUT` and `DELETE` are the REST write (`write_api::write`): the same
//! quotas, write-path limits, collisions, `If-Match` and lock checks, and the same
//! single event. Before it, a lock not submitted is 423 as WebDAV has it, where the
//! storage locks answer 412 to tokens that name another lock. WebDAV adds what its clients rely on (RFC 4918 §9.7, §9.3): a `PUT`
//! needs its parent collection to exist (409 otherwise), and a collection cannot be
//! overwritten by a file. A collection's `DELETE` and `MKCOL` are folder events
//! (`tree_deleted`, `dir_created`), appended by [`append_folder_event`].

use crate::path::{Access, DavTarget, authorize};
use crate::resource::{self, Resource};
use api::tenant::{Addressing, StorageTarget};
use api::writer::{CommitError, MAX_ATTEMPTS, too_much_contention};
use api::{ApiError, AppState, Session, now_micros};
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::event::Change;
use domain::{EntryPath, Event, PublicKey};
use log::Expected;
use store::users::UserRow;

pub const NO_PARENT: &str = "The parent collection does not exist";
pub const SCAFFOLDING: &str = "The drive and its top folders cannot be changed";

fn entry_path(path: &str) -> Result<EntryPath, ApiError> {
    EntryPath::parse_canonical(path)
        .map_err(|e| ApiError::bad_request(format!("Invalid WebDAV path: {e}")))
}

fn storage_target(target: &DavTarget, path: &str) -> Result<StorageTarget, ApiError> {
    Ok(StorageTarget {
        owner: target.owner.clone(),
        path: entry_path(path)?,
        addressing: Addressing::Path,
    })
}

/// The collection `target` is in must exist (a file there is no collection).
pub(crate) async fn require_parent(state: &AppState, target: &DavTarget) -> Result<(), ApiError> {
    let file = target.file_form();
    let parent = &file[..=file.rfind('/').unwrap_or(0)];
    let parent = DavTarget {
        owner: target.owner.clone(),
        path: entry_path(parent)?,
    };
    match resource::resolve(state, &parent).await? {
        Resource::Collection(_) => Ok(()),
        _ => Err(ApiError::new(StatusCode::CONFLICT, NO_PARENT)),
    }
}

pub async fn put(
    state: &AppState,
    session: &Session,
    target: &DavTarget,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(session, target, Access::Write)?;
    let existed = match resource::resolve(state, target).await? {
        Resource::Collection(_) => {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "A collection cannot be overwritten by a file",
            ));
        }
        Resource::File(_) => true,
        Resource::Missing => false,
    };
    require_parent(state, target).await?;
    crate::lock::check_if(state, target, headers).await?;
    let presented = crate::lock::presented(headers)?;
    crate::lock::check_path(
        state,
        &target.owner,
        target.file_form(),
        &presented,
        !existed,
    )
    .await?;
    let storage = storage_target(target, target.file_form())?;
    let mut response = write_api::write(state, session, &storage, headers, Some(body)).await?;
    // RFC 4918 §9.7.1: 201 for a new resource, 204 for a replaced one.
    if existed && response.status() == StatusCode::CREATED {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    Ok(response)
}

pub async fn delete(
    state: &AppState,
    session: &Session,
    target: &DavTarget,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    authorize(session, target, Access::Write)?;
    if target.is_scaffolding() {
        return Err(ApiError::forbidden(SCAFFOLDING));
    }
    match resource::resolve(state, target).await? {
        Resource::Missing => Err(ApiError::not_found()),
        Resource::File(entry) => {
            crate::lock::check_if(state, target, headers).await?;
            let presented = crate::lock::presented(headers)?;
            crate::lock::check_path(state, &target.owner, &entry.path, &presented, true).await?;
            let storage = storage_target(target, &entry.path)?;
            write_api::write(state, session, &storage, headers, None).await
        }
        Resource::Collection(dir) => {
            let path = entry_path(&dir)?;
            let presented = crate::lock::presented(headers)?;
            append_folder_event(state, &target.owner, |user| {
                let (dir, path, presented) = (&dir, &path, &presented);
                async move {
                    write_api::check_allowed_path(&user, path)?;
                    crate::lock::check_tree(state, &target.owner, dir, presented).await?;
                    if !state.store.dav_dir_exists(&target.owner, dir).await? {
                        return Err(ApiError::not_found());
                    }
                    Ok((Change::TreeDeleted { path: dir.clone() }, ()))
                }
            })
            .await
            .map(|(visible, ())| status(visible, StatusCode::NO_CONTENT))
        }
    }
}

pub async fn mkcol(
    state: &AppState,
    session: &Session,
    target: &DavTarget,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let dir = target.dir_form();
    let dir_target = DavTarget {
        owner: target.owner.clone(),
        path: entry_path(&dir)?,
    };
    authorize(session, &dir_target, Access::Write)?;
    if !body.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "MKCOL with a body is not supported",
        ));
    }
    let exists = || {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "A resource already exists at this path",
        )
    };
    if target.is_scaffolding() {
        return Err(exists());
    }
    require_parent(state, &dir_target).await?;
    let presented = crate::lock::presented(headers)?;
    append_folder_event(state, &target.owner, |user| {
        let (dir_target, dir, presented) = (&dir_target, &dir, &presented);
        async move {
            write_api::check_allowed_path(&user, &dir_target.path)?;
            if resource::resolve(state, dir_target).await?.exists() {
                return Err(exists());
            }
            // A folder added to a locked folder needs its lock's token.
            crate::lock::check_tree(state, &target.owner, dir, presented).await?;
            Ok((Change::DirCreated { path: dir.clone() }, ()))
        }
    })
    .await
    .map(|(visible, ())| status(visible, StatusCode::CREATED))
}

/// `done`, or 202 when the event is appended but not visible yet.
fn status(visible: bool, done: StatusCode) -> Response {
    match visible {
        true => done.into_response(),
        false => StatusCode::ACCEPTED.into_response(),
    }
}

/// Appends the folder event `decide` returns (with a value for the caller) for the
/// user's current state, under the user's write lock, deciding again when another
/// write raced it; returns whether the event is visible, and the value. A folder event changes paths this process's unprojected writes may have
/// touched (`api::pending` tracks single paths), so it waits for those first, and it
/// holds the lock until its own event is visible, so later writes see it projected.
pub async fn append_folder_event<T, Decided>(
    state: &AppState,
    owner: &PublicKey,
    decide: impl Fn(UserRow) -> Decided,
) -> Result<(bool, T), ApiError>
where
    Decided: std::future::Future<Output = Result<(Change, T), ApiError>>,
{
    let _queue = state.lock_user(owner).await;
    let request_id = uuid::Uuid::now_v7().to_string();
    for _ in 0..MAX_ATTEMPTS {
        let user = write_api::existing_user(state, owner).await?;
        write_api::check_not_moved(&user)?;
        if user.disabled {
            return Err(ApiError::forbidden("User is disabled"));
        }
        let overlay = state.pending.overlay(owner, user.file_seq);
        if let Some(seq) = overlay.last_seq {
            state.wait_visible(seq).await;
            continue;
        }
        let expected = Expected::LastSeq(user.file_seq);
        let (change, out) = decide(user).await?;
        let event = Event::new(owner.clone(), now_micros(), request_id.clone(), change);
        match state.commit(&event, expected).await {
            Ok(committed) => return Ok((committed.visible, out)),
            Err(CommitError::Conflict) => continue,
            Err(CommitError::Api(e)) => return Err(e),
        }
    }
    Err(too_much_contention())
}
