/* CHECK (RFC 3501 6.4.1): every change is committed when its command
 * completes, so there is nothing to checkpoint; like NOOP it is a point
 * where changes made elsewhere are reported. */
#include "imapd/mailview.h"



enum cmd_result cmd_check(struct cmd *c)
{
	if (c->nargs != 0) {
		cmd_bad(c, "CHECK takes no arguments");
		return CMD_DONE;
	}
	sel_sync(c, noop_synced);
	return CMD_PENDING;
}
