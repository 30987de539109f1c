-- A push whose answer came back but could not yet be told apart from a
-- change made by hand (stokdurumu's history unreadable at that moment):
-- the provider said what the listing shows now, so the listing is not
-- pushed again for it; the row stays until a read or a later answer
-- settles what the hand did. NULL: no answer yet (the push may or may not
-- have been carried out).
-- Append-only: never edit once landed.
ALTER TABLE push_attempts ADD COLUMN answered_qty INTEGER;
