/* log.h - the one logging entry point.
 *
 * Every line carries the process role and pid, and, when given, a session
 * id and the user; the level filter runs before any formatting.  Lines go
 * to stderr, one write(2) per line so concurrent processes do not
 * interleave.  Never pass passwords or AUTH payloads here (STYLE.md).
 */
#ifndef LIB_LOG_H
#define LIB_LOG_H

#include <stdbool.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* What a log line says about its session; NULL fields are omitted. */
struct log_ctx {
	const char *sid;	/* session id, e.g. "w1-3f2a" */
	const char *user;	/* authenticated login */
};

void log_init(const char *role);
void log_set_level(enum log_level lvl);
/* Parse "debug", "info", "warn", "error"; returns 0 on success. */
int log_parse_level(const char *s, enum log_level *out);
bool log_enabled(enum log_level lvl);

void log_msg(enum log_level lvl, const struct log_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_debug(ctx, ...) do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, ctx, __VA_ARGS__); } while (0)
#define log_info(ctx, ...)  log_msg(LOG_INFO, ctx, __VA_ARGS__)
#define log_warn(ctx, ...)  log_msg(LOG_WARN, ctx, __VA_ARGS__)
#define log_error(ctx, ...) log_msg(LOG_ERROR, ctx, __VA_ARGS__)

#endif
