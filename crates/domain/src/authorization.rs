//! Who may read or write which path (spec §4.7, §3.6): the single decision used by storage
//! reads and writes, listings and event-stream filters, so they can never disagree.
//!
//! The functions take no "does the entry exist" input on purpose: for `/priv/` the answer
//! must be the same 401/403 for present and absent paths, and a decision that cannot see
//! existence cannot leak it. Checks that come earlier in a request (a session at all for
//! writes, a file-shaped path) belong to the handler, which runs them before it even has a
//! parsed path.

use crate::{
    PublicKey,
    capability::{Action, Capabilities},
    path::{EntryPath, Root},
};

/// The authenticated side of a request: whose session it is and what it may do.
#[derive(Debug, Clone, Copy)]
pub struct SessionView<'a> {
    pub user: &'a PublicKey,
    pub capabilities: &'a Capabilities,
}

/// A refusal; the Display text is the exact response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("Writing to directories other than '/pub/' and '/priv/' is forbidden")]
    WriteOutsideRoots,
    #[error("Reading from directories other than '/pub/' and '/priv/' is forbidden")]
    ReadOutsideRoots,
    #[error("Authentication required to read private storage")]
    AuthenticationRequired,
    #[error("A private read must be scoped to exactly one user")]
    PrivateReadNeedsOneUser,
    #[error("Session user does not match target tenant")]
    TenantMismatch,
    #[error("Session does not have write access to path")]
    NoWriteAccess,
    #[error("Session does not have read access to path")]
    NoReadAccess,
}

impl Denied {
    /// The HTTP status to answer with.
    pub fn status(self) -> u16 {
        match self {
            Denied::AuthenticationRequired => 401,
            _ => 403,
        }
    }
}

/// PUT and DELETE of `path` in `tenant`'s drive.
pub fn authorize_write(
    session: SessionView<'_>,
    tenant: &PublicKey,
    path: &EntryPath,
) -> Result<(), Denied> {
    if path.root() == Root::Other {
        return Err(Denied::WriteOutsideRoots);
    }
    if session.user != tenant {
        return Err(Denied::TenantMismatch);
    }
    if !session.capabilities.covers(path, Action::Write) {
        return Err(Denied::NoWriteAccess);
    }
    Ok(())
}

/// GET, HEAD and listing of `path` in `tenant`'s drive; `None` is an anonymous request.
pub fn authorize_read(
    session: Option<SessionView<'_>>,
    tenant: &PublicKey,
    path: &EntryPath,
) -> Result<(), Denied> {
    authorize_stream_read(session, std::slice::from_ref(tenant), path)
}

/// One `path` filter of an event stream over `users`. A private filter names a single
/// drive, so it needs exactly one user; public filters are open to everyone.
pub fn authorize_stream_read(
    session: Option<SessionView<'_>>,
    users: &[PublicKey],
    filter: &EntryPath,
) -> Result<(), Denied> {
    match (filter.root(), session, users) {
        (Root::Pub, ..) => Ok(()),
        (Root::Other, ..) => Err(Denied::ReadOutsideRoots),
        (Root::Priv, None, _) => Err(Denied::AuthenticationRequired),
        (Root::Priv, Some(session), [tenant]) => {
            if session.user != tenant {
                Err(Denied::TenantMismatch)
            } else if !session.capabilities.covers(filter, Action::Read) {
                Err(Denied::NoReadAccess)
            } else {
                Ok(())
            }
        }
        (Root::Priv, Some(_), _) => Err(Denied::PrivateReadNeedsOneUser),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;

    fn key(seed: u8) -> PublicKey {
        Keypair::from_secret_key(&[seed; 32]).public_key()
    }

    fn path(raw: &str) -> EntryPath {
        EntryPath::parse_canonical(raw).unwrap()
    }

    fn caps(list: &str) -> Capabilities {
        list.parse().unwrap()
    }

    fn write(user: &PublicKey, list: &str, tenant: &PublicKey, at: &str) -> Result<(), Denied> {
        let capabilities = caps(list);
        let session = SessionView {
            user,
            capabilities: &capabilities,
        };
        authorize_write(session, tenant, &path(at))
    }

    fn read(
        user: Option<&PublicKey>,
        list: &str,
        tenant: &PublicKey,
        at: &str,
    ) -> Result<(), Denied> {
        let capabilities = caps(list);
        let session = user.map(|user| SessionView {
            user,
            capabilities: &capabilities,
        });
        authorize_read(session, tenant, &path(at))
    }

    #[test]
    fn texts_and_statuses_are_the_wire_ones() {
        for (denied, status, text) in [
            (
                Denied::WriteOutsideRoots,
                403,
                "Writing to directories other than '/pub/' and '/priv/' is forbidden",
            ),
            (
                Denied::ReadOutsideRoots,
                403,
                "Reading from directories other than '/pub/' and '/priv/' is forbidden",
            ),
            (
                Denied::AuthenticationRequired,
                401,
                "Authentication required to read private storage",
            ),
            (
                Denied::PrivateReadNeedsOneUser,
                403,
                "A private read must be scoped to exactly one user",
            ),
            (
                Denied::TenantMismatch,
                403,
                "Session user does not match target tenant",
            ),
            (
                Denied::NoWriteAccess,
                403,
                "Session does not have write access to path",
            ),
            (
                Denied::NoReadAccess,
                403,
                "Session does not have read access to path",
            ),
        ] {
            assert_eq!(
                (denied.status(), denied.to_string().as_str()),
                (status, text)
            );
        }
    }

    #[test]
    fn writes_need_a_data_root_then_the_tenant_then_a_write_capability() {
        let (alice, bob) = (key(1), key(2));
        assert_eq!(write(&alice, "/:rw", &alice, "/pub/app/x"), Ok(()));
        assert_eq!(write(&alice, "/:rw", &alice, "/priv/app/x"), Ok(()));
        assert_eq!(write(&alice, "/pub/app/:w", &alice, "/pub/app/a/b"), Ok(()));
        assert_eq!(write(&alice, "/pub/app/x:w", &alice, "/pub/app/x"), Ok(()));
        for at in ["/x", "/pub", "/priv", "/public/x", "/"] {
            assert_eq!(
                write(&alice, "/:rw", &alice, at),
                Err(Denied::WriteOutsideRoots),
                "{at}"
            );
        }
        // The root rule comes before the tenant, the tenant before the capability.
        assert_eq!(
            write(&bob, "", &alice, "/x"),
            Err(Denied::WriteOutsideRoots)
        );
        assert_eq!(
            write(&bob, "/:rw", &alice, "/pub/x"),
            Err(Denied::TenantMismatch)
        );
        assert_eq!(
            write(&bob, "", &alice, "/priv/x"),
            Err(Denied::TenantMismatch)
        );
        for list in [
            "",
            "/pub/app/:r",
            "/pub/app/:re",
            "/pub/app/:e",
            "/pub/other/:rw",
            "/pub/app:w",
        ] {
            assert_eq!(
                write(&alice, list, &alice, "/pub/app/x"),
                Err(Denied::NoWriteAccess),
                "{list}"
            );
        }
    }

    #[test]
    fn public_reads_are_open_to_everyone() {
        let (alice, bob) = (key(1), key(2));
        for user in [None, Some(&bob), Some(&alice)] {
            assert_eq!(read(user, "", &alice, "/pub/app/x"), Ok(()));
            assert_eq!(read(user, "", &alice, "/pub/"), Ok(()));
        }
    }

    #[test]
    fn reads_outside_data_roots_are_forbidden_even_anonymously() {
        let alice = key(1);
        for at in ["/", "/x", "/pub", "/priv", "/private/x"] {
            assert_eq!(
                read(None, "", &alice, at),
                Err(Denied::ReadOutsideRoots),
                "{at}"
            );
            assert_eq!(
                read(Some(&alice), "/:rw", &alice, at),
                Err(Denied::ReadOutsideRoots),
                "{at}"
            );
        }
    }

    #[test]
    fn private_reads_need_the_owner_with_a_read_capability() {
        let (alice, bob) = (key(1), key(2));
        assert_eq!(
            read(None, "", &alice, "/priv/x"),
            Err(Denied::AuthenticationRequired)
        );
        assert_eq!(
            read(Some(&bob), "/:rw", &alice, "/priv/x"),
            Err(Denied::TenantMismatch)
        );
        for list in [
            "",
            "/priv/app/:w",
            "/priv/app/:e",
            "/priv/other/:r",
            "/priv/app:r",
            "/pub/:r",
        ] {
            assert_eq!(
                read(Some(&alice), list, &alice, "/priv/app/x"),
                Err(Denied::NoReadAccess),
                "{list}"
            );
        }
        for list in [
            "/:rw",
            "/:r",
            "/priv/:r",
            "/priv/app/:r",
            "/pub/:r,/priv/app/x:r",
        ] {
            assert_eq!(
                read(Some(&alice), list, &alice, "/priv/app/x"),
                Ok(()),
                "{list}"
            );
        }
        // Listing a private directory needs a scope covering the directory itself.
        assert_eq!(
            read(Some(&alice), "/priv/app/:r", &alice, "/priv/"),
            Err(Denied::NoReadAccess)
        );
    }

    #[test]
    fn private_stream_filters_need_exactly_one_user() {
        let (alice, bob) = (key(1), key(2));
        let capabilities = caps("/:rw");
        let session = Some(SessionView {
            user: &alice,
            capabilities: &capabilities,
        });
        let users = [alice.clone(), bob.clone()];
        let private = path("/priv/app/");
        assert_eq!(
            authorize_stream_read(session, &users, &private),
            Err(Denied::PrivateReadNeedsOneUser)
        );
        assert_eq!(
            authorize_stream_read(session, &[], &private),
            Err(Denied::PrivateReadNeedsOneUser)
        );
        assert_eq!(
            authorize_stream_read(None, &users, &private),
            Err(Denied::AuthenticationRequired)
        );
        assert_eq!(
            authorize_stream_read(session, &users[..1], &private),
            Ok(())
        );
        assert_eq!(
            authorize_stream_read(session, &users[1..], &private),
            Err(Denied::TenantMismatch)
        );
        assert_eq!(authorize_stream_read(None, &users, &path("/pub/")), Ok(()));
        assert_eq!(
            authorize_stream_read(session, &users[..1], &path("/")),
            Err(Denied::ReadOutsideRoots)
        );
    }
}
