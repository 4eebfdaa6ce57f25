//! The gateway: terminates the homeserver's transports and hands every request to the
//! composed application router.
//!
//! [`tls`] has the two listeners (Pubky TLS with the homeserver key, and plain HTTP) and
//! explains why both exist; [`proxy`] routes requests to the services of a split
//! deployment.

pub mod proxy;
pub mod tls;

pub use tls::{
    TlsServeOptions, pubky_tls_server_config, serve_plain, serve_pubky_tls, serve_tls_with,
};
