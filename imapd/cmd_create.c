/* CREATE (RFC 3501 6.3.3).
 *
 * Names below a missing parent are created as they are: "a/b/c" needs no
 * rows for "a" and "a/b".  LIST shows such missing levels as
 * \Noselect \HasChildren placeholders, and a later CREATE of one makes it a
 * real mailbox.  That satisfies the RFC's "SHOULD create any superior
 * hierarchical names that are needed" as far as a client can tell, without
 * rows that would need their own DELETE.  A trailing "/" is allowed and
 * ignored.  INBOX always exists, so creating it in any case is NO
 * [ALREADYEXISTS].
 *
 * max_mailboxes bounds the rows of an account (NO [LIMIT]).  The count and
 * the insert are one statement but not one lock: CREATEs of one account
 * racing in several sessions can overshoot the limit by the number of
 * racers, which is harmless for a bound whose purpose is to stop runaway
 * clients.
 *
 * New mailboxes are not subscribed (RFC 3501 leaves it to the client).
 */
#include <string.h>

#include "imapd/imapd.h"
#include "imapd/mailbox.h"
#include "lib/pg.h"

static void created(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct cmd *c = arg;
	struct session *s = c->s;
	session_ref(s);
	c->pg = NULL;
	if (err != NULL && strcmp(sqlstate, "23505") == 0) {
		/* A concurrent CREATE of the same name won. */
		cmd_no(c, "[ALREADYEXISTS] Mailbox already exists");
	} else if (err != NULL) {
		cmd_unavailable(c, err);
	} else if (PQntuples(res) != 1) {
		cmd_unavailable(c, "CREATE: unexpected result");
	} else if (strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
		cmd_no(c, "[ALREADYEXISTS] Mailbox already exists");
	} else if (PQgetisnull(res, 0, 1)) {
		cmd_no(c, "[LIMIT] Too many mailboxes (at most %lld)",
		       (long long)s->w->cfg->max_mailboxes);
	} else {
		cmd_ok(c, "Create completed");
	}
	cmd_done(c);
	session_unref(s);
}

enum cmd_result cmd_create(struct cmd *c)
{
	struct session *s = c->s;
	if (c->nargs != 1) {
		cmd_bad(c, "CREATE takes one mailbox name");
		return CMD_DONE;
	}
	struct str name;
	if (!mailbox_arg(c, &c->args[0], MAILBOX_NAME_TRAILING_SEP, &name))
		return CMD_DONE;
	if (str_eq(name, STR_LIT("INBOX"))) {
		cmd_no(c, "[ALREADYEXISTS] INBOX always exists");
		return CMD_DONE;
	}
	const char *params[3] = {
		arena_printf(c->arena, "%lld", (long long)s->account_id),
		name.p,
		arena_printf(c->arena, "%lld", (long long)s->w->cfg->max_mailboxes),
	};
	/* One statement: the existence check, the count and the insert.
	 * ON CONFLICT covers the race the check cannot see. */
	c->pg = pg_query(s->w->pg,
			 "WITH cur AS ("
			 "  SELECT count(*) AS n, coalesce(bool_or(name = $2), false) AS taken"
			 "    FROM mailbox WHERE account_id = $1),"
			 " ins AS ("
			 "  INSERT INTO mailbox (account_id, name)"
			 "  SELECT $1, $2 FROM cur WHERE NOT cur.taken AND cur.n < $3::bigint"
			 "  ON CONFLICT (account_id, name) DO NOTHING"
			 "  RETURNING id)"
			 " SELECT cur.taken OR (cur.n < $3::bigint AND NOT EXISTS (SELECT 1 FROM ins)),"
			 "        (SELECT id FROM ins)"
			 "   FROM cur",
			 3, params, NULL, NULL, 0, created, c);
	return CMD_PENDING;
}
