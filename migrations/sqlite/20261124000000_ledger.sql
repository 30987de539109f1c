-- The stock ledger. Append-only migrations: never edit this file once landed.

-- Current quantity per SKU; always equal to the sum of its movements.
CREATE TABLE stock (
    sku           TEXT PRIMARY KEY NOT NULL,
    quantity      INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

-- The journal. Every real-world event has one idempotency key; applying it
-- twice changes nothing.
CREATE TABLE movements (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    sku             TEXT NOT NULL,
    delta           INTEGER NOT NULL,
    kind            TEXT NOT NULL,  -- order_hold | order_release | erp_set | erp_adjust | external
    source          TEXT NOT NULL,  -- provider name, or erp
    reason          TEXT NOT NULL DEFAULT '',
    quantity_before INTEGER NOT NULL,
    quantity_after  INTEGER NOT NULL,
    created_at_ms   INTEGER NOT NULL
);
CREATE INDEX movements_by_sku ON movements (sku, id);

-- Where each SKU is sold, and what the provider last confirmed it shows.
CREATE TABLE listings (
    provider        TEXT NOT NULL,
    listing_id      TEXT NOT NULL,
    variant_id      TEXT NOT NULL DEFAULT '',
    sku             TEXT NOT NULL,
    origin          TEXT NOT NULL,  -- mapping | learned
    confirmed_qty   INTEGER,        -- NULL: never confirmed
    confirmed_at_ms INTEGER,
    rejected_qty    INTEGER,        -- a value the provider refused (4xx); not retried until the wanted value changes
    last_error      TEXT,
    PRIMARY KEY (provider, listing_id, variant_id)
);
CREATE INDEX listings_by_sku ON listings (sku);

-- Every order line seen, with the units it currently holds in the ledger.
CREATE TABLE order_items (
    provider            TEXT NOT NULL,
    item_key            TEXT NOT NULL,
    order_ref           TEXT NOT NULL,
    listing_id          TEXT NOT NULL,
    variant_id          TEXT NOT NULL,
    sku_hint            TEXT,
    sku                 TEXT,              -- NULL while unlinked
    quantity            INTEGER NOT NULL,
    status              TEXT NOT NULL,
    wanted_qty          INTEGER NOT NULL,  -- units its status holds
    held_qty            INTEGER NOT NULL,  -- units it holds in the ledger now
    transitions         INTEGER NOT NULL DEFAULT 0,
    baseline            INTEGER NOT NULL DEFAULT 0,  -- created before stoksync first polled: never moves stock
    provider_updated_at TEXT NOT NULL,
    first_seen_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL,
    PRIMARY KEY (provider, item_key)
);
CREATE INDEX order_items_unlinked ON order_items (provider) WHERE sku IS NULL;

-- Lines a provider sent that could not be translated (e.g. fractional quantity).
CREATE TABLE anomalies (
    provider   TEXT NOT NULL,
    item_key   TEXT NOT NULL,
    message    TEXT NOT NULL,
    seen_at_ms INTEGER NOT NULL,
    PRIMARY KEY (provider, item_key)
);

-- Per provider: poll cursor (written in the same transaction as the items it
-- covers), first-poll epoch, health.
CREATE TABLE provider_state (
    provider        TEXT PRIMARY KEY NOT NULL,
    cursor          TEXT,
    epoch_ms        INTEGER,
    last_poll_ok_ms INTEGER,
    last_push_ok_ms INTEGER,
    last_error      TEXT,
    last_error_ms   INTEGER
);

-- One row per HTTP attempt: daily quotas survive restarts, and `status`
-- shows requests used this minute and this day.
CREATE TABLE request_log (
    provider TEXT NOT NULL,
    at_ms    INTEGER NOT NULL
);
CREATE INDEX request_log_by_time ON request_log (provider, at_ms);
