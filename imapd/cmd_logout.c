/* LOGOUT (RFC 3501 6.1.3): untagged BYE, then the tagged OK, then close. */
#include "imapd/imapd.h"

enum cmd_result cmd_logout(struct cmd *c)
{
	struct session *s = c->s;
	if (c->nargs != 0) {
		cmd_bad(c, "LOGOUT takes no arguments");
		return CMD_DONE;
	}
	session_printf(s, "* BYE Logging out\r\n");
	cmd_ok(c, "Logout completed");
	s->bye_sent = true;
	s->closing = true;
	s->state = STATE_LOGOUT;
	s->input = INPUT_NONE;
	return CMD_DONE;
}
