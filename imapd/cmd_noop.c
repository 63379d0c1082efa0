/* NOOP (RFC 3501 6.1.2). */
#include "imapd/imapd.h"

enum cmd_result cmd_noop(struct cmd *c)
{
	if (c->nargs != 0) {
		cmd_bad(c, "NOOP takes no arguments");
		return CMD_DONE;
	}
	cmd_ok(c, "NOOP completed");
	return CMD_DONE;
}
