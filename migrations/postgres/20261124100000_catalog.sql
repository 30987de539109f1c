-- Discovery, order-level memory and push-in-flight tracking (the other
-- three providers). Append-only: never edit once landed.

-- A push sent whose answer is not recorded yet. A provider whose stock can
-- change by hand (stokdurumu) compares what it shows with this value before
-- calling a difference a manual movement: after a crash between send and
-- record, our own push is not mistaken for a hand-made change.
ALTER TABLE listings ADD COLUMN attempted_qty BIGINT;

-- What each provider's product list showed at the last discovery, with the
-- reason a listing was not linked (unknown SKU, SKU on several listings).
CREATE TABLE catalog (
    provider   TEXT COLLATE "C" NOT NULL,
    listing_id TEXT COLLATE "C" NOT NULL,
    variant_id TEXT COLLATE "C" NOT NULL DEFAULT '',
    sku        TEXT COLLATE "C",
    quantity   BIGINT,
    problem    TEXT COLLATE "C",   -- NULL when linked or linkable
    seen_at_ms BIGINT NOT NULL,
    PRIMARY KEY (provider, listing_id, variant_id)
);

-- Orders whose detail was read, with the fingerprint (change stamp and
-- status) they had: a detail call is made only for new or changed orders.
-- Written in the same transaction as the order's items.
CREATE TABLE seen_orders (
    provider    TEXT COLLATE "C" NOT NULL,
    order_ref   TEXT COLLATE "C" NOT NULL,
    fingerprint TEXT COLLATE "C" NOT NULL,
    seen_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (provider, order_ref)
);
