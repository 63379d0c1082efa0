/* STATUS (RFC 3501 6.3.10).
 *
 * One statement, hence one snapshot: the mailbox row and the counts asked
 * for, each a correlated subquery served by an index that starts with the
 * mailbox (MESSAGES and RECENT by the primary key, UNSEEN by the partial
 * index message_unseen_idx); counts not asked for are not computed.
 *
 * RECENT counts the messages no session has seen yet: uid > recent_uid
 * (sql/0002_recent.sql).  A session that has the mailbox selected has
 * claimed its recent messages already, so STATUS there answers 0 for what
 * that session itself shows as \Recent.
 *
 * Items: MESSAGES, RECENT, UIDNEXT, UIDVALIDITY, UNSEEN (RFC 3501),
 * HIGHESTMODSEQ (RFC 7162 3.1.7; asking for it is a CONDSTORE enabling
 * command, 3.1) and SIZE (RFC 8438), cheap to answer although STATUS=SIZE
 * is not announced.  The answer lists them in this
 * fixed order whatever order they were asked in (the RFC's own example
 * does so), each once.
 *
 * STATUS on the selected mailbox is allowed (RFC 3501 says a client SHOULD
 * NOT; the numbers are the database's, which may be ahead of what the
 * session has told its client).  A \Noselect placeholder is not a mailbox:
 * NO [NONEXISTENT].
 */
#include <string.h>

#include "imapd/imapd.h"
#include "imapd/mailbox.h"
#include "imapd/mailview.h"
#include "lib/pg.h"

enum {
	ST_MESSAGES = 1 << 0,
	ST_RECENT = 1 << 1,
	ST_UIDNEXT = 1 << 2,
	ST_UIDVALIDITY = 1 << 3,
	ST_UNSEEN = 1 << 4,
	ST_HIGHESTMODSEQ = 1 << 5,
	ST_SIZE = 1 << 6,
};

static const struct {
	const char *name;
	unsigned bit;
	int col;		/* result column */
} items[] = {
	{ "MESSAGES", ST_MESSAGES, 3 },
	{ "RECENT", ST_RECENT, 4 },
	{ "UIDNEXT", ST_UIDNEXT, 0 },
	{ "UIDVALIDITY", ST_UIDVALIDITY, 1 },
	{ "UNSEEN", ST_UNSEEN, 5 },
	{ "HIGHESTMODSEQ", ST_HIGHESTMODSEQ, 2 },
	{ "SIZE", ST_SIZE, 6 },
};

struct status_state {
	struct cmd *c;
	struct str name;
	unsigned want;
};

static void status_done(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct status_state *st = arg;
	struct cmd *c = st->c;
	struct session *s = c->s;
	session_ref(s);
	c->pg = NULL;
	if (err != NULL) {
		cmd_unavailable(c, err);
	} else if (PQntuples(res) == 0) {
		cmd_no(c, "[NONEXISTENT] No such mailbox");
	} else {
		struct buf line = BUF_INIT;
		buf_puts(&line, "* STATUS ");
		mailbox_write_name(&line, st->name);
		buf_puts(&line, " (");
		bool first = true;
		for (size_t i = 0; i < ARRAY_SIZE(items); i++) {
			if (!(st->want & items[i].bit))
				continue;
			buf_printf(&line, "%s%s %s", first ? "" : " ", items[i].name,
				   PQgetvalue(res, 0, items[i].col));
			first = false;
		}
		buf_puts(&line, ")\r\n");
		session_write(s, buf_ptr(&line), line.len);
		buf_free(&line);
		cmd_ok(c, "Status completed");
	}
	cmd_done(c);
	session_unref(s);
}

enum cmd_result cmd_status(struct cmd *c)
{
	struct session *s = c->s;
	const struct imap_arg *list;
	size_t n;
	if (c->nargs != 2 || !imap_arg_list(&c->args[1], &list, &n)) {
		cmd_bad(c, "STATUS takes a mailbox name and a parenthesised list of items");
		return CMD_DONE;
	}
	struct status_state *st = arena_zalloc(c->arena, sizeof(*st));
	st->c = c;
	if (n == 0) {
		cmd_bad(c, "STATUS needs at least one item");
		return CMD_DONE;
	}
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;
		while (k < ARRAY_SIZE(items) && !imap_arg_is_atom(&list[i], items[k].name))
			k++;
		if (k == ARRAY_SIZE(items)) {
			struct str a;
			if (imap_arg_atom(&list[i], &a))
				cmd_bad(c, "Unknown STATUS item %.*s", (int)MIN(a.len, (size_t)40), a.p);
			else
				cmd_bad(c, "STATUS items are atoms");
			return CMD_DONE;
		}
		st->want |= items[k].bit;
	}
	if (!mailbox_arg(c, &c->args[0], 0, &st->name))
		return CMD_DONE;
	if (st->want & ST_HIGHESTMODSEQ)
		condstore_enable(c);
	const char *params[6] = {
		arena_printf(c->arena, "%lld", (long long)s->account_id),
		st->name.p,
		(st->want & ST_MESSAGES) ? "t" : "f",
		(st->want & ST_RECENT) ? "t" : "f",
		(st->want & ST_UNSEEN) ? "t" : "f",
		(st->want & ST_SIZE) ? "t" : "f",
	};
	c->pg = pg_query(s->w->pg,
		"SELECT m.uidnext, m.uidvalidity, m.highestmodseq,"
		" CASE WHEN $3::boolean THEN (SELECT count(*) FROM message"
		"   WHERE account_id = $1::bigint AND mailbox_id = m.id) END,"
		" CASE WHEN $4::boolean THEN (SELECT count(*) FROM message"
		"   WHERE account_id = $1::bigint AND mailbox_id = m.id AND uid > m.recent_uid) END,"
		" CASE WHEN $5::boolean THEN (SELECT count(*) FROM message"
		"   WHERE account_id = $1::bigint AND mailbox_id = m.id AND flags & 1 = 0) END,"
		" CASE WHEN $6::boolean THEN (SELECT coalesce(sum(size), 0) FROM message"
		"   WHERE account_id = $1::bigint AND mailbox_id = m.id) END"
		" FROM mailbox m WHERE m.account_id = $1::bigint AND m.name = $2::text",
		6, params, NULL, NULL, 0, status_done, st);
	return CMD_PENDING;
}
