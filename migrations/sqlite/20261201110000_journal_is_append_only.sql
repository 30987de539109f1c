-- The journal is append-only: a movement, once written, is never changed
-- or removed. The database refuses it, whatever code asks.
-- Append-only: never edit once landed.
CREATE TRIGGER movements_never_updated BEFORE UPDATE ON movements
BEGIN
    SELECT RAISE(ABORT, 'the stock journal is append-only: movements are never updated');
END;

CREATE TRIGGER movements_never_deleted BEFORE DELETE ON movements
BEGIN
    SELECT RAISE(ABORT, 'the stock journal is append-only: movements are never deleted');
END;
