//! Signup tokens (spec §3.2): the `XXXX-XXXX-XXXX` codes an operator hands out so that
//! a homeserver in `token_required` mode admits new users.
//!
//! The validity rule is the reference's, quirks included: it only checks the length and
//! that the characters left after removing *every* hyphen are Crockford-decodable
//! (either case, with `I`/`L`/`O` as aliases), not where the hyphens sit.

use std::fmt;

use crate::secret::crockford_encode;

/// A well-formed signup token. Whether it exists or was used is the store's business.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SignupToken(String);

/// The 400 body for a malformed `signup_token`, whether in a path or a query string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Invalid signup token format: Invalid signup code id")]
pub struct InvalidSignupToken;

impl InvalidSignupToken {
    pub const STATUS: u16 = 400;
}

impl SignupToken {
    pub const LEN: usize = 14;

    /// A new token from 7 caller-supplied random bytes.
    pub fn generate(random: [u8; 7]) -> Self {
        let encoded = crockford_encode(&random);
        let mut token = String::with_capacity(Self::LEN);
        for (i, c) in encoded.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                token.push('-');
            }
            token.push(c);
        }
        Self(token)
    }

    /// Accepts what the reference accepts, and keeps the text as given (tokens are
    /// looked up verbatim, so `abcd-…` and `ABCD-…` are different, unknown-or-not tokens).
    pub fn parse(value: &str) -> Result<Self, InvalidSignupToken> {
        let decodable = value.bytes().filter(|&b| b != b'-').all(|b| {
            b.is_ascii_digit() || (b.is_ascii_alphabetic() && !b.eq_ignore_ascii_case(&b'U'))
        });
        if value.len() == Self::LEN && decodable {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidSignupToken)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SignupToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SignupToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignupToken({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_matches_reference_vectors() {
        // Vectors computed independently (Python: RFC 4648 base32 re-mapped to Crockford).
        assert_eq!(SignupToken::generate([0; 7]).as_str(), "0000-0000-0000");
        assert_eq!(SignupToken::generate([0xff; 7]).as_str(), "ZZZZ-ZZZZ-ZZZG");
        assert_eq!(
            SignupToken::generate([1, 2, 3, 4, 5, 6, 7]).as_str(),
            "0410-6105-0R3G"
        );
    }

    #[test]
    fn parse_follows_reference_rules() {
        for ok in [
            "JZY0-D6MY-ZFNG",
            "jzy0-d6my-zfng",
            "IL0O-ilo0-0000",
            "ABCDEFGHIJKLMN", // hyphens are not required …
            "--------------", // … nor is any character but hyphens (QUIRK)
            "AB-CD-EF-GH-JK", // … nor are their positions checked
        ] {
            assert!(SignupToken::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "JZY0-D6MY-ZFN",
            "JZY0-D6MY-ZFNGG",
            "JZY0-D6MY-ZFNU",
            "JZY0-D6MY-ZFN=",
            "JZY0_D6MY_ZFNG",
            "JZY0-D6MY-ZFé",
        ] {
            assert_eq!(SignupToken::parse(bad), Err(InvalidSignupToken), "{bad}");
        }
        assert_eq!(
            InvalidSignupToken.to_string(),
            "Invalid signup token format: Invalid signup code id"
        );
    }
}
