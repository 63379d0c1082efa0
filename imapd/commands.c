/* commands.c - the command table and the dispatcher.
 *
 * One table lists every command, the states it may run in and its flags
 * (Dovecot's imap-commands.c is the model).  A command not in the table is
 * answered BAD and is not announced in CAPABILITY.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "imapd/imapd.h"
#include "imapd/mailview.h"
#include "lib/pg.h"

static const struct cmd_def commands[] = {
	{ "CAPABILITY", STATE_ANY, cmd_capability, CMDF_PRESYNC },
	{ "NOOP", STATE_ANY, cmd_noop, 0 },
	{ "LOGOUT", STATE_ANY, cmd_logout, 0 },
	{ "ID", STATE_ANY, cmd_id, CMDF_PRESYNC },
	{ "STARTTLS", STATE_NOT_AUTH, cmd_starttls, 0 },
	{ "LOGIN", STATE_NOT_AUTH, cmd_login, 0 },
	{ "AUTHENTICATE", STATE_NOT_AUTH, cmd_authenticate, 0 },
	{ "ENABLE", STATE_AUTH, cmd_enable, 0 },
	{ "NAMESPACE", STATE_AUTH | STATE_SELECTED, cmd_namespace, CMDF_PRESYNC },
	{ "CREATE", STATE_AUTH | STATE_SELECTED, cmd_create, CMDF_PRESYNC },
	{ "DELETE", STATE_AUTH | STATE_SELECTED, cmd_delete, CMDF_PRESYNC },
	{ "RENAME", STATE_AUTH | STATE_SELECTED, cmd_rename, CMDF_PRESYNC },
	{ "SUBSCRIBE", STATE_AUTH | STATE_SELECTED, cmd_subscribe, CMDF_PRESYNC },
	{ "UNSUBSCRIBE", STATE_AUTH | STATE_SELECTED, cmd_unsubscribe, CMDF_PRESYNC },
	{ "LIST", STATE_AUTH | STATE_SELECTED, cmd_list, CMDF_PRESYNC },
	{ "LSUB", STATE_AUTH | STATE_SELECTED, cmd_lsub, CMDF_PRESYNC },
	{ "STATUS", STATE_AUTH | STATE_SELECTED, cmd_status, CMDF_PRESYNC },
	{ "SELECT", STATE_AUTH | STATE_SELECTED, cmd_select, 0 },
	{ "EXAMINE", STATE_AUTH | STATE_SELECTED, cmd_examine, 0 },
	{ "APPEND", STATE_AUTH | STATE_SELECTED, cmd_append, 0 },
	{ "CLOSE", STATE_SELECTED, cmd_close, 0 },
	{ "UNSELECT", STATE_SELECTED, cmd_unselect, 0 },
	{ "CHECK", STATE_SELECTED, cmd_check, 0 },
	{ "EXPUNGE", STATE_SELECTED, cmd_expunge, 0 },
	{ "EXPUNGE", STATE_SELECTED, cmd_expunge, CMDF_UID },
	{ "STORE", STATE_SELECTED, cmd_store, 0 },
	{ "STORE", STATE_SELECTED, cmd_store, CMDF_UID },
	{ "FETCH", STATE_SELECTED, cmd_fetch, 0 },
	{ "FETCH", STATE_SELECTED, cmd_fetch, CMDF_UID },
	{ "SEARCH", STATE_SELECTED, cmd_search, 0 }, { "SEARCH", STATE_SELECTED, cmd_search, CMDF_UID },
	{ "COPY", STATE_SELECTED, cmd_copy, 0 },
	{ "COPY", STATE_SELECTED, cmd_copy, CMDF_UID },
	{ "MOVE", STATE_SELECTED, cmd_move, 0 },
	{ "MOVE", STATE_SELECTED, cmd_move, CMDF_UID },
	{ "IDLE", STATE_AUTH | STATE_SELECTED, cmd_idle, 0 },
};

const struct cmd_def *cmd_lookup(struct str name, bool uid)
{
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
		if (uid != ((commands[i].flags & CMDF_UID) != 0))
			continue;
		if (str_ieq(name, commands[i].name))
			return &commands[i];
	}
	return NULL;
}

static void tagged(struct cmd *c, const char *status, const char *fmt, va_list ap)
{
	struct session *s = c->s;
	session_printf(s, "%s %s ", c->tag, status);
	if (!s->dead) {
		buf_vprintf(&s->out, fmt, ap);
		buf_append(&s->out, "\r\n", 2);
	}
}

void cmd_ok(struct cmd *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	tagged(c, "OK", fmt, ap);
	va_end(ap);
}

void cmd_no(struct cmd *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	tagged(c, "NO", fmt, ap);
	va_end(ap);
}

void cmd_bad(struct cmd *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	tagged(c, "BAD", fmt, ap);
	va_end(ap);
	struct session *s = c->s;
	if (++s->bad_commands >= (unsigned)s->w->cfg->max_bad_commands)
		session_bye(s, "Too many invalid commands");
}

void cmd_unavailable(struct cmd *c, const char *err)
{
	log_warn(&c->s->log, "%s: database: %s", c->name, err);
	/* RFC 5530: UNAVAILABLE, the failure is temporary. */
	cmd_no(c, "[UNAVAILABLE] Service temporarily unavailable, try again");
}

bool cmd_db_failed(struct cmd *c, const char *err)
{
	c->pg = NULL;
	if (err == NULL)
		return false;
	cmd_unavailable(c, err);
	cmd_done(c);
	return true;
}

static void log_command(struct cmd *c)
{
	if (!log_enabled(LOG_DEBUG))
		return;
	uint64_t us = now_us() - c->started_us;
	log_debug(&c->s->log, "%s %s%s done in %llu us", c->tag, c->uid ? "UID " : "", c->name,
		  (unsigned long long)us);
}

/* End a command: log it, forget it, and either go back to the input loop
 * (resume: the command was pending) or let the running loop go on. */
static void finish(struct cmd *c, bool resume)
{
	struct session *s = c->s;
	log_command(c);
	s->cmd = NULL;
	/* c lives in the command arena: not touched after this point. */
	if (resume)
		session_resume(s);
	else
		session_command_reset(s);
	session_unref(s);	/* the command's reference */
}

void cmd_done(struct cmd *c)
{
	struct session *s = c->s;
	if (s->cmd != c)
		return;	/* the session closed meanwhile and dropped the command */
	finish(c, true);
}

/* After the sync of a CMDF_PRESYNC command: tell what changed, then run
 * it.  Its arguments live in the parser, which is not reset while the
 * command is pending. */
static void presynced(struct cmd *c)
{
	struct session *s = c->s;
	if (s->dead || s->cmd != c)
		return;
	sel_announce(s, true);
	if (c->def->fn(c) == CMD_DONE && s->cmd == c)
		cmd_done(c);
}

void cmd_run(struct session *s, const struct imap_command *pc)
{
	struct cmd *c = arena_zalloc(&s->cmd_arena, sizeof(*c));
	c->s = s;
	c->arena = &s->cmd_arena;
	c->tag = arena_strndup(c->arena, pc->tag.p, pc->tag.len);
	c->started_us = now_us();

	if (pc->nargs == 0 || pc->args[0].type != IMAP_ARG_ATOM) {
		c->name = "?";
		cmd_bad(c, "Missing command name");
		goto finished;
	}
	struct str name = pc->args[0].str;
	size_t first = 1;
	if (str_ieq(name, "UID")) {
		if (pc->nargs < 2 || pc->args[1].type != IMAP_ARG_ATOM) {
			c->name = "UID";
			cmd_bad(c, "UID needs a command");
			goto finished;
		}
		c->uid = true;
		name = pc->args[1].str;
		first = 2;
	}
	char *upper = arena_strndup(c->arena, name.p, MIN(name.len, (size_t)32));
	for (char *p = upper; *p; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	c->name = upper;
	c->def = cmd_lookup(name, c->uid);
	if (c->def == NULL) {
		cmd_bad(c, "Unknown command %s%s", c->uid ? "UID " : "", upper);
		goto finished;
	}
	if ((c->def->states & s->state) == 0) {
		if (s->state == STATE_NOT_AUTH)
			cmd_bad(c, "Log in first");
		else
			cmd_bad(c, "Command not valid in this state");
		goto finished;
	}
	c->args = pc->args + first;
	c->nargs = pc->nargs - first;

	s->cmd = c;
	session_ref(s);		/* released by cmd_done */
	if ((c->def->flags & CMDF_PRESYNC) && s->sel != NULL && s->sel->dirty && !s->sel->gone) {
		sel_sync(c, presynced);
		return;
	}
	if (c->def->fn(c) == CMD_PENDING)
		return;
	if (s->cmd == c)
		finish(c, false);
	return;

finished:
	log_command(c);
	/* The dispatcher's caller (process_input) continues with the next
	 * command; reset what this one used. */
	session_command_reset(s);
}
