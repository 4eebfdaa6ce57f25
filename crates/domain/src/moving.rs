//! The statement a user signs to move from one homeserver to another (docs/move.md).
//!
//! One statement serves both ends: the homeserver the user leaves (`from`) seals the
//! account with it, the one they move to (`to`) promotes its mirror of the user to the
//! primary with it. Each checks that the user signed it, that it names this homeserver
//! on its side, and that its time is close to its own clock (a statement is fresh for
//! [`WINDOW_US`]; the client signs a new one for every run).
//!
//! ```text
//! pubky-move/1
//! user:<the user's key>
//! from:<the key of the homeserver the user leaves>
//! to:<the key of the homeserver the user moves to>
//! time:<unix microseconds>
//! ```
//!
//! When the homeserver the user leaves is gone (it does not answer), a last line
//! `seal:none` says so: the homeserver the user moves to then promotes its mirror
//! without a seal, checked against the last root of `from` it verified, and `from`
//! itself refuses such a statement.

use crate::PublicKey;

/// The statement's first line.
pub const MAGIC: &str = "pubky-move/1";

/// How far the statement's time and the homeserver's clock may be apart.
pub const WINDOW_US: u64 = 300_000_000;

/// A move statement's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveStatement {
    pub user: PublicKey,
    pub from: PublicKey,
    pub to: PublicKey,
    pub time_us: u64,
    /// `from` is gone: no seal there (the `seal:none` line).
    pub from_gone: bool,
}

/// Why a statement is refused: the HTTP layer answers 401 for [`Refusal::NotSigned`],
/// 400 for [`Refusal::Malformed`] and 403 for the others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("The move statement is not signed by {0}")]
    NotSigned(String),
    #[error("Malformed move statement: {0}")]
    Malformed(&'static str),
    #[error("The move statement is about another user")]
    OtherUser,
    #[error("The move statement does not name this homeserver")]
    OtherHomeserver,
    #[error("The move statement's time is more than 5 minutes from this server's clock")]
    Stale,
}

impl MoveStatement {
    /// The text the user signs.
    pub fn text(&self) -> String {
        format!(
            "{MAGIC}\nuser:{}\nfrom:{}\nto:{}\ntime:{}\n{}",
            self.user.to_z32(),
            self.from.to_z32(),
            self.to.to_z32(),
            self.time_us,
            if self.from_gone { "seal:none\n" } else { "" }
        )
    }

    /// Parses a statement's text (its signature is checked by [`verify`]).
    pub fn parse(text: &str) -> Result<MoveStatement, Refusal> {
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(Refusal::Malformed("expected pubky-move/1"));
        }
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        };
        let key = |name: &'static str| {
            field(name)
                .and_then(|v| PublicKey::try_from(v).ok())
                .ok_or(Refusal::Malformed(name))
        };
        let statement = MoveStatement {
            user: key("user")?,
            from: key("from")?,
            to: key("to")?,
            time_us: field("time")
                .and_then(|t| t.parse().ok())
                .ok_or(Refusal::Malformed("time"))?,
            from_gone: match field("seal") {
                None => false,
                Some("none") => true,
                Some(_) => return Err(Refusal::Malformed("seal")),
            },
        };
        if statement.from == statement.to {
            return Err(Refusal::Malformed("from and to are the same homeserver"));
        }
        Ok(statement)
    }
}

/// Checks a signed statement about `user` at a homeserver whose key is `here`, at
/// `now_us`: signed by the user, about them, naming `here` as `from` or `to`, fresh.
/// The signature first: nothing about an unsigned statement is looked at.
pub fn verify(
    user: &PublicKey,
    text: &str,
    signature_hex: &str,
    here: &PublicKey,
    now_us: u64,
) -> Result<MoveStatement, Refusal> {
    let mut signature = [0u8; 64];
    let signed = hex::decode_to_slice(signature_hex, &mut signature).is_ok()
        && user.verify(text.as_bytes(), &signature.into()).is_ok();
    if !signed {
        return Err(Refusal::NotSigned(user.to_z32()));
    }
    let statement = MoveStatement::parse(text)?;
    if statement.user != *user {
        return Err(Refusal::OtherUser);
    }
    if statement.from != *here && statement.to != *here {
        return Err(Refusal::OtherHomeserver);
    }
    if now_us.abs_diff(statement.time_us) > WINDOW_US {
        return Err(Refusal::Stale);
    }
    Ok(statement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;

    fn key(seed: u8) -> Keypair {
        Keypair::from_secret_key(&[seed; 32])
    }

    fn signed(user: &Keypair, statement: &MoveStatement) -> (String, String) {
        let text = statement.text();
        (
            text.clone(),
            hex::encode(user.sign(text.as_bytes()).to_bytes()),
        )
    }

    #[test]
    fn a_statement_is_checked_signature_first_then_its_fields() {
        let (user, a, b, other) = (key(1), key(2), key(3), key(4));
        let statement = MoveStatement {
            user: user.public_key(),
            from: a.public_key(),
            to: b.public_key(),
            time_us: 1_000_000_000,
            from_gone: false,
        };
        let (text, signature) = signed(&user, &statement);
        let now = statement.time_us + 1;
        for here in [a.public_key(), b.public_key()] {
            assert_eq!(
                verify(&user.public_key(), &text, &signature, &here, now),
                Ok(statement.clone())
            );
        }
        // Signed by someone else: 401, whatever it says.
        let (_, forged) = signed(&other, &statement);
        assert!(matches!(
            verify(&user.public_key(), &text, &forged, &a.public_key(), now),
            Err(Refusal::NotSigned(_))
        ));
        assert_eq!(
            verify(
                &user.public_key(),
                &text,
                &signature,
                &other.public_key(),
                now
            ),
            Err(Refusal::OtherHomeserver)
        );
        assert_eq!(
            verify(
                &user.public_key(),
                &text,
                &signature,
                &a.public_key(),
                now + WINDOW_US + 2
            ),
            Err(Refusal::Stale)
        );
        // Signed by the other user, about the other user, sent for this one.
        let theirs = MoveStatement {
            user: other.public_key(),
            ..statement
        };
        let (text, signature) = signed(&user, &theirs);
        assert_eq!(
            verify(&user.public_key(), &text, &signature, &a.public_key(), now),
            Err(Refusal::OtherUser)
        );
    }
}

#[cfg(test)]
mod gone {
    use super::*;
    use crate::Keypair;

    #[test]
    fn the_seal_none_line_round_trips_and_anything_else_there_is_malformed() {
        let key = |seed: u8| Keypair::from_secret_key(&[seed; 32]).public_key();
        let statement = MoveStatement {
            user: key(1),
            from: key(2),
            to: key(3),
            time_us: 7,
            from_gone: true,
        };
        assert!(statement.text().ends_with("time:7\nseal:none\n"));
        assert_eq!(
            MoveStatement::parse(&statement.text()),
            Ok(statement.clone())
        );
        let other = statement.text().replace("seal:none", "seal:maybe");
        assert_eq!(
            MoveStatement::parse(&other),
            Err(Refusal::Malformed("seal"))
        );
    }
}
