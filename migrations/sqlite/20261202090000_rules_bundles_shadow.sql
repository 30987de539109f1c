-- What a seller decides per channel: per-SKU rules and bundles.
-- Append-only: never edit once landed.

-- A SKU's allocation rule on one provider (`rules import`). NULL fields
-- inherit from `[rules.<provider>]`, then `[sync]`.
CREATE TABLE sku_rules (
    sku           TEXT NOT NULL,
    provider      TEXT NOT NULL,
    safety_stock  INTEGER CHECK (safety_stock >= 0),
    zero_below    INTEGER CHECK (zero_below >= 0),
    percent       INTEGER CHECK (percent BETWEEN 0 AND 100),
    max_quantity  INTEGER CHECK (max_quantity >= 0),
    frozen        INTEGER CHECK (frozen IN (0, 1)),
    source        TEXT NOT NULL,     -- the file and line it came from: `rules.csv line 4`
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (sku, provider)
);

-- Bundles as imported (`bundle import`): a bundle has no stock of its own.
CREATE TABLE bundles (
    bundle_sku    TEXT NOT NULL,
    component_sku TEXT NOT NULL,
    quantity      INTEGER NOT NULL CHECK (quantity > 0),
    source        TEXT NOT NULL,     -- `bundles.csv line 3`
    PRIMARY KEY (bundle_sku, component_sku)
);

-- Each bundle flattened to the SKUs with stock it is made of (a bundle in
-- a bundle multiplies out), rebuilt from `bundles` by every import.
CREATE TABLE bundle_parts (
    bundle_sku TEXT NOT NULL,
    sku        TEXT NOT NULL,
    quantity   INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (bundle_sku, sku)
);
CREATE INDEX bundle_parts_by_sku ON bundle_parts (sku);

-- Every import of rules or bundles: the planner re-plans when one lands.
CREATE TABLE definition_changes (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    what   TEXT NOT NULL,                -- rules | bundles
    file   TEXT NOT NULL,
    rows   INTEGER NOT NULL,
    at_ms  INTEGER NOT NULL
);

-- The parts a bundle line moves, fixed when the line is first linked, so a
-- cancellation gives back exactly what the sale took even if the bundle
-- was redefined between: JSON [[sku, units per bundle], ...]; NULL for a
-- line of a plain SKU.
ALTER TABLE order_items ADD COLUMN parts TEXT;

-- Shadow mode (`[sync] mode = "shadow"`): per linked listing, how what it
-- would push compares with what the provider shows, and since when.
CREATE TABLE shadow_state (
    provider   TEXT NOT NULL,
    listing_id TEXT NOT NULL,
    variant_id TEXT NOT NULL,
    verdict    TEXT NOT NULL,      -- agree | lower | raise | unknown | frozen | no_stock
    since_ms   INTEGER NOT NULL,
    PRIMARY KEY (provider, listing_id, variant_id)
);
