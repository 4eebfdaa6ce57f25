//! The periodic garbage collection of Merkle nodes, run beside the projector: every
//! interval, sweep the trees that can have garbage (`store::merkle_gc`, whose module doc
//! explains why a sweep and the projector can run at the same time).

use std::time::Duration;
use store::Store;
use store::merkle_gc::GcScope;

#[derive(Debug, Clone)]
pub struct MerkleGcConfig {
    pub interval: Duration,
    /// Roots replaced less than this long ago stay walkable.
    pub grace: Duration,
    /// Incremented by the nodes each sweep deletes (`merkle_nodes_collected_total` when
    /// the caller registered it: `api::metrics::Metrics::merkle_nodes_collected`).
    pub collected: prometheus_client::metrics::counter::Counter,
}

/// Runs a collection every `interval` until `shutdown` resolves. A failed collection is
/// logged and retried at the next interval.
pub async fn run_merkle_gc(
    store: Store,
    config: MerkleGcConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(config.interval) => {}
        }
        // A collection stops at the next tree boundary at most: each tree is its own
        // transaction, so dropping it mid-way only rolls back the tree being swept.
        let collection = store.merkle_gc(config.grace, GcScope::Due);
        let result = tokio::select! {
            _ = &mut shutdown => return,
            result = collection => result,
        };
        match result {
            Ok(report) => {
                config.collected.inc_by(report.deleted);
                if report.trees > 0 || report.failed > 0 {
                    tracing::info!(
                        trees = report.trees,
                        kept = report.kept,
                        deleted = report.deleted,
                        history_pruned = report.pruned,
                        failed = report.failed,
                        "merkle nodes collected"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "merkle garbage collection interrupted"),
        }
    }
}
