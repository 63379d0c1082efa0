-- Database settings the server's queries rely on.
--
-- JIT off: imapd's statements are short index lookups, but a planner
-- estimate that spans every mailbox (modseq statistics, see SEL_DELTA_SQL
-- in imapd/mailview.h) can push a cheap statement over jit_above_cost, and
-- compiling it then costs 100+ ms for a query that runs in 1 ms.  Set for
-- the database (new connections); a role without the right to do so gets
-- a notice, and the operator sets it in postgresql.conf instead.
DO $$
BEGIN
	EXECUTE format('ALTER DATABASE %I SET jit = off', current_database());
EXCEPTION WHEN insufficient_privilege THEN
	RAISE NOTICE 'cannot set jit = off for database %; set it in postgresql.conf', current_database();
END
$$;
