//! Keeping the homeserver findable: its identity key, its own pkarr packet, and the users'
//! `_pubky` records that point at it.
//!
//! * [`identity`] loads or creates the Ed25519 key the whole homeserver is known by.
//! * [`packet`] builds the signed packet that tells clients where the server listens
//!   (Pubky TLS endpoint + address, optional ICANN domain).
//! * [`publisher`] publishes and refreshes that packet on the Mainline DHT (and relays if
//!   configured), republishes users' own signed packets unchanged, and runs the periodic
//!   loop that does both.
//!
//! Nothing here talks to the public network unless the operator configures it: the pkarr
//! client is always built with `no_default_network()` and then given exactly the configured
//! bootstrap nodes and relays.

pub mod identity;
pub mod packet;
pub mod publisher;

pub use identity::{IdentityError, load_or_create, write_public_key_file};
pub use packet::{PacketError, PacketSpec, build_homeserver_packet};
pub use publisher::{
    DhtConfig, HomeserverRefresh, PublishError, Publisher, PublisherError, RefreshReason,
    RepublishSchedule, RetryPolicy, RoundReport, UserRepublish, homeserver_of, republish_round,
    run_republish_loop,
};
