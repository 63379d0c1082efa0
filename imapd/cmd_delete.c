/* DELETE (RFC 3501 6.3.4).
 *
 * - INBOX cannot be deleted: NO [CANNOT].
 * - A mailbox with children is deleted alone; the children stay and its
 *   name lives on as a \Noselect placeholder in LIST while they exist
 *   (the RFC's "MAY ... sets the \Noselect attribute").  A placeholder
 *   itself is not a mailbox and cannot be deleted: NO [NONEXISTENT].
 * - The mailbox selected in this very session is refused with NO [INUSE]
 *   (RFC 5530: "sawing off a branch someone is sitting on", its example is
 *   exactly this).  RFC 3501 gives no way to tell a client that its
 *   selected mailbox went away other than BYE, and silently dropping back
 *   to the authenticated state (as Dovecot does) leaves the client sending
 *   commands that are suddenly invalid.  Clients know this answer: UW imapd
 *   gives it, and Thunderbird CLOSEs before deleting the open folder.
 *   Other sessions may delete a mailbox this one has selected; the
 *   selected state notices the row is gone (selected.gone).
 * - Messages and tombstones go with the row (ON DELETE CASCADE), in the
 *   same statement.  UIDVALIDITY comes from a global sequence, so a
 *   mailbox created later under the same name never reuses the UID space
 *   (RFC 3501 2.3.1.1).
 * - Subscriptions are kept (RFC 3501 6.3.6: the server MUST NOT remove a
 *   name from the subscription list because the mailbox is gone).
 */
#include <stdlib.h>
#include <string.h>

#include "imapd/imapd.h"
#include "imapd/mailbox.h"
#include "lib/pg.h"

static void deleted(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct cmd *c = arg;
	struct session *s = c->s;
	session_ref(s);
	c->pg = NULL;
	if (err != NULL) {
		cmd_unavailable(c, err);
	} else if (PQntuples(res) != 1) {
		cmd_unavailable(c, "DELETE: unexpected result");
	} else if (!PQgetisnull(res, 0, 1)) {
		int64_t id = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		mailbox_notify(s, id, 0);
		cmd_ok(c, "Delete completed");
	} else if (!PQgetisnull(res, 0, 0) && s->sel != NULL &&
		   strtoll(PQgetvalue(res, 0, 0), NULL, 10) == s->sel->mailbox_id) {
		cmd_no(c, "[INUSE] Mailbox is selected in this session; CLOSE it first");
	} else if (strcmp(PQgetvalue(res, 0, 2), "t") == 0) {
		cmd_no(c, "[NONEXISTENT] No such mailbox, only names below it exist");
	} else {
		cmd_no(c, "[NONEXISTENT] No such mailbox");
	}
	cmd_done(c);
	session_unref(s);
}

enum cmd_result cmd_delete(struct cmd *c)
{
	struct session *s = c->s;
	if (c->nargs != 1) {
		cmd_bad(c, "DELETE takes one mailbox name");
		return CMD_DONE;
	}
	struct str name;
	if (!mailbox_arg(c, &c->args[0], 0, &name))
		return CMD_DONE;
	if (str_eq(name, STR_LIT("INBOX"))) {
		cmd_no(c, "[CANNOT] INBOX cannot be deleted");
		return CMD_DONE;
	}
	const char *params[4] = {
		arena_printf(c->arena, "%lld", (long long)s->account_id),
		name.p,
		arena_printf(c->arena, "%lld", (long long)(s->sel != NULL ? s->sel->mailbox_id : -1)),
		arena_printf(c->arena, "%s/", name.p),
	};
	c->pg = pg_query(s->w->pg,
			 "WITH m AS (SELECT id FROM mailbox WHERE account_id = $1 AND name = $2),"
			 " d AS (DELETE FROM mailbox"
			 "        WHERE account_id = $1 AND id = (SELECT id FROM m) AND id <> $3::bigint"
			 "       RETURNING id)"
			 " SELECT (SELECT id FROM m), (SELECT id FROM d),"
			 "        NOT EXISTS (SELECT 1 FROM m) AND EXISTS (SELECT 1 FROM mailbox"
			 "          WHERE account_id = $1 AND starts_with(name, $4))",
			 4, params, NULL, NULL, 0, deleted, c);
	return CMD_PENDING;
}
