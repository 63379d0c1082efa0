/* CLOSE (RFC 3501 6.4.2) and UNSELECT (RFC 3691): leave the selected
 * mailbox; CLOSE first expunges silently when the mailbox is read-write. */
#include "imapd/mailview.h"

static void leave(struct cmd *c)
{
	struct session *s = c->s;
	sel_free(&s->sel);
	s->state = STATE_AUTH;
	cmd_ok(c, "%s completed", c->name);
}

static void closed(struct cmd *c)
{
	leave(c);
	cmd_done(c);
}

enum cmd_result cmd_close(struct cmd *c)
{
	if (c->nargs != 0) {
		cmd_bad(c, "CLOSE takes no arguments");
		return CMD_DONE;
	}
	if (c->s->sel->readonly) {
		leave(c);
		return CMD_DONE;
	}
	/* No untagged EXPUNGE: the client is leaving the mailbox. */
	expunge_run(c, NULL, true, closed);
	return CMD_PENDING;
}

enum cmd_result cmd_unselect(struct cmd *c)
{
	if (c->nargs != 0) {
		cmd_bad(c, "UNSELECT takes no arguments");
		return CMD_DONE;
	}
	leave(c);
	return CMD_DONE;
}
