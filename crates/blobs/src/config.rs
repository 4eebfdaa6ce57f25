//! Where blobs live: a local folder (default) or an S3-compatible bucket.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// Backend configuration, deserialized from the service configuration.
///
/// ```toml
/// [blobs]
/// type = "fs"
/// root = "/var/lib/homeserver/blobs"
/// ```
///
/// ```toml
/// [blobs]
/// type = "s3"
/// endpoint = "https://s3.eu-central-1.amazonaws.com"
/// region = "eu-central-1"
/// bucket = "homeserver"
/// access_key_id = "..."
/// secret_access_key = "..."
/// root = "/prod"          # optional key prefix inside the bucket
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum BlobStoreConfig {
    /// A folder on the local filesystem. Created if missing.
    Fs {
        /// The folder that holds `blobs/` and `tmp/`.
        root: PathBuf,
    },
    /// An S3-compatible bucket (AWS S3, MinIO, Garage, R2, ...).
    S3 {
        /// Endpoint URL, e.g. `https://s3.eu-central-1.amazonaws.com` or `http://minio:9000`.
        endpoint: String,
        /// Region used for request signing (`us-east-1` for most self-hosted servers).
        region: String,
        /// Bucket name. The bucket must exist.
        bucket: String,
        /// Access key id.
        access_key_id: String,
        /// Secret access key. Never printed by `Debug`.
        secret_access_key: String,
        /// Optional key prefix inside the bucket, so several deployments can share one.
        #[serde(default)]
        root: Option<String>,
    },
}

impl BlobStoreConfig {
    /// A local-filesystem configuration.
    pub fn fs(root: impl Into<PathBuf>) -> Self {
        Self::Fs { root: root.into() }
    }
}

impl fmt::Debug for BlobStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fs { root } => f.debug_struct("Fs").field("root", root).finish(),
            Self::S3 {
                endpoint,
                region,
                bucket,
                access_key_id,
                secret_access_key: _,
                root,
            } => f
                .debug_struct("S3")
                .field("endpoint", endpoint)
                .field("region", region)
                .field("bucket", bucket)
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"<redacted>")
                .field("root", root)
                .finish(),
        }
    }
}
