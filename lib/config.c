#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

enum key_type { KEY_STR, KEY_INT };

struct key {
	const char *name;
	enum key_type type;
	size_t off;
	const char *def;
	int64_t min, max;
	const char *help;
};

#define S(f, d, h) { #f, KEY_STR, offsetof(struct config, f), d, 0, 0, h }
#define I(f, d, lo, hi, h) { #f, KEY_INT, offsetof(struct config, f), #d, lo, hi, h }

static const struct key keys[] = {
	S(log_level, "info", "debug, info, warn or error"),
	S(node_name, "", "name of this node in logs and metrics (default: host name)"),
	S(pid_file, "", "write the master's pid here"),
	S(pg_conninfo, "host=127.0.0.1 port=5432 dbname=mail user=mail", "libpq connection string"),
	I(pg_pool_size, 4, 1, 64, "PostgreSQL connections per worker process"),
	I(pg_max_queue, 10000, 1, 10000000, "database requests a worker queues before answering NO [UNAVAILABLE]"),
	I(pg_retry_max_ms, 10000, 100, 600000, "longest back-off between reconnect attempts to PostgreSQL"),
	S(nats_url, "nats://127.0.0.1:4222", "NATS server URL(s), comma separated"),
	S(nats_subject_prefix, "mail", "first token of every change-notification subject"),
	I(nats_max_pending, 65536, 16, 16777216, "notifications queued towards a worker loop before dropping (the periodic check recovers)"),
	I(notify_min_interval_ms, 3, 0, 1000, "in a burst of changes to one mailbox, a worker's delta queries for its idling sessions are at least this far apart"),
	S(imap_listen, "0.0.0.0:143", "address:port for IMAP with STARTTLS; empty to disable"),
	S(imaps_listen, "0.0.0.0:993", "address:port for implicit TLS; empty to disable"),
	S(metrics_listen, "", "address:port for HTTP /metrics (Prometheus) and /ready; empty to disable"),
	S(tls_cert_file, "", "PEM certificate chain; empty disables TLS"),
	S(tls_key_file, "", "PEM private key"),
	I(workers, 0, 0, 256, "worker processes per node; 0 = one per CPU"),
	I(shutdown_timeout, 10, 0, 3600, "seconds running commands may take to finish after SIGTERM"),
	S(plaintext_auth, "loopback", "allow LOGIN/AUTHENTICATE without TLS: yes, no, or loopback"),
	I(crypt_threads, 2, 1, 64, "threads per worker for CPU-heavy work: password hashes, parsing appended messages"),
	I(max_line_length, 65536, 8192, 16777216, "longest command line in octets (RFC 7162 section 4 asks for at least 8192)"),
	I(max_literal_size, 65536, 1024, 1073741824, "largest literal in a command other than APPEND"),
	I(max_append_size, 52428800, 1024, 1073741824, "largest message APPEND accepts"),
	I(append_buffer_size, 1048576, 4096, 1073741824, "APPEND literals up to this size are held in memory; larger ones pass through an unlinked file in spool_dir and are streamed to the database in 64 KiB chunks"),
	S(spool_dir, "", "directory for the unlinked temporary files of large APPENDs (local disk); empty = $TMPDIR, else /tmp"),
	I(max_keywords, 128, 1, 100000, "keywords one STORE or APPEND may name"),
	I(fetch_batch, 500, 1, 100000, "messages FETCH reads per database round trip (fewer when bodies are fetched)"),
	I(max_nesting, 32, 4, 1024, "deepest parenthesised list nesting in a command"),
	I(max_args, 10000, 16, 1000000, "most arguments (tokens) in one command"),
	I(max_input_queue, 262144, 16384, 67108864, "bytes of pipelined input read ahead of the running command; past this the server stops reading"),
	I(max_output, 16777216, 65536, 1073741824, "bytes of output queued for a client before it is disconnected"),
	I(max_bad_commands, 20, 1, 100000, "BAD responses before the connection is closed"),
	I(max_sessions, 10000, 1, 1000000, "sessions per worker process"),
	I(auth_timeout, 60, 5, 86400, "seconds a connection may stay unauthenticated"),
	I(idle_timeout, 1800, 60, 86400, "seconds of client silence before disconnect (RFC 3501 5.4: at least 30 minutes)"),
	I(idle_check_interval, 5, 1, 3600, "seconds between a worker's HIGHESTMODSEQ checks of every selected mailbox (catches notifications NATS lost; NATS pushes come on top)"),
	I(idle_keepalive, 120, 10, 3600, "seconds between untagged OK keepalives during IDLE"),
	I(login_delay_ms, 500, 0, 60000, "delay after the first failed login; doubles with each further failure"),
	I(login_delay_max_ms, 15000, 0, 600000, "longest delay after failed logins"),
	I(login_fail_window, 300, 1, 86400, "seconds failures from one address are remembered"),
	I(login_fail_addresses, 16384, 64, 16777216, "source addresses whose failed logins a node remembers (shared memory, about 64 bytes each)"),
	I(max_mailbox_name, 512, 16, 65536, "longest mailbox name in octets of UTF-8 (the stored form)"),
	I(max_mailboxes, 10000, 1, 10000000, "most mailboxes one account may have (CREATE and RENAME INBOX answer NO [LIMIT] beyond)"),
	S(lmtp_listen, "127.0.0.1:24", "address:port storaged accepts LMTP on"),
	I(tombstone_retention, 2592000, 0, 315360000, "seconds expunge tombstones are kept before storaged folds them into hole ranges and raises the vanished floor (RFC 7162 5.3)"),
	I(tombstone_expiry_interval, 3600, 1, 604800, "seconds between storaged's tombstone expiry runs"),
	I(append_stage_expiry_interval, 600, 1, 86400, "seconds between storaged's removals of APPEND stage rows left by crashed workers"),
	I(append_stage_max_age, 3600, 60, 604800, "seconds after which an APPEND stage row counts as left behind"),
	I(tombstone_expiry_batch, 10000, 1, 10000000, "tombstones one expiry call folds (it holds the locks of the mailboxes it folds until it commits); a run repeats calls until none is left"),
};

static char **str_field(struct config *cfg, const struct key *k)
{
	return (char **)((char *)cfg + k->off);
}

static int64_t *int_field(struct config *cfg, const struct key *k)
{
	return (int64_t *)((char *)cfg + k->off);
}

static const struct key *find_key(const char *name, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		if (strlen(keys[i].name) == len && memcmp(keys[i].name, name, len) == 0)
			return &keys[i];
	return NULL;
}

static int set_value(struct config *cfg, const struct key *k, const char *val,
		     const char *where, char *err, size_t errlen)
{
	if (k->type == KEY_STR) {
		char **f = str_field(cfg, k);
		free(*f);
		*f = xstrdup(val);
		return 0;
	}
	/* Integers may carry a k/m/g suffix for sizes. */
	char *end;
	errno = 0;
	long long v = strtoll(val, &end, 10);
	if (end == val || errno != 0) {
		snprintf(err, errlen, "%s: %s: not a number: '%s'", where, k->name, val);
		return -1;
	}
	int64_t mult = 1;
	if (*end == 'k' || *end == 'K')
		mult = 1024, end++;
	else if (*end == 'm' || *end == 'M')
		mult = 1024 * 1024, end++;
	else if (*end == 'g' || *end == 'G')
		mult = 1024LL * 1024 * 1024, end++;
	if (*end != '\0' || v > INT64_MAX / mult || v < INT64_MIN / mult) {
		snprintf(err, errlen, "%s: %s: not a number: '%s'", where, k->name, val);
		return -1;
	}
	v *= mult;
	if (v < k->min || v > k->max) {
		snprintf(err, errlen, "%s: %s: %lld is outside %lld..%lld", where,
			 k->name, v, (long long)k->min, (long long)k->max);
		return -1;
	}
	*int_field(cfg, k) = v;
	return 0;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

static int load_file(struct config *cfg, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	char line[4096];
	int lineno = 0, rc = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		char where[512];
		snprintf(where, sizeof(where), "%s:%d", path, lineno);
		if (strchr(line, '\n') == NULL && !feof(f)) {
			snprintf(err, errlen, "%s: line too long", where);
			rc = -1;
			break;
		}
		char *s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		char *eq = strchr(s, '=');
		if (eq == NULL) {
			snprintf(err, errlen, "%s: expected 'key = value'", where);
			rc = -1;
			break;
		}
		*eq = '\0';
		char *name = trim(s), *val = trim(eq + 1);
		size_t vl = strlen(val);
		if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
			val[vl - 1] = '\0';
			val++;
		}
		const struct key *k = find_key(name, strlen(name));
		if (k == NULL) {
			snprintf(err, errlen, "%s: unknown key '%s'", where, name);
			rc = -1;
			break;
		}
		if (set_value(cfg, k, val, where, err, errlen) < 0) {
			rc = -1;
			break;
		}
	}
	fclose(f);
	return rc;
}

int config_load(struct config *cfg, const char *path, char *err, size_t errlen)
{
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		if (set_value(cfg, &keys[i], keys[i].def, "default", err, errlen) < 0)
			return -1;
	if (path != NULL && *path != '\0' && load_file(cfg, path, err, errlen) < 0)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		char env[64];
		size_t n = strlen(keys[i].name);
		for (size_t j = 0; j <= n; j++)
			env[j] = (char)toupper((unsigned char)keys[i].name[j]);
		const char *v = getenv(env);
		if (v != NULL && set_value(cfg, &keys[i], v, env, err, errlen) < 0)
			return -1;
	}
	if (cfg->node_name[0] == '\0') {
		char host[256];
		if (gethostname(host, sizeof(host)) != 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		free(cfg->node_name);
		cfg->node_name = xstrdup(host);
	}
	if (strcmp(cfg->plaintext_auth, "yes") != 0 && strcmp(cfg->plaintext_auth, "no") != 0 &&
	    strcmp(cfg->plaintext_auth, "loopback") != 0) {
		snprintf(err, errlen, "plaintext_auth: must be yes, no or loopback");
		return -1;
	}
	if ((cfg->tls_cert_file[0] == '\0') != (cfg->tls_key_file[0] == '\0')) {
		snprintf(err, errlen, "tls_cert_file and tls_key_file must be set together");
		return -1;
	}
	return 0;
}

void config_free(struct config *cfg)
{
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		if (keys[i].type == KEY_STR) {
			char **f = str_field(cfg, &keys[i]);
			free(*f);
			*f = NULL;
		}
	}
}

/* Hide password=... in a libpq connection string. */
static void mask_conninfo(const char *in, char *out, size_t outlen)
{
	size_t o = 0;
	const char *p = in;
	while (*p && o + 1 < outlen) {
		if (strncmp(p, "password=", 9) == 0 && (p == in || p[-1] == ' ')) {
			const char *m = "password=***";
			while (*m && o + 1 < outlen)
				out[o++] = *m++;
			p += 9;
			if (*p == '\'') {
				p++;
				while (*p && *p != '\'')
					p += (*p == '\\' && p[1]) ? 2 : 1;
				if (*p)
					p++;
			} else {
				while (*p && *p != ' ')
					p++;
			}
			continue;
		}
		out[o++] = *p++;
	}
	out[o] = '\0';
}

/* Hide the password of user:password@ in each URL of a comma-separated
 * list (nats_url). */
static void mask_urls(const char *in, char *out, size_t outlen)
{
	size_t o = 0;
	const char *p = in;
	while (*p && o + 1 < outlen) {
		const char *end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		const char *scheme = strstr(p, "://");
		const char *host = scheme != NULL && scheme < end ? scheme + 3 : p;
		const char *at = memchr(host, '@', (size_t)(end - host));
		const char *colon = at != NULL ? memchr(host, ':', (size_t)(at - host)) : NULL;
		while (p < end && o + 1 < outlen) {
			if (colon != NULL && p == colon + 1) {
				for (const char *m = "***"; *m && o + 1 < outlen; m++)
					out[o++] = *m;
				p = at;
				continue;
			}
			out[o++] = *p++;
		}
		if (*p == ',' && o + 1 < outlen)
			out[o++] = *p++;
	}
	out[o] = '\0';
}

void config_dump(const struct config *cfg, FILE *out)
{
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		const struct key *k = &keys[i];
		if (k->type == KEY_STR) {
			const char *v = *(char *const *)((const char *)cfg + k->off);
			char masked[1024];
			if (strcmp(k->name, "pg_conninfo") == 0) {
				mask_conninfo(v, masked, sizeof(masked));
				v = masked;
			} else if (strcmp(k->name, "nats_url") == 0) {
				mask_urls(v, masked, sizeof(masked));
				v = masked;
			}
			fprintf(out, "%s = \"%s\"\n", k->name, v);
		} else {
			fprintf(out, "%s = %lld\n", k->name,
				(long long)*(const int64_t *)((const char *)cfg + k->off));
		}
	}
}

void config_help(FILE *out)
{
	fprintf(out, "Configuration keys (file: key = value; environment: KEY in upper case):\n");
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		fprintf(out, "  %-22s %s (default: %s)\n", keys[i].name, keys[i].help,
			keys[i].def[0] ? keys[i].def : "empty");
}

int config_split_hostport(const char *s, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon;
	const char *h = s;
	size_t hl;
	if (*s == '[') {
		const char *rb = strchr(s, ']');
		if (rb == NULL || rb[1] != ':')
			return -1;
		h = s + 1;
		hl = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return -1;
		hl = (size_t)(colon - s);
	}
	size_t pl = strlen(colon + 1);
	if (hl + 1 > hostlen || pl + 1 > portlen || pl == 0)
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	memcpy(port, colon + 1, pl + 1);
	for (size_t i = 0; i < pl; i++)
		if (!isdigit((unsigned char)port[i]))
			return -1;
	return 0;
}
