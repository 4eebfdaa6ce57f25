//! Whose drive a request addresses (spec §2): the strict owner segment of
//! `/storage/{owner}/…` and the lenient `Host` / `pubky-host` values of legacy requests.
//!
//! The two differ on purpose. Path addressing accepts only a raw 52-char z-base-32 key,
//! while legacy values go through pkarr's URL-ish parser, whose "take the last DNS label"
//! rule is what makes `Host: _pubky.<key>` subdomain addressing work. Its quirks (a port
//! defeats it) are copied, not fixed, because clients already route around them.

use crate::PublicKey;

const Z32_ALPHABET: &[u8] = b"ybndrfg8ejkmcpqxot1uwisza345h769";
const Z32_KEY_LEN: usize = 52;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a raw z-base-32 public key")]
pub struct InvalidPublicKey;

/// The `{owner}` segment of `/storage/{owner}/…`: exactly 52 z-base-32 characters.
///
/// The character check runs first because pkarr alone is more lenient: it would cut URLs
/// down to a key and strip `=` padding.
pub fn parse_storage_owner(segment: &str) -> Result<PublicKey, InvalidPublicKey> {
    let is_raw_z32 =
        segment.len() == Z32_KEY_LEN && segment.bytes().all(|b| Z32_ALPHABET.contains(&b));
    if !is_raw_z32 {
        return Err(InvalidPublicKey);
    }
    PublicKey::try_from(segment).map_err(|_| InvalidPublicKey)
}

/// A `Host` or `pubky-host` value, parsed leniently (see the module doc); `None` when it
/// names no key. The display form `pubky<key>` is skipped, as the reference does.
pub fn parse_host_key(value: &str) -> Option<PublicKey> {
    let is_display_form = value
        .strip_prefix("pubky")
        .is_some_and(|key| key.len() == Z32_KEY_LEN);
    if is_display_form {
        return None;
    }
    PublicKey::try_from(value).ok()
}

/// The owner of a legacy owner-relative request: a valid `pubky-host` header overrides
/// `Host`; only when neither names a key is the first parsing `pubky-host=` pair of the raw
/// (not percent-decoded) query string used.
pub fn resolve_legacy_tenant(
    host: Option<&str>,
    pubky_host_header: Option<&str>,
    raw_query: Option<&str>,
) -> Option<PublicKey> {
    pubky_host_header
        .and_then(parse_host_key)
        .or_else(|| host.and_then(parse_host_key))
        .or_else(|| {
            raw_query?
                .split('&')
                .filter_map(|pair| pair.strip_prefix("pubky-host="))
                .find_map(parse_host_key)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;

    fn key(seed: u8) -> PublicKey {
        Keypair::from_secret_key(&[seed; 32]).public_key()
    }

    #[test]
    fn storage_owner_is_a_raw_z32_key() {
        let z = key(1).to_z32();
        assert_eq!(parse_storage_owner(&z), Ok(key(1)));
        for bad in [
            format!("pubky{z}"),
            format!("_pubky.{z}"),
            format!("https://{z}"),
            format!("{z}."),
            format!(" {z}"),
            z.to_uppercase(),
            z[..51].to_owned(),
            format!("{}=", &z[..51]),
            format!("{}0", &z[..51]),
            String::new(),
        ] {
            assert_eq!(parse_storage_owner(&bad), Err(InvalidPublicKey), "{bad:?}");
        }
        assert_eq!(
            InvalidPublicKey.to_string(),
            "not a raw z-base-32 public key"
        );
    }

    #[test]
    fn storage_owner_accepts_unused_trailing_bits_like_the_reference() {
        // 52 characters carry 260 bits for a 256-bit key: the low 4 bits of the last
        // character are ignored by the decoder, so a few spellings name the same key.
        let z = key(1).to_z32();
        let (head, last) = z.split_at(51);
        let index = Z32_ALPHABET
            .iter()
            .position(|&c| c == last.as_bytes()[0])
            .unwrap();
        let alias = format!("{head}{}", Z32_ALPHABET[index ^ 1] as char);
        assert_ne!(alias, z);
        assert_eq!(parse_storage_owner(&alias), Ok(key(1)));
    }

    #[test]
    fn host_values_take_the_last_dns_label() {
        let z = key(1).to_z32();
        let other = key(2).to_z32();
        for value in [
            z.clone(),
            format!("_pubky.{z}"),
            format!("foo.{z}"),
            format!("{other}.{z}"),
            format!("{z}."),
            format!("https://_pubky.{z}/pub/x?q=1#f"),
            format!("https://user@{z}"),
        ] {
            assert_eq!(parse_host_key(&value), Some(key(1)), "{value}");
        }
    }

    #[test]
    fn host_values_that_name_no_key() {
        let z = key(1).to_z32();
        for value in [
            // QUIRK: the "scheme" cut keeps the port, so a Host with a port never parses.
            format!("{z}:6287"),
            format!("pubky{z}"),
            format!("{z}.example.com"),
            z.to_uppercase(),
            "localhost:6286".to_owned(),
            "localhost".to_owned(),
            "example.com".to_owned(),
            String::new(),
        ] {
            assert_eq!(parse_host_key(&value), None, "{value}");
        }
    }

    #[test]
    fn legacy_tenant_precedence() {
        let (alice, bob) = (key(1), key(2));
        let (a, b) = (alice.to_z32(), bob.to_z32());
        let query_b = format!("pubky-host={b}");
        let resolve = resolve_legacy_tenant;
        assert_eq!(resolve(Some(&a), Some(&b), None), Some(bob.clone()));
        assert_eq!(
            resolve(Some(&a), Some("localhost"), None),
            Some(alice.clone())
        );
        assert_eq!(resolve(Some(&a), None, Some(&query_b)), Some(alice.clone()));
        assert_eq!(
            resolve(Some("localhost:6286"), None, Some(&query_b)),
            Some(bob.clone())
        );
        assert_eq!(
            resolve(None, Some(&format!("pubky{a}")), Some(&query_b)),
            Some(bob.clone())
        );
        assert_eq!(resolve(Some("localhost"), Some("nope"), None), None);
        assert_eq!(resolve(None, None, None), None);
    }

    #[test]
    fn legacy_query_takes_the_first_parsing_raw_pair() {
        let (alice, bob) = (key(1), key(2));
        let (a, b) = (alice.to_z32(), bob.to_z32());
        let tenant = |query: String| resolve_legacy_tenant(None, None, Some(&query));
        assert_eq!(
            tenant(format!("x=1&pubky-host=bad&pubky-host={a}&pubky-host={b}")),
            Some(alice)
        );
        assert_eq!(
            tenant(format!("pubky-host=pubky{b}&pubky-host=_pubky.{b}")),
            Some(bob)
        );
        // Raw means raw: an encoded value is not decoded first.
        assert_eq!(tenant(format!("pubky-host=_pubky%2E{a}")), None);
        assert_eq!(tenant(format!("pubky-host%3D{a}")), None);
        assert_eq!(tenant(format!("pubky-hostx={a}")), None);
    }
}
