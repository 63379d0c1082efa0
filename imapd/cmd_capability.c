/* CAPABILITY (RFC 3501 6.1.1): lists only what works in this state. */
#include "imapd/imapd.h"

enum cmd_result cmd_capability(struct cmd *c)
{
	if (c->nargs != 0) {
		cmd_bad(c, "CAPABILITY takes no arguments");
		return CMD_DONE;
	}
	struct buf caps = BUF_INIT;
	session_capabilities(c->s, &caps);
	session_printf(c->s, "* CAPABILITY %s\r\n", buf_ptr(&caps));
	buf_free(&caps);
	cmd_ok(c, "Capability completed");
	return CMD_DONE;
}
