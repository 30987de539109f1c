-- Since when each listing has waited to be pushed (its wanted value differs
-- from what its provider confirmed), for the backlog alert, `/metrics` and
-- the status page. Written by the active daemon's alerts evaluator at each
-- evaluation, so the answer survives a restart, a failover and a provider
-- whose polls fail (no push round runs then). Append-only: never edit once
-- landed.

-- One row per listing waiting at the last evaluation. `since_ms` comes from
-- the ledger itself (the movement that made the listing differ, the
-- confirmation or import after which it differs), not from when the
-- evaluator happened to look.
CREATE TABLE pending_since (
    provider   TEXT COLLATE "C" NOT NULL,
    listing_id TEXT COLLATE "C" NOT NULL,
    variant_id TEXT COLLATE "C" NOT NULL DEFAULT '',
    since_ms   BIGINT NOT NULL,
    PRIMARY KEY (provider, listing_id, variant_id)
);

-- When `pending_since` was last brought up to date for a provider, and the
-- newest movement id then: a listing without a row was in sync at that
-- moment, so only movements after it can have made it differ.
CREATE TABLE pending_checks (
    provider      TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    checked_at_ms BIGINT NOT NULL,
    movement_id   BIGINT NOT NULL
);
