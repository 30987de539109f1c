-- A lasting note of every push sent, for the push pace that `status`,
-- `/metrics` and the status page show (listings pushed per minute, and so
-- how long a backlog takes to drain). `push_attempts` cannot serve: its
-- rows go as soon as an answer settles them. The database fills this one
-- itself, so every path that notes a push is counted, and prunes rows
-- older than an hour (the pace looks at the last few minutes) as new ones
-- arrive. A push noted but then forgotten unsent still counts: rare, and
-- only the pace is off by it.
-- Append-only: never edit once landed.
CREATE TABLE push_log (
    provider   TEXT COLLATE "C" NOT NULL,
    sent_at_ms BIGINT NOT NULL
);
CREATE INDEX push_log_by_time ON push_log (provider, sent_at_ms);

CREATE FUNCTION push_attempts_logged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO push_log (provider, sent_at_ms) VALUES (NEW.provider, NEW.sent_at_ms);
    DELETE FROM push_log
     WHERE provider = NEW.provider AND sent_at_ms < NEW.sent_at_ms - 3600000;
    RETURN NULL;  -- the result of an AFTER trigger is ignored
END;
$$;
CREATE TRIGGER push_attempts_logged AFTER INSERT ON push_attempts
    FOR EACH ROW EXECUTE FUNCTION push_attempts_logged();
