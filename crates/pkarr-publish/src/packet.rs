//! The homeserver's own signed pkarr packet: how clients find the server from its key.
//!
//! What the published SDK (pubky 0.17) needs, per `reference/pubky-sdk-interop.md` §2 and
//! `reference/pubky-http-api.md` §7.1, all at the apex of `<homeserver z32>`, TTL 3600:
//!
//! 1. `HTTPS` priority 1, target `.`, SvcParams `port=<Pubky TLS port>` and
//!    `ipv4hint`/`ipv6hint` = the public IP. The native SDK connects to this endpoint with
//!    Pubky TLS (raw public key). pkarr's endpoint resolution ignores the hint; it is there
//!    for other resolvers and for parity with the reference server.
//! 2. `A` (or `AAAA`) = the public IP. pkarr takes the socket address of a `.` target from
//!    the apex address records, so without it the SDK has nowhere to connect ("Network
//!    unreachable" in the interop experiments).
//! 3. Optionally `HTTPS` priority 10 whose target is the server's ICANN domain, for
//!    browsers (they cannot do Pubky TLS and reach the server through a CA-TLS reverse
//!    proxy in front of the plain-HTTP port). Only for the domain `localhost` it carries the
//!    private SvcParam key 65280 = the plain-HTTP port (2 bytes, big-endian): the WASM SDK
//!    switches to `http://localhost:<that port>` in that case, which makes local browser
//!    development work without any proxy. Like the reference, no `port` param is set on
//!    this record: behind a reverse proxy the default HTTPS port applies.
//!
//! The lower priority number wins, so native clients prefer the Pubky TLS endpoint.

use std::net::IpAddr;

use pkarr::dns::rdata::{RData, SVCB, SVCParam};
use pkarr::dns::{CLASS, Name, ResourceRecord};
use pkarr::{Keypair, SignedPacket, Timestamp};

/// TTL of every record of the homeserver packet (seconds).
pub const HOMESERVER_TTL: u32 = 3600;
/// Priority of the Pubky TLS (`.` target) `HTTPS` record.
pub const PUBKY_TLS_PRIORITY: u16 = 1;
/// Priority of the ICANN-domain `HTTPS` record.
pub const ICANN_PRIORITY: u16 = 10;
/// Private-use SvcParam key carrying the plain-HTTP port for `localhost`
/// (`pubky_common::constants::reserved_param_keys::HTTP_PORT`).
pub const HTTP_PORT_PARAM_KEY: u16 = 65280;

/// Everything the homeserver packet says about where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketSpec {
    /// The address clients connect to (the `A`/`AAAA` record and the address hint).
    pub public_ip: IpAddr,
    /// The public port of the Pubky TLS listener.
    pub tls_port: u16,
    /// Optional ICANN domain and its public plain-HTTP port; the port is only published
    /// (SvcParam 65280) when the domain is literally `localhost`.
    pub icann: Option<(String, u16)>,
}

/// Why a homeserver packet could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// `0.0.0.0`/`::` cannot be connected to.
    #[error(
        "cannot publish the unspecified address {0} as the homeserver's public IP; \
         configure the address clients should connect to"
    )]
    UnspecifiedIp(IpAddr),
    /// Port 0 is not a real port.
    #[error("cannot publish port 0 as the homeserver's Pubky TLS port; publish the bound port")]
    ZeroTlsPort,
    /// The ICANN domain is not a valid DNS name.
    #[error("invalid ICANN domain {domain:?}: {reason}")]
    InvalidDomain {
        /// The configured domain.
        domain: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Signing failed (in practice: the packet exceeds 1000 bytes).
    #[error("cannot sign the homeserver packet: {0}")]
    Sign(#[from] pkarr::errors::SignedPacketBuildError),
}

/// The records of the homeserver packet (names relative to the apex, `.`).
///
/// # Errors
///
/// See [`PacketError`].
pub fn homeserver_records(spec: &PacketSpec) -> Result<Vec<ResourceRecord<'static>>, PacketError> {
    if spec.public_ip.is_unspecified() {
        return Err(PacketError::UnspecifiedIp(spec.public_ip));
    }
    if spec.tls_port == 0 {
        return Err(PacketError::ZeroTlsPort);
    }

    let apex = || Name::new_unchecked(".");
    let mut records = Vec::with_capacity(3);

    let mut tls = SVCB::new(PUBKY_TLS_PRIORITY, apex());
    tls.set_port(spec.tls_port);
    match spec.public_ip {
        IpAddr::V4(ip) => tls.set_ipv4hint(&[u32::from(ip)]),
        IpAddr::V6(ip) => tls.set_ipv6hint(&[u128::from(ip)]),
    }
    records.push(https(apex(), tls));

    if let Some((domain, http_port)) = &spec.icann {
        let target = icann_name(domain)?;
        let mut icann = SVCB::new(ICANN_PRIORITY, target);
        if domain == "localhost" {
            icann.set_param(SVCParam::Unknown(
                HTTP_PORT_PARAM_KEY,
                http_port.to_be_bytes().to_vec().into(),
            ));
        }
        records.push(https(apex(), icann));
    }

    let address = match spec.public_ip {
        IpAddr::V4(ip) => RData::A(ip.into()),
        IpAddr::V6(ip) => RData::AAAA(ip.into()),
    };
    records.push(ResourceRecord::new(
        apex(),
        CLASS::IN,
        HOMESERVER_TTL,
        address,
    ));

    Ok(records)
}

/// Builds and signs the homeserver packet with the current time.
///
/// # Errors
///
/// See [`PacketError`].
pub fn build_homeserver_packet(
    keypair: &Keypair,
    spec: &PacketSpec,
) -> Result<SignedPacket, PacketError> {
    build_homeserver_packet_at(keypair, spec, Timestamp::now())
}

/// Like [`build_homeserver_packet`] with an explicit timestamp (tests, replays).
///
/// # Errors
///
/// See [`PacketError`].
pub fn build_homeserver_packet_at(
    keypair: &Keypair,
    spec: &PacketSpec,
    timestamp: Timestamp,
) -> Result<SignedPacket, PacketError> {
    let records = homeserver_records(spec)?;
    Ok(SignedPacket::new(keypair, &records, timestamp)?)
}

/// A user's packet naming `homeserver` in its `_pubky` record, as the SDK publishes it
/// at signup (`HTTPS` priority 0, target the homeserver's key, TTL 3600): the records
/// of `existing` that are not `_pubky` are kept. What a user who moves publishes
/// (docs/move.md).
///
/// # Errors
///
/// See [`PacketError`].
pub fn build_user_packet(
    user: &Keypair,
    homeserver: &pkarr::PublicKey,
    existing: Option<&SignedPacket>,
) -> Result<SignedPacket, PacketError> {
    let origin = user.public_key().to_z32();
    let mut records: Vec<ResourceRecord<'static>> = existing
        .into_iter()
        .flat_map(SignedPacket::all_resource_records)
        .filter(|rr| {
            let name = rr.name.to_string();
            let relative = name
                .strip_suffix(origin.as_str())
                .unwrap_or(&name)
                .trim_end_matches('.');
            !relative.starts_with("_pubky")
        })
        .map(|rr| rr.clone().into_owned())
        .collect();
    let target = Name::new_unchecked(&homeserver.to_z32()).into_owned();
    records.push(https(
        Name::new_unchecked("_pubky").into_owned(),
        SVCB::new(0, target),
    ));
    Ok(SignedPacket::new(user, &records, Timestamp::now())?)
}

/// Whether two packets carry the same records (names, classes, TTLs and data), regardless
/// of order, timestamp and signature. Used to decide whether a published packet still says
/// what we would publish now.
pub fn same_records(a: &SignedPacket, b: &SignedPacket) -> bool {
    let left: Vec<_> = a.all_resource_records().collect();
    let mut right: Vec<_> = b.all_resource_records().collect();
    if left.len() != right.len() {
        return false;
    }
    for record in left {
        // `ResourceRecord`'s `PartialEq` ignores the TTL; we do not.
        match right
            .iter()
            .position(|other| *other == record && other.ttl == record.ttl)
        {
            Some(index) => {
                right.swap_remove(index);
            }
            None => return false,
        }
    }
    true
}

fn https(name: Name<'static>, svcb: SVCB<'static>) -> ResourceRecord<'static> {
    ResourceRecord::new(
        name,
        CLASS::IN,
        HOMESERVER_TTL,
        RData::HTTPS(pkarr::dns::rdata::HTTPS(svcb)),
    )
}

fn icann_name(domain: &str) -> Result<Name<'static>, PacketError> {
    let invalid = |reason: &str| PacketError::InvalidDomain {
        domain: domain.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = domain.strip_suffix('.').unwrap_or(domain);
    if trimmed.is_empty() {
        return Err(invalid("empty"));
    }
    if trimmed.parse::<pkarr::PublicKey>().is_ok() {
        // A key here would make clients recurse into another pkarr packet instead.
        return Err(invalid("a pkarr public key is not an ICANN domain"));
    }
    if !trimmed
        .split('.')
        .all(|label| !label.is_empty() && label.len() <= 63)
        || !trimmed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(invalid(
            "expected dot-separated labels of letters, digits and '-'",
        ));
    }
    Name::new(trimmed)
        .map(|name| name.into_owned())
        .map_err(|e| invalid(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn spec(icann: Option<(&str, u16)>) -> PacketSpec {
        PacketSpec {
            public_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tls_port: 6287,
            icann: icann.map(|(d, p)| (d.to_string(), p)),
        }
    }

    fn https_records(packet: &SignedPacket) -> Vec<SVCB<'_>> {
        packet
            .resource_records("@")
            .filter_map(|rr| match &rr.rdata {
                RData::HTTPS(h) => Some(h.0.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn pubky_tls_record_and_address() {
        let keypair = Keypair::random();
        let packet = build_homeserver_packet(&keypair, &spec(None)).unwrap();

        let https = https_records(&packet);
        assert_eq!(https.len(), 1);
        assert_eq!(https[0].priority, 1);
        assert_eq!(https[0].target.to_string(), "");
        assert_eq!(https[0].get_param(3), Some(&SVCParam::Port(6287)));
        assert_eq!(
            https[0].get_param(4),
            Some(&SVCParam::Ipv4Hint(vec![u32::from(Ipv4Addr::LOCALHOST)]))
        );

        let a: Vec<_> = packet
            .resource_records("@")
            .filter_map(|rr| match &rr.rdata {
                RData::A(a) => Some(Ipv4Addr::from(a.address)),
                _ => None,
            })
            .collect();
        assert_eq!(a, vec![Ipv4Addr::LOCALHOST]);
        assert!(packet.all_resource_records().all(|rr| rr.ttl == 3600));
    }

    #[test]
    fn ipv6_uses_aaaa_and_ipv6hint() {
        let keypair = Keypair::random();
        let mut s = spec(None);
        s.public_ip = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let packet = build_homeserver_packet(&keypair, &s).unwrap();
        assert!(
            packet
                .all_resource_records()
                .any(|rr| matches!(&rr.rdata, RData::AAAA(a) if Ipv6Addr::from(a.address) == Ipv6Addr::LOCALHOST))
        );
        assert!(
            !packet
                .all_resource_records()
                .any(|rr| matches!(&rr.rdata, RData::A(_)))
        );
        assert_eq!(
            https_records(&packet)[0].get_param(6),
            Some(&SVCParam::Ipv6Hint(vec![u128::from(Ipv6Addr::LOCALHOST)]))
        );
    }

    #[test]
    fn localhost_icann_record_carries_the_http_port() {
        let keypair = Keypair::random();
        let packet = build_homeserver_packet(&keypair, &spec(Some(("localhost", 6286)))).unwrap();
        let https = https_records(&packet);
        let icann = https.iter().find(|r| r.priority == 10).unwrap();
        assert_eq!(icann.target.to_string(), "localhost");
        assert_eq!(
            icann.get_param(HTTP_PORT_PARAM_KEY),
            Some(&SVCParam::Unknown(65280, vec![0x18, 0x8e].into()))
        );
        assert_eq!(icann.get_param(3), None);
    }

    #[test]
    fn other_icann_domains_have_no_http_port() {
        let keypair = Keypair::random();
        let packet =
            build_homeserver_packet(&keypair, &spec(Some(("hs.example.org", 8080)))).unwrap();
        let https = https_records(&packet);
        let icann = https.iter().find(|r| r.priority == 10).unwrap();
        assert_eq!(icann.target.to_string(), "hs.example.org");
        assert_eq!(icann.iter_params().count(), 0);
    }

    #[test]
    fn bad_inputs_are_refused() {
        let keypair = Keypair::random();
        let mut s = spec(None);
        s.public_ip = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        assert!(matches!(
            build_homeserver_packet(&keypair, &s),
            Err(PacketError::UnspecifiedIp(_))
        ));
        let mut s = spec(None);
        s.tls_port = 0;
        assert!(matches!(
            build_homeserver_packet(&keypair, &s),
            Err(PacketError::ZeroTlsPort)
        ));
        for domain in ["", "a..b", "has space.org", "http://x.org"] {
            assert!(
                matches!(
                    build_homeserver_packet(&keypair, &spec(Some((domain, 1)))),
                    Err(PacketError::InvalidDomain { .. })
                ),
                "{domain:?}"
            );
        }
        let key_domain = Keypair::random().public_key().to_z32();
        assert!(matches!(
            build_homeserver_packet(&keypair, &spec(Some((&key_domain, 1)))),
            Err(PacketError::InvalidDomain { .. })
        ));
    }

    #[test]
    fn same_records_ignores_time_but_not_content() {
        let keypair = Keypair::random();
        let a = build_homeserver_packet_at(&keypair, &spec(None), Timestamp::from(1_000)).unwrap();
        let b = build_homeserver_packet_at(&keypair, &spec(None), Timestamp::from(2_000)).unwrap();
        assert!(same_records(&a, &b));

        let mut moved = spec(None);
        moved.tls_port = 6288;
        let c = build_homeserver_packet(&keypair, &moved).unwrap();
        assert!(!same_records(&a, &c));
        let d = build_homeserver_packet(&keypair, &spec(Some(("localhost", 1)))).unwrap();
        assert!(!same_records(&a, &d));
    }
}
