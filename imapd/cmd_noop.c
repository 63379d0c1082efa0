/* NOOP (RFC 3501 6.1.2): in the selected state, the point where changes
 * made by other sessions are reported (EXISTS, EXPUNGE, FETCH FLAGS). */
#include "imapd/mailview.h"

void noop_synced(struct cmd *c)
{
	struct session *s = c->s;
	if (s->sel != NULL && s->sel->gone) {
		cmd_ok(c, "%s completed", c->name);
		session_bye(s, "Selected mailbox was deleted or renamed, have to disconnect");
		cmd_done(c);
		return;
	}
	sel_announce(s, true);
	cmd_ok(c, "%s completed", c->name);
	cmd_done(c);
}

enum cmd_result cmd_noop(struct cmd *c)
{
	if (c->nargs != 0) {
		cmd_bad(c, "NOOP takes no arguments");
		return CMD_DONE;
	}
	if (c->s->sel == NULL) {
		cmd_ok(c, "NOOP completed");
		return CMD_DONE;
	}
	sel_sync(c, noop_synced);
	return CMD_PENDING;
}
