#include "sql/migrate.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpq-fe.h>

#include "lib/util.h"

struct migration {
	int version;
	char *file;	/* base name, e.g. "0001_init.sql" */
};

struct migration_list {
	struct migration *v;
	size_t n, cap;
};

static void list_free(struct migration_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].file);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* NNNN_something.sql, with something non-empty. */
static bool parse_name(const char *name, int *version)
{
	for (int i = 0; i < 4; i++)
		if (name[i] < '0' || name[i] > '9')
			return false;
	if (name[4] != '_' || strlen(name) <= strlen("0000_.sql"))
		return false;
	*version = (name[0] - '0') * 1000 + (name[1] - '0') * 100 + (name[2] - '0') * 10 + (name[3] - '0');
	return *version > 0;
}

static int cmp_migration(const void *a, const void *b)
{
	const struct migration *x = a, *y = b;
	return (x->version > y->version) - (x->version < y->version);
}

static int scan_dir(const char *dir, struct migration_list *out, char *err, size_t errlen)
{
	DIR *d = opendir(dir);
	if (d == NULL) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	struct dirent *de;
	int rc = 0;
	while ((de = readdir(d)) != NULL) {
		const char *name = de->d_name;
		if (name[0] == '.' || !ends_with(name, ".sql"))
			continue;
		int version;
		if (!parse_name(name, &version)) {
			snprintf(err, errlen, "%s/%s: a migration must be named NNNN_name.sql "
				 "with NNNN from 0001", dir, name);
			rc = -1;
			break;
		}
		if (out->n == out->cap) {
			out->cap = out->cap ? out->cap * 2 : 16;
			out->v = xrealloc(out->v, out->cap * sizeof(*out->v));
		}
		out->v[out->n].version = version;
		out->v[out->n].file = xstrdup(name);
		out->n++;
	}
	closedir(d);
	if (rc < 0)
		return -1;
	if (out->n == 0) {
		snprintf(err, errlen, "%s: no NNNN_name.sql migrations found", dir);
		return -1;
	}
	qsort(out->v, out->n, sizeof(*out->v), cmp_migration);
	for (size_t i = 1; i < out->n; i++) {
		if (out->v[i].version == out->v[i - 1].version) {
			snprintf(err, errlen, "%s: %s and %s have the same number", dir,
				 out->v[i - 1].file, out->v[i].file);
			return -1;
		}
	}
	return 0;
}

/* The whole file as a C string; libpq takes SQL NUL-terminated, so a NUL
 * byte inside is an error rather than a silent truncation. */
static char *read_file(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	size_t len = 0, cap = 8192;
	char *s = xmalloc(cap);
	size_t n;
	while ((n = fread(s + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (cap - len - 1 == 0) {
			cap *= 2;
			s = xrealloc(s, cap);
		}
	}
	bool failed = ferror(f);
	fclose(f);
	if (failed) {
		snprintf(err, errlen, "%s: read error", path);
		free(s);
		return NULL;
	}
	s[len] = '\0';
	if (strlen(s) != len) {
		snprintf(err, errlen, "%s: contains a NUL byte", path);
		free(s);
		return NULL;
	}
	return s;
}

/* One line of a server error: "ERROR:  x\n..." -> "x". */
static void pg_error(PGconn *conn, const PGresult *res, const char *what, char *err, size_t errlen)
{
	const char *msg = NULL;
	if (res != NULL)
		msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	if (msg == NULL)
		msg = PQerrorMessage(conn);
	size_t n = strcspn(msg, "\n");
	snprintf(err, errlen, "%s: %.*s", what, (int)n, msg);
}

/* Run one statement without parameters; 0 if it succeeded. */
static int exec_simple(PGconn *conn, const char *sql, const char *what, char *err, size_t errlen)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	int rc = 0;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		pg_error(conn, res, what, err, errlen);
		rc = -1;
	}
	PQclear(res);
	return rc;
}

/* Line number of a 1-based character position reported by the server
 * (characters, not bytes: skip UTF-8 continuation bytes). */
static int line_of_position(const char *sql, long pos)
{
	int line = 1;
	long chars = 0;
	for (const unsigned char *p = (const unsigned char *)sql; *p; p++) {
		if ((*p & 0xc0) == 0x80)
			continue;
		if (++chars >= pos)
			break;
		if (*p == '\n')
			line++;
	}
	return line;
}

static bool ident_char(unsigned char c)
{
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c >= 0x80;
}

/* Find a statement that starts with a transaction-control keyword (BEGIN,
 * COMMIT, ...).  Such a statement would end the runner's transaction and
 * leave the rest of the file applied outside it, so it must be refused
 * before anything runs.  A small lexer skips comments, quoted strings,
 * quoted identifiers and dollar-quoted bodies (where a PL/pgSQL BEGIN
 * is harmless).  Returns a pointer to the keyword, or NULL. */
static const char *find_txn_control(const char *sql)
{
	static const char *const words[] = { "begin", "commit", "rollback", "end", "start",
					     "abort", "savepoint", "release", "prepare" };
	const char *p = sql;
	bool stmt_start = true;
	while (*p) {
		unsigned char c = (unsigned char)*p;
		if (c == '-' && p[1] == '-') {
			p += strcspn(p, "\n");
			continue;
		}
		if (c == '/' && p[1] == '*') {
			int depth = 1;	/* block comments nest in PostgreSQL */
			p += 2;
			while (*p && depth > 0) {
				if (p[0] == '/' && p[1] == '*')
					depth++, p += 2;
				else if (p[0] == '*' && p[1] == '/')
					depth--, p += 2;
				else
					p++;
			}
			continue;
		}
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f') {
			p++;
			continue;
		}
		if (c == ';') {
			stmt_start = true;
			p++;
			continue;
		}
		if (stmt_start && ident_char(c)) {
			const char *w = p;
			while (ident_char((unsigned char)*p))
				p++;
			size_t n = (size_t)(p - w);
			for (size_t i = 0; i < ARRAY_SIZE(words); i++)
				if (strlen(words[i]) == n && strncasecmp(w, words[i], n) == 0)
					return w;
			stmt_start = false;
			continue;
		}
		stmt_start = false;
		if (c == '\'') {
			/* E'...' strings take backslash escapes. */
			bool esc = p > sql && (p[-1] == 'e' || p[-1] == 'E') &&
				   (p - 1 == sql || !ident_char((unsigned char)p[-2]));
			p++;
			while (*p) {
				if (esc && *p == '\\' && p[1]) {
					p += 2;
				} else if (*p == '\'') {
					if (p[1] == '\'')
						p += 2;
					else
						break;
				} else {
					p++;
				}
			}
			if (*p)
				p++;
			continue;
		}
		if (c == '"') {
			p++;
			while (*p && !(*p == '"' && p[1] != '"'))
				p += (*p == '"') ? 2 : 1;
			if (*p)
				p++;
			continue;
		}
		if (c == '$' && (p == sql || !ident_char((unsigned char)p[-1]))) {
			/* $tag$ ... $tag$ (tag may be empty; $1 is a parameter). */
			const char *t = p + 1;
			while (ident_char((unsigned char)*t) && !(t == p + 1 && *t >= '0' && *t <= '9'))
				t++;
			if (*t == '$') {
				size_t tl = (size_t)(t - p) + 1;
				const char *end = p + tl;
				for (;;) {
					end = strchr(end, '$');
					if (end == NULL || strncmp(end, p, tl) == 0)
						break;
					end++;
				}
				p = end ? end + tl : p + strlen(p);
				continue;
			}
		}
		if (ident_char(c)) {
			while (ident_char((unsigned char)*p))
				p++;
			continue;
		}
		p++;
	}
	return NULL;
}

/* Line number (1-based) of a byte offset. */
static int line_of_offset(const char *sql, size_t off)
{
	int line = 1;
	for (size_t i = 0; i < off && sql[i]; i++)
		if (sql[i] == '\n')
			line++;
	return line;
}

static int apply_one(PGconn *conn, const char *dir, const struct migration *m,
		     FILE *progress, char *err, size_t errlen)
{
	char path[4096];
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, m->file) >= sizeof(path)) {
		snprintf(err, errlen, "%s: path too long", dir);
		return -1;
	}
	char *sql = read_file(path, err, errlen);
	if (sql == NULL)
		return -1;
	const char *tc = find_txn_control(sql);
	if (tc != NULL) {
		snprintf(err, errlen, "%s:%d: %.*s: transaction control is not allowed in a "
			 "migration (the runner wraps each file in one transaction)", m->file,
			 line_of_offset(sql, (size_t)(tc - sql)), (int)strcspn(tc, " \t\r\n;"), tc);
		free(sql);
		return -1;
	}

	uint64_t t0 = now_ms();
	int rc = -1;
	if (exec_simple(conn, "BEGIN", m->file, err, errlen) < 0)
		goto out;

	/* The whole file in one simple-protocol call: the server runs its
	 * statements in order and stops at the first error. */
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
		const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		const char *pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);
		const char *ctx = PQresultErrorField(res, PG_DIAG_CONTEXT);
		if (msg == NULL)
			msg = PQerrorMessage(conn);
		int n = (int)strcspn(msg, "\n");
		if (pos != NULL)
			snprintf(err, errlen, "%s:%d: %.*s", m->file, line_of_position(sql, atol(pos)), n, msg);
		else if (ctx != NULL)
			snprintf(err, errlen, "%s: %.*s (%.*s)", m->file, n, msg,
				 (int)strcspn(ctx, "\n"), ctx);
		else
			snprintf(err, errlen, "%s: %.*s", m->file, n, msg);
		PQclear(res);
		goto rollback;
	}
	PQclear(res);
	/* A file that committed on its own would have ended our transaction:
	 * its own BEGIN/COMMIT would break the all-or-nothing promise. */
	if (PQtransactionStatus(conn) != PQTRANS_INTRANS) {
		snprintf(err, errlen, "%s: the migration ended the transaction itself "
			 "(remove BEGIN/COMMIT from it)", m->file);
		goto rollback;
	}

	char version[16];
	snprintf(version, sizeof(version), "%d", m->version);
	const char *params[2] = { version, m->file };
	res = PQexecParams(conn, "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
			   2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		pg_error(conn, res, m->file, err, errlen);
		PQclear(res);
		goto rollback;
	}
	PQclear(res);
	if (exec_simple(conn, "COMMIT", m->file, err, errlen) < 0)
		goto rollback;
	if (progress != NULL) {
		fprintf(progress, "applied %s (%" PRIu64 " ms)\n", m->file, now_ms() - t0);
		fflush(progress);
	}
	rc = 0;
	goto out;

rollback:
	/* The error already in err is the one worth reporting. */
	PQclear(PQexec(conn, "ROLLBACK"));
out:
	free(sql);
	return rc;
}

static bool version_recorded(const PGresult *res, int version, const char **name)
{
	for (int i = 0; i < PQntuples(res); i++) {
		if (atoi(PQgetvalue(res, i, 0)) == version) {
			*name = PQgetvalue(res, i, 1);
			return true;
		}
	}
	return false;
}

int migrate_run(const char *conninfo, const char *dir, FILE *progress, char *err, size_t errlen)
{
	struct migration_list list = { 0 };
	if (scan_dir(dir, &list, err, errlen) < 0) {
		list_free(&list);
		return -1;
	}

	/* connect_timeout first so that the caller's conninfo can override it;
	 * without one libpq waits for the kernel's TCP timeout. */
	const char *keys[] = { "connect_timeout", "fallback_application_name", "dbname", NULL };
	const char *vals[] = { "10", "imapctl-migrate", conninfo, NULL };
	PGconn *conn = PQconnectdbParams(keys, vals, 1);
	int applied = -1;
	bool locked = false;
	PGresult *have = NULL;
	if (PQstatus(conn) != CONNECTION_OK) {
		pg_error(conn, NULL, "connect", err, errlen);
		goto out;
	}
	/* Notices such as "relation already exists, skipping" are noise here. */
	if (exec_simple(conn, "SET client_min_messages = warning", "set", err, errlen) < 0)
		goto out;

	char key[32];
	snprintf(key, sizeof(key), "%lld", (long long)MIGRATE_LOCK_KEY);
	const char *lp[1] = { key };
	PGresult *res = PQexecParams(conn, "SELECT pg_advisory_lock($1::bigint)", 1, NULL, lp, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		pg_error(conn, res, "advisory lock", err, errlen);
		PQclear(res);
		goto out;
	}
	PQclear(res);
	locked = true;

	if (exec_simple(conn,
			"CREATE TABLE IF NOT EXISTS schema_version ("
			" version integer PRIMARY KEY,"
			" name text NOT NULL,"
			" applied_at timestamptz NOT NULL DEFAULT now())",
			"schema_version", err, errlen) < 0)
		goto out;

	have = PQexec(conn, "SELECT version, name FROM schema_version ORDER BY version");
	if (PQresultStatus(have) != PGRES_TUPLES_OK) {
		pg_error(conn, have, "schema_version", err, errlen);
		goto out;
	}
	/* A database ahead of this directory (an older imapctl against a newer
	 * schema) is worth a warning, not a refusal: migrations only add. */
	int maxfile = list.v[list.n - 1].version;
	for (int i = 0; i < PQntuples(have); i++) {
		if (atoi(PQgetvalue(have, i, 0)) > maxfile && progress != NULL)
			fprintf(progress, "warning: database has migration %s (%s), newer than %s\n",
				PQgetvalue(have, i, 0), PQgetvalue(have, i, 1), dir);
	}

	applied = 0;
	for (size_t i = 0; i < list.n; i++) {
		const char *name;
		if (version_recorded(have, list.v[i].version, &name)) {
			if (strcmp(name, list.v[i].file) != 0 && progress != NULL)
				fprintf(progress, "warning: migration %04d is recorded as %s, "
					"the file is now %s\n", list.v[i].version, name, list.v[i].file);
			continue;
		}
		if (apply_one(conn, dir, &list.v[i], progress, err, errlen) < 0) {
			applied = -1;
			break;
		}
		applied++;
	}

out:
	PQclear(have);
	if (locked && PQstatus(conn) == CONNECTION_OK) {
		char e2[256];
		const char *up[1] = { key };
		res = PQexecParams(conn, "SELECT pg_advisory_unlock($1::bigint)", 1, NULL, up, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK && applied >= 0) {
			pg_error(conn, res, "advisory unlock", e2, sizeof(e2));
			snprintf(err, errlen, "%s", e2);
			applied = -1;
		}
		PQclear(res);
	}
	PQfinish(conn);
	list_free(&list);
	return applied;
}
