/* RENAME (RFC 3501 6.3.5).
 *
 * An ordinary rename is one UPDATE of the mailbox and everything below it
 * ("a" -> "b" also turns "a/x" into "b/x").  Mailbox ids, UIDVALIDITY and
 * messages stay: UIDVALIDITY values come from a global sequence, so no
 * earlier mailbox ever had this one's value under its new name and a
 * client cache keyed by (name, UIDVALIDITY) cannot be confused.
 *   - The source may be a placeholder (a missing level with children, as
 *     in the RFC 9051 6.3.6 example "RENAME foo zowie" with only foo/bar):
 *     its children move.  No rows at all: NO [NONEXISTENT].
 *   - The new name existing as a mailbox: NO [ALREADYEXISTS].  Existing
 *     as a placeholder is fine (like CREATE).  A collision further down
 *     (b/x already exists) fails the statement: also ALREADYEXISTS.
 *   - Renaming into its own subtree ("a" -> "a/b") or onto one of its
 *     ancestors ("a/b" -> "a") is NO [CANNOT]: the unique index is checked
 *     row by row, so such a shift could collide with itself halfway.
 *   - Names below that would outgrow max_mailbox_name: NO [LIMIT].
 *   - Subscriptions: the new names of subscribed mailboxes are subscribed
 *     too; the old names stay subscribed, because RFC 3501 6.3.6 forbids
 *     removing a name from the subscription list unilaterally.
 *   - The selected mailbox may be renamed; the session's name follows.
 *
 * Renaming INBOX moves its messages into a new mailbox and leaves INBOX
 * empty; INBOX's children are not touched.  All in one statement: INBOX's
 * row is updated first (taking its lock, so concurrent writers to INBOX
 * wait, and bumping highestmodseq), the new mailbox gets a fresh
 * UIDVALIDITY with INBOX's uidnext, highestmodseq and recent_uid, the
 * message rows change mailbox keeping their UIDs, and every moved UID gets
 * a tombstone in INBOX with the new modseq, so sessions that have INBOX
 * selected and clients resynchronising later see them vanish.  INBOX keeps
 * its uidnext, its old tombstones and hole ranges: its UID space loses
 * nothing.  max_mailboxes applies (NO [LIMIT]).  The new mailbox is
 * subscribed if INBOX is.
 *
 * The new mailbox must keep the invariant SELECT builds views from: every
 * UID below uidnext is a live message or a hole (tombstone or
 * expunged_range, sql/0005_tombstone_expiry.sql).  Its holes are exactly
 * the UIDs below uidnext that were not moved, written as ranges; copying
 * INBOX's tombstones and ranges instead would miss UIDs that changed after
 * the statement's snapshot but before it got INBOX's lock (a delivery takes
 * a UID the copy does not know, an expunge deletes a message the move then
 * skips).  Their modseqs are not kept: the mailbox starts with a fresh
 * UIDVALIDITY, so no client can hold a modseq of it from before it
 * existed, and its vanished_floor starts at its highestmodseq (RFC 7162
 * 3.2.6 note: a resync from below the floor is answered from the holes).
 */
#include <stdlib.h>
#include <string.h>

#include "imapd/imapd.h"
#include "imapd/mailbox.h"
#include "lib/pg.h"

struct rename_state {
	struct cmd *c;
	struct str from, to;
};

static void renamed(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct rename_state *st = arg;
	struct cmd *c = st->c;
	struct session *s = c->s;
	session_ref(s);
	c->pg = NULL;
	if (err != NULL && strcmp(sqlstate, "23505") == 0) {
		cmd_no(c, "[ALREADYEXISTS] A mailbox with the new name (or one below it) already exists");
	} else if (err != NULL) {
		cmd_unavailable(c, err);
	} else if (PQntuples(res) < 1) {
		cmd_unavailable(c, "RENAME: unexpected result");
	} else if (strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
		cmd_no(c, "[ALREADYEXISTS] Mailbox already exists");
	} else if (strcmp(PQgetvalue(res, 0, 1), "t") == 0) {
		cmd_no(c, "[LIMIT] Names below the mailbox would exceed %lld octets",
		       (long long)s->w->cfg->max_mailbox_name);
	} else if (PQgetisnull(res, 0, 2)) {
		cmd_no(c, "[NONEXISTENT] No such mailbox");
	} else {
		/* The selected mailbox keeps its id; only its name changes. */
		for (int i = 0; s->sel != NULL && i < PQntuples(res); i++) {
			if (strtoll(PQgetvalue(res, i, 2), NULL, 10) == s->sel->mailbox_id) {
				free(s->sel->name);
				s->sel->name = xstrdup(PQgetvalue(res, i, 3));
			}
		}
		cmd_ok(c, "Rename completed");
	}
	cmd_done(c);
	session_unref(s);
}

static void inbox_renamed(void *arg, PGresult *res, const char *err, const char *sqlstate)
{
	struct rename_state *st = arg;
	struct cmd *c = st->c;
	struct session *s = c->s;
	session_ref(s);
	c->pg = NULL;
	if (err != NULL && strcmp(sqlstate, "23505") == 0) {
		cmd_no(c, "[ALREADYEXISTS] Mailbox already exists");
	} else if (err != NULL) {
		cmd_unavailable(c, err);
	} else if (PQntuples(res) != 1) {
		cmd_unavailable(c, "RENAME: unexpected result");
	} else if (strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
		cmd_no(c, "[ALREADYEXISTS] Mailbox already exists");
	} else if (PQgetisnull(res, 0, 2)) {
		if (strtoll(PQgetvalue(res, 0, 1), NULL, 10) >= s->w->cfg->max_mailboxes)
			cmd_no(c, "[LIMIT] Too many mailboxes (at most %lld)",
			       (long long)s->w->cfg->max_mailboxes);
		else	/* every account has one; only a broken account has not */
			cmd_no(c, "[NONEXISTENT] No INBOX");
	} else {
		int64_t inbox = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
		uint64_t modseq = strtoull(PQgetvalue(res, 0, 3), NULL, 10);
		log_info(&s->log, "RENAME INBOX: %s messages moved", PQgetvalue(res, 0, 4));
		mailbox_notify_kind(s, inbox, modseq, "expunge");
		cmd_ok(c, "Rename completed");
	}
	cmd_done(c);
	session_unref(s);
}

enum cmd_result cmd_rename(struct cmd *c)
{
	struct session *s = c->s;
	if (c->nargs != 2) {
		cmd_bad(c, "RENAME takes two mailbox names");
		return CMD_DONE;
	}
	struct rename_state *st = arena_zalloc(c->arena, sizeof(*st));
	st->c = c;
	if (!mailbox_arg(c, &c->args[0], 0, &st->from) || !mailbox_arg(c, &c->args[1], 0, &st->to))
		return CMD_DONE;
	if (str_eq(st->to, STR_LIT("INBOX"))) {
		cmd_no(c, "[ALREADYEXISTS] INBOX always exists");
		return CMD_DONE;
	}
	const char *account = arena_printf(c->arena, "%lld", (long long)s->account_id);

	if (str_eq(st->from, STR_LIT("INBOX"))) {
		const char *params[3] = {
			account, st->to.p,
			arena_printf(c->arena, "%lld", (long long)s->w->cfg->max_mailboxes),
		};
		c->pg = pg_query(s->w->pg,
			"WITH dst AS ("
			"  SELECT count(*) AS n, coalesce(bool_or(name = $2::text), false) AS taken"
			"    FROM mailbox WHERE account_id = $1::bigint),"
			" src AS ("
			"  UPDATE mailbox SET highestmodseq = highestmodseq + 1"
			"   WHERE account_id = $1::bigint AND name = 'INBOX'"
			"     AND NOT (SELECT taken FROM dst) AND (SELECT n FROM dst) < $3::bigint"
			"  RETURNING id, uidnext, highestmodseq, recent_uid, keywords),"
			" nb AS ("
			"  INSERT INTO mailbox (account_id, name, uidnext, highestmodseq, vanished_floor,"
			"                       recent_uid, keywords)"
			"  SELECT $1::bigint, $2::text, uidnext, highestmodseq, highestmodseq, recent_uid,"
			"         keywords FROM src"
			"  RETURNING id),"
			" moved AS ("
			"  UPDATE message SET mailbox_id = (SELECT id FROM nb)"
			"   WHERE account_id = $1::bigint AND mailbox_id = (SELECT id FROM src)"
			"  RETURNING uid),"
			/* The new mailbox's holes: the gaps between the moved UIDs,
			 * with src.uidnext closing the last one (see the comment at
			 * the top). */
			" holes AS ("
			"  INSERT INTO expunged_range (account_id, mailbox_id, lo, hi)"
			"  SELECT $1::bigint, nb.id, g.lo, g.hi FROM nb,"
			"   (SELECT coalesce(lag(u.uid) OVER (ORDER BY u.uid), 0) + 1 AS lo, u.uid - 1 AS hi"
			"      FROM (SELECT uid FROM moved UNION ALL SELECT uidnext FROM src) u) g"
			"   WHERE g.lo <= g.hi),"
			" tomb AS ("
			"  INSERT INTO expunged (account_id, mailbox_id, uid, modseq)"
			"  SELECT $1::bigint, src.id, moved.uid, src.highestmodseq FROM src, moved"
			"  RETURNING uid),"
			" subs AS ("
			"  INSERT INTO subscription (account_id, name)"
			"  SELECT $1::bigint, $2::text FROM nb WHERE EXISTS (SELECT 1 FROM subscription"
			"     WHERE account_id = $1::bigint AND name = 'INBOX')"
			"  ON CONFLICT DO NOTHING)"
			" SELECT dst.taken, dst.n, src.id, src.highestmodseq, (SELECT count(*) FROM tomb)"
			"   FROM dst LEFT JOIN src ON true",
			3, params, NULL, NULL, 0, inbox_renamed, st);
		return CMD_PENDING;
	}

	if (str_eq(st->from, st->to)) {
		cmd_no(c, "[ALREADYEXISTS] The new name is the old name");
		return CMD_DONE;
	}
	if (mailbox_is_below(st->to, st->from) || mailbox_is_below(st->from, st->to)) {
		cmd_no(c, "[CANNOT] Cannot rename a mailbox into its own subtree or onto its parent");
		return CMD_DONE;
	}
	const char *params[4] = {
		account, st->from.p, st->to.p,
		arena_printf(c->arena, "%lld", (long long)s->w->cfg->max_mailbox_name),
	};
	c->pg = pg_query(s->w->pg,
		"WITH dst AS ("
		"  SELECT EXISTS (SELECT 1 FROM mailbox WHERE account_id = $1::bigint AND name = $3::text)"
		"           AS taken,"
		"         EXISTS (SELECT 1 FROM mailbox WHERE account_id = $1::bigint"
		"                    AND starts_with(name, $2::text || '/')"
		"                    AND octet_length(name) - octet_length($2::text)"
		"                        + octet_length($3::text) > $4::bigint) AS toolong),"
		" moved AS ("
		"  UPDATE mailbox SET name = $3::text || substr(name, char_length($2::text) + 1)"
		"   WHERE account_id = $1::bigint"
		"     AND (name = $2::text OR starts_with(name, $2::text || '/'))"
		"     AND NOT (SELECT taken OR toolong FROM dst)"
		"  RETURNING id, name),"
		" subs AS ("
		"  INSERT INTO subscription (account_id, name)"
		"  SELECT $1::bigint, m.name FROM moved m WHERE EXISTS (SELECT 1 FROM subscription s"
		"     WHERE s.account_id = $1::bigint"
		"       AND s.name = $2::text || substr(m.name, char_length($3::text) + 1))"
		"  ON CONFLICT DO NOTHING)"
		" SELECT dst.taken, dst.toolong, m.id, m.name FROM dst LEFT JOIN moved m ON true",
		4, params, NULL, NULL, 0, renamed, st);
	return CMD_PENDING;
}
