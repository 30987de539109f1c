-- The journal of links moved from one SKU to another (`mapping import
-- --relink`). Append-only: never edit this file once landed.

-- One row per move of a listing's link; rows are never changed or removed
-- (the triggers refuse it), so "which SKU did this listing sell as, and
-- since when" can always be answered.
CREATE TABLE link_changes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    provider   TEXT NOT NULL,
    listing_id TEXT NOT NULL,
    variant_id TEXT NOT NULL DEFAULT '',
    old_sku    TEXT NOT NULL,
    new_sku    TEXT NOT NULL,
    source     TEXT NOT NULL,   -- what moved it, e.g. `mapping import listings.csv`
    at_ms      INTEGER NOT NULL
);
CREATE INDEX link_changes_by_listing ON link_changes (provider, listing_id, variant_id, id);

CREATE TRIGGER link_changes_no_update BEFORE UPDATE ON link_changes
BEGIN
    SELECT RAISE(ABORT, 'link_changes is append-only');
END;

CREATE TRIGGER link_changes_no_delete BEFORE DELETE ON link_changes
BEGIN
    SELECT RAISE(ABORT, 'link_changes is append-only');
END;
