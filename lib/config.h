/* config.h - one configuration for every process.
 *
 * Sources, later ones winning: built-in defaults, the file (lines of
 * `key = value`, `#` comments, values optionally in double quotes), then
 * environment variables named like the key in upper case (`imap_listen` ->
 * `IMAP_LISTEN`).  Every limit the daemons enforce is a key here with a sane
 * default; docs/configuration.md lists them all.
 */
#ifndef LIB_CONFIG_H
#define LIB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct config {
	/* general */
	char *log_level;
	char *node_name;
	char *pid_file;
	/* PostgreSQL */
	char *pg_conninfo;
	int64_t pg_pool_size;
	int64_t pg_retry_max_ms;
	int64_t pg_max_queue;
	/* NATS */
	char *nats_url;
	char *nats_subject_prefix;
	int64_t nats_max_pending;
	int64_t notify_min_interval_ms;
	/* imapd processes */
	char *imap_listen;
	char *imaps_listen;
	char *metrics_listen;
	char *tls_cert_file;
	char *tls_key_file;
	int64_t workers;
	int64_t shutdown_timeout;
	char *plaintext_auth;
	int64_t crypt_threads;
	/* per-session limits */
	int64_t max_line_length;
	int64_t max_literal_size;
	int64_t max_append_size;
	int64_t append_buffer_size;	/* larger APPEND literals are spooled to a file */
	char *spool_dir;		/* "" = $TMPDIR or /tmp */
	int64_t max_keywords;
	int64_t fetch_batch;
	int64_t max_nesting;
	int64_t max_args;
	int64_t max_input_queue;
	int64_t max_output;
	int64_t max_bad_commands;
	int64_t max_sessions;
	int64_t auth_timeout;
	int64_t idle_timeout;
	int64_t idle_check_interval;
	int64_t idle_keepalive;
	int64_t login_delay_ms;
	int64_t login_delay_max_ms;
	int64_t login_fail_window;
	int64_t login_fail_addresses;
	/* mailboxes */
	int64_t max_mailbox_name;
	int64_t max_mailboxes;
	/* storaged */
	char *lmtp_listen;
	int64_t tombstone_retention;
	int64_t tombstone_expiry_interval;
	int64_t tombstone_expiry_batch;
	int64_t append_stage_expiry_interval;
	int64_t append_stage_max_age;
};

/* Fill cfg from defaults, then path (may be NULL: no file), then the
 * environment.  On error returns -1 and writes a message to err. */
int config_load(struct config *cfg, const char *path, char *err, size_t errlen);
/* Release the strings a loaded config owns. */
void config_free(struct config *cfg);
/* Print every key with its effective value (secrets in pg_conninfo
 * masked) and a one-line description. */
void config_dump(const struct config *cfg, FILE *out);
/* Print the key table (for --help). */
void config_help(FILE *out);

/* Parse "host:port" (IPv6 as "[addr]:port").  host and port are written
 * NUL-terminated.  Returns 0 on success. */
int config_split_hostport(const char *s, char *host, size_t hostlen, char *port, size_t portlen);

#endif
