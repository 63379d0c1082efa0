/* ENABLE (RFC 5161).
 *
 * Only extensions this server implements and announces can be enabled;
 * anything else is ignored, as section 3.1 requires ("the server MUST
 * ignore capabilities it does not support").  RFC 7162 3.2.3: enabling
 * QRESYNC implies CONDSTORE; ENABLE runs in the authenticated state only,
 * so no mailbox is selected and no HIGHESTMODSEQ is due (3.1).
 */
#include "imapd/imapd.h"

struct extension {
	const char *name;
	unsigned bit;
	unsigned implies;
};

static const struct extension extensions[] = {
	{ "CONDSTORE", EXT_CONDSTORE, 0 },
	{ "QRESYNC", EXT_QRESYNC, EXT_CONDSTORE },
	{ NULL, 0, 0 },
};

enum cmd_result cmd_enable(struct cmd *c)
{
	struct session *s = c->s;
	if (c->nargs == 0) {
		cmd_bad(c, "ENABLE needs at least one capability");
		return CMD_DONE;
	}
	struct buf enabled = BUF_INIT;
	for (size_t i = 0; i < c->nargs; i++) {
		if (c->args[i].type != IMAP_ARG_ATOM) {
			buf_free(&enabled);
			cmd_bad(c, "ENABLE takes capability names");
			return CMD_DONE;
		}
		for (const struct extension *e = extensions; e->name != NULL; e++) {
			if (!str_ieq(c->args[i].str, e->name))
				continue;
			unsigned bits = e->bit | e->implies;
			/* RFC 5161 3.1: list only what this command newly enabled. */
			if ((s->enabled & e->bit) == 0) {
				buf_putc(&enabled, ' ');
				buf_puts(&enabled, e->name);
			}
			s->enabled |= bits;
		}
	}
	session_printf(s, "* ENABLED%s\r\n", buf_ptr(&enabled));
	buf_free(&enabled);
	cmd_ok(c, "Enabled");
	return CMD_DONE;
}
