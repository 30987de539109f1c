-- Discovery, order-level memory and push-in-flight tracking (the other
-- three providers). Append-only: never edit once landed.

-- A push sent whose answer is not recorded yet. A provider whose stock can
-- change by hand (stokdurumu) compares what it shows with this value before
-- calling a difference a manual movement: after a crash between send and
-- record, our own push is not mistaken for a hand-made change.
ALTER TABLE listings ADD COLUMN attempted_qty INTEGER;

-- What each provider's product list showed at the last discovery, with the
-- reason a listing was not linked (unknown SKU, SKU on several listings).
CREATE TABLE catalog (
    provider   TEXT NOT NULL,
    listing_id TEXT NOT NULL,
    variant_id TEXT NOT NULL DEFAULT '',
    sku        TEXT,
    quantity   INTEGER,
    problem    TEXT,           -- NULL when linked or linkable
    seen_at_ms INTEGER NOT NULL,
    PRIMARY KEY (provider, listing_id, variant_id)
);

-- Orders whose detail was read, with the fingerprint (change stamp and
-- status) they had: a detail call is made only for new or changed orders.
-- Written in the same transaction as the order's items.
CREATE TABLE seen_orders (
    provider    TEXT NOT NULL,
    order_ref   TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    seen_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (provider, order_ref)
);
