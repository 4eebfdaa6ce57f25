//! The published Pubky SDK (`pubky` 0.17.1) pointed at our homeserver, offline.
//!
//! Why it is set up this way (see `shared/reference/pubky-sdk-interop.md`):
//!
//! * The native SDK never speaks plain HTTP to a homeserver: it resolves the server's
//!   PKARR packet and connects with Pubky TLS (RFC 7250 raw public key). So every test
//!   runs a private Mainline DHT on loopback ([`Dht`]), our server publishes its packet
//!   there at start (`config.dht_bootstrap`), and the SDK resolves it from there.
//! * `no_default_network()` first, then the local bootstrap and `no_relays()`: the SDK's
//!   defaults are the public DHT and public pkarr relays, which must never be contacted.
//! * 200 ms DHT request timeouts on both sides: pkarr's default of 2 s makes every
//!   publish and lookup on a 3-node network take ~2 s.
//! * A `request_timeout` on the SDK's HTTP client: reqwest has none by default, and a
//!   hung request should fail the test, not stall it. (It also bounds a `live` event
//!   stream, so tests that keep one open must finish well within it.)

use std::time::Duration;

use super::TestServer;
use homeserver::config::Config;

/// How long any one SDK request may take, body included.
pub const SDK_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// DHT request timeout used by the SDK and by our server in these tests.
pub const DHT_TIMEOUT: Duration = Duration::from_millis(200);

/// A private Mainline DHT of three nodes on 127.0.0.1; dropped at the end of the test.
pub struct Dht {
    pub testnet: mainline::Testnet,
}

impl Dht {
    /// Starts the nodes (blocking inside `mainline`, so on a blocking thread).
    pub async fn start() -> Dht {
        let testnet = tokio::task::spawn_blocking(|| {
            mainline::Testnet::builder(3)
                .bind_address(std::net::Ipv4Addr::LOCALHOST)
                .build()
        })
        .await
        .expect("DHT thread")
        .expect("local DHT testnet starts");
        Dht { testnet }
    }

    pub fn bootstrap(&self) -> Vec<String> {
        self.testnet.bootstrap.clone()
    }

    /// What our homeserver's configuration needs to publish on this DHT.
    pub fn configure(&self, config: &mut Config) {
        config.dht_bootstrap = self.bootstrap();
        config.dht_request_timeout_ms = DHT_TIMEOUT.as_millis() as u64;
    }

    /// A fresh SDK facade that only knows this DHT.
    pub fn sdk(&self) -> pubky::Pubky {
        sdk_on(&self.bootstrap())
    }
}

/// A fresh SDK facade that only knows the DHT of `bootstrap` (for a task that does not
/// hold the [`Dht`]).
pub fn sdk_on(bootstrap: &[String]) -> pubky::Pubky {
    let client = pubky::PubkyHttpClient::builder()
        .pkarr(|pkarr| {
            pkarr
                .no_default_network()
                .bootstrap(bootstrap)
                .dht_report_policy(pubky::pkarr::dht::ReportPolicy::testnet())
                .dht_request_timeout(DHT_TIMEOUT)
                .no_relays()
        })
        .request_timeout(SDK_REQUEST_TIMEOUT)
        .build()
        .expect("SDK client builds");
    pubky::Pubky::with_client(client)
}

/// Our homeserver, in process, publishing on `dht`.
pub async fn start_on(dht: &Dht, configure: impl FnOnce(&mut Config)) -> TestServer {
    super::start_with(|config| {
        dht.configure(config);
        configure(config);
    })
    .await
}

/// The SDK's view of a homeserver or user key.
pub fn sdk_key(key: &domain::PublicKey) -> pubky::PublicKey {
    pubky::PublicKey::from(key.clone())
}

/// `signup` then `signin` of a fresh user on `server` through the SDK.
pub async fn new_user(
    pubky: &pubky::Pubky,
    server: &domain::PublicKey,
) -> (pubky::PubkySigner, pubky::PubkySession) {
    let signer = pubky.signer(pubky::Keypair::random());
    signer
        .signup(&sdk_key(server), None)
        .await
        .expect("SDK signup");
    let session = signer
        .signin_blocking(client_id("interop.test"))
        .await
        .expect("SDK signin");
    (signer, session)
}

pub fn client_id(id: &str) -> pubky::ClientId {
    pubky::ClientId::new(id).expect("valid client id")
}

/// Runs `future`, failing the test if it takes longer than `limit`.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    future: impl std::future::Future<Output = T>,
) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
}

/// A homeserver the SDK scenarios run against: in this process (`homeserver all`'s
/// composition) or split into processes behind the gateway.
pub trait Deployment {
    fn public_key(&self) -> domain::PublicKey;
    /// `path` on the plain HTTP listener in front of the deployment.
    fn http_url(&self, path: &str) -> String;
    /// A fresh signup token, minted as the operator.
    fn mint_signup_token(&self) -> impl std::future::Future<Output = String>;
}

impl Deployment for super::TestServer {
    fn public_key(&self) -> domain::PublicKey {
        self.server.public_key.clone()
    }

    fn http_url(&self, path: &str) -> String {
        self.url(path)
    }

    async fn mint_signup_token(&self) -> String {
        write_api::mint_signup_token(
            &self.server.state,
            Default::default(),
            uuid::Uuid::now_v7().to_string(),
        )
        .await
        .expect("mint a signup token")
    }
}
