-- Merkle nodes change format (version 2: fan-out 8 instead of 16, docs/merkle.md), so
-- the trees stored in the old format are dropped. The projector rebuilds every user's
-- trees from the entries before it follows the log again
-- (`Store::backfill_merkle_trees`); roots recorded on past events were roots of the
-- old trees and are forgotten (NULL = not recorded).
DELETE FROM merkle_nodes;
DELETE FROM merkle_roots;
UPDATE events SET merkle_root = NULL WHERE merkle_root IS NOT NULL;
DELETE FROM merkle_root_history;
