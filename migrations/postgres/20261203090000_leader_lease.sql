-- Who is the active daemon (`[database]` shared by several hosts): one row,
-- taken and renewed by the active daemon, taken over by a standby once it
-- expires. Times are the database's clock, so hosts whose clocks differ
-- still agree. `epoch` rises by one at every change of holder; every write
-- of the active daemon checks, inside its transaction, that the epoch is
-- still the one it took, so a daemon that lost the lease (paused,
-- partitioned) writes nothing. Append-only: never edit once landed.
CREATE TABLE leader_lease (
    id             BIGINT PRIMARY KEY CHECK (id = 1),
    holder         TEXT COLLATE "C" NOT NULL,     -- `host/pid/nonce` of the active daemon
    epoch          BIGINT NOT NULL,
    acquired_at_ms BIGINT NOT NULL,
    renewed_at_ms  BIGINT NOT NULL,
    expires_at_ms  BIGINT NOT NULL
);

-- Daemons waiting to take over, as last seen: `status` lists them.
CREATE TABLE lease_standbys (
    holder     TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    seen_at_ms BIGINT NOT NULL
);

-- The lease epoch under which each request was granted (NULL: before
-- leases, or a command run by hand).
ALTER TABLE request_log ADD COLUMN epoch BIGINT;
