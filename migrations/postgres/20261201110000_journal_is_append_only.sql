-- The journal is append-only: a movement, once written, is never changed
-- or removed. The database refuses it, whatever code asks.
-- Append-only: never edit once landed.
CREATE FUNCTION movements_never_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the stock journal is append-only: movements are never updated';
END;
$$;
CREATE TRIGGER movements_never_updated BEFORE UPDATE ON movements
    FOR EACH ROW EXECUTE FUNCTION movements_never_updated();

CREATE FUNCTION movements_never_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the stock journal is append-only: movements are never deleted';
END;
$$;
CREATE TRIGGER movements_never_deleted BEFORE DELETE ON movements
    FOR EACH ROW EXECUTE FUNCTION movements_never_deleted();
-- PostgreSQL only: TRUNCATE skips row triggers, so it is refused too
-- (SQLite has no TRUNCATE; there a DELETE is the only way to remove rows).
CREATE TRIGGER movements_never_truncated BEFORE TRUNCATE ON movements
    FOR EACH STATEMENT EXECUTE FUNCTION movements_never_deleted();
