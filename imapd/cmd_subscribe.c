/* SUBSCRIBE and UNSUBSCRIBE (RFC 3501 6.3.6, 6.3.7).
 *
 * SUBSCRIBE takes only names of existing mailboxes (NO [NONEXISTENT]
 * otherwise), which RFC 3501 allows ("A server MAY validate the mailbox
 * argument") and Dovecot does by default: a typo then fails visibly instead
 * of leaving a subscription nothing can select.  A \Noselect placeholder is
 * not a mailbox and cannot be subscribed.  Subscribing twice is fine.
 *
 * UNSUBSCRIBE takes any subscribed name, existing or not: that is how a
 * client cleans up the subscription of a deleted mailbox, which the server
 * must not remove by itself (6.3.6).  A name that is not subscribed is
 * NO [NONEXISTENT] (6.3.7: "can't unsubscribe that name").
 *
 * Subscriptions are names (table subscription), not mailbox references.
 */
#include <string.h>

#include "imapd/imapd.h"
#include "imapd/mailbox.h"
#include "lib/pg.h"

static void subscribed(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct cmd *c = arg;
	struct session *s = c->s;
	session_ref(s);
	c->pg = NULL;
	if (err != NULL)
		cmd_unavailable(c, err);
	else if (PQntuples(res) != 1)
		cmd_unavailable(c, "SUBSCRIBE: unexpected result");
	else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
		cmd_no(c, "[NONEXISTENT] No such mailbox");
	else
		cmd_ok(c, "Subscribe completed");
	cmd_done(c);
	session_unref(s);
}

static void unsubscribed(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct cmd *c = arg;
	struct session *s = c->s;
	session_ref(s);
	c->pg = NULL;
	if (err != NULL)
		cmd_unavailable(c, err);
	else if (PQntuples(res) == 0)
		cmd_no(c, "[NONEXISTENT] Not subscribed to that name");
	else
		cmd_ok(c, "Unsubscribe completed");
	cmd_done(c);
	session_unref(s);
}

static bool one_name(struct cmd *c, struct str *name)
{
	if (c->nargs != 1) {
		cmd_bad(c, "%s takes one mailbox name", c->name);
		return false;
	}
	return mailbox_arg(c, &c->args[0], 0, name);
}

enum cmd_result cmd_subscribe(struct cmd *c)
{
	struct session *s = c->s;
	struct str name;
	if (!one_name(c, &name))
		return CMD_DONE;
	const char *params[2] = { arena_printf(c->arena, "%lld", (long long)s->account_id), name.p };
	c->pg = pg_query(s->w->pg,
			 "WITH m AS (SELECT 1 FROM mailbox WHERE account_id = $1::bigint AND name = $2::text),"
			 " ins AS (INSERT INTO subscription (account_id, name)"
			 "         SELECT $1::bigint, $2::text FROM m ON CONFLICT DO NOTHING)"
			 " SELECT EXISTS (SELECT 1 FROM m)",
			 2, params, NULL, NULL, 0, subscribed, c);
	return CMD_PENDING;
}

enum cmd_result cmd_unsubscribe(struct cmd *c)
{
	struct session *s = c->s;
	struct str name;
	if (!one_name(c, &name))
		return CMD_DONE;
	const char *params[2] = { arena_printf(c->arena, "%lld", (long long)s->account_id), name.p };
	c->pg = pg_query(s->w->pg,
			 "DELETE FROM subscription WHERE account_id = $1::bigint AND name = $2::text RETURNING 1",
			 2, params, NULL, NULL, 0, unsubscribed, c);
	return CMD_PENDING;
}
