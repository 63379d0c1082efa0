-- 0006_append_stage.sql - where a large APPEND puts its bytes before the
-- message is stored.
--
-- A message above append_buffer_size is never held whole in an imapd
-- worker: the worker spools the literal to a temporary file, parses it
-- from there, and sends the bytes with COPY ... FROM STDIN (FORMAT binary)
-- into one row here, keyed by a random token.  Then the usual single
-- statement stores the message: it takes the bytes out of this table
-- (DELETE ... RETURNING in a CTE), inserts the blob and the message, and
-- bumps the mailbox counter, all or nothing (DESIGN.md invariant 1).  So a
-- crash or a lost connection between the COPY and that statement leaves at
-- most a stray row here, never a half-stored message.
--
-- UNLOGGED: the rows live for a few seconds and are worthless after a
-- crash (PostgreSQL empties unlogged tables in crash recovery), so writing
-- the bytes to the WAL twice (here and in blob) would only cost.
-- account_id leads the key like every account row (DESIGN.md, "State in
-- PostgreSQL"); no foreign key, so deleting an account never waits on
-- this table and a stray row goes with the hourly sweep.
CREATE UNLOGGED TABLE append_stage (
	account_id bigint NOT NULL,
	token      bytea NOT NULL CHECK (length(token) = 16),
	data       bytea NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (account_id, token)
);
CREATE INDEX append_stage_created_idx ON append_stage (created_at);

-- append_stage_expire(max_age) -> rows removed.
-- Stray rows (a worker or connection that died between its COPY and the
-- statement that consumes the row, a statement that failed) older than
-- max_age.  storaged's housekeeping calls it periodically; an APPEND that
-- takes longer than max_age between its COPY and its insert fails cleanly
-- (NO, nothing stored), so keep max_age far above any real APPEND.
CREATE FUNCTION append_stage_expire(max_age interval DEFAULT interval '1 hour') RETURNS bigint
LANGUAGE sql AS $$
	WITH gone AS (
		DELETE FROM append_stage WHERE created_at < now() - max_age RETURNING 1
	)
	SELECT count(*) FROM gone
$$;
