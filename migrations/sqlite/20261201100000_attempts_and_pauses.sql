-- Pushes whose outcome is unknown, and pauses a provider asked for.
-- Append-only: never edit once landed.

-- Every push is written here before it is sent, and stays until an answer
-- for its listing settles it. While a listing has rows here, what the
-- provider shows is one of: the last confirmed value, or any of these
-- values (an answer may have been lost after the provider applied it), so
-- the listing is pushed again whatever the plan says, and a count read
-- from the provider is told apart from a hand edit with the provider's
-- own history of the writes carrying these tags.
-- (Supersedes listings.attempted_qty, which only held the latest value and
-- so mistook an earlier lost push of ours for a change made by hand.)
CREATE TABLE push_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    provider    TEXT NOT NULL,
    listing_id  TEXT NOT NULL,
    variant_id  TEXT NOT NULL DEFAULT '',
    qty         INTEGER NOT NULL,
    tag         TEXT NOT NULL UNIQUE,  -- sent with the push where the provider keeps it (stokdurumu's reason)
    sent_at_ms  INTEGER NOT NULL
);
CREATE INDEX push_attempts_by_listing ON push_attempts (provider, listing_id, variant_id, id);

-- A pause a provider set (429 with Retry-After, X-RateLimit-Reset, v2
-- AUTH004, a daily quota used up): a restart inside it keeps it.
CREATE TABLE provider_pauses (
    provider   TEXT PRIMARY KEY NOT NULL,
    until_ms   INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    set_at_ms  INTEGER NOT NULL
);
