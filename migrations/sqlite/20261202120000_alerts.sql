-- Alerts (`[alerts]`): the episodes open now, and the deliveries owed.
-- Append-only: never edit once landed.

-- One row per alert open now, by its stable key (kind, provider, SKU or
-- listing): a restart neither fires an open episode again nor forgets to
-- resolve it. `status`, `/readyz` and `/metrics` read it.
CREATE TABLE alerts_open (
    key          TEXT PRIMARY KEY NOT NULL,   -- `push_refused/bazaardan/999999/`
    kind         TEXT NOT NULL,
    provider     TEXT,
    sku          TEXT,
    listing      TEXT,
    message      TEXT NOT NULL,
    opened_at_ms INTEGER NOT NULL
);

-- Deliveries not yet made, one per event and route, written in the same
-- transaction as the change of `alerts_open`: an alert not yet delivered
-- survives a restart. Deleted once delivered, or once its retries are spent
-- (then logged at error level with its payload).
CREATE TABLE alert_outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    route         TEXT NOT NULL CHECK (route IN ('webhook', 'command')),
    payload       TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at_ms    INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX alert_outbox_by_route ON alert_outbox (route, id);
