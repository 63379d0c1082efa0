/* imapctl - the administration tool: schema migrations, tenants, accounts,
 * tombstone expiry on demand.
 *
 * It reads the same configuration as the daemons (only pg_conninfo matters
 * here) and talks to PostgreSQL with blocking libpq: it is a command-line
 * tool, never part of an event loop.  Every query is parameterised.
 *
 * Passwords never come from argv (visible in ps and shell history): they
 * are read from stdin when it is not a terminal (first line), or prompted
 * for twice with echo off.  Only the yescrypt hash is stored, and the clear
 * text is wiped once hashed.
 *
 * Exit status: 0 success, 1 failure (including "password does not match"
 * for `user verify`), 2 usage error.
 */
#include <crypt.h>
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "lib/config.h"
#include "lib/util.h"
#include "sql/migrate.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

#define PASSWORD_MAX 1024

static const char *progname = "imapctl";
static const char *conninfo;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: imapctl [-c CONFIG] COMMAND ...\n"
		"\n"
		"  migrate [--dir DIR]         apply pending schema migrations\n"
		"                              (DIR default: $MAIL_SQL_DIR, else ./sql)\n"
		"  tenant add DOMAIN           create a tenant (a mail domain)\n"
		"  tenant list                 list tenants with their account counts\n"
		"  tenant del DOMAIN [--force] delete a tenant; --force also deletes its\n"
		"                              accounts and all their mail\n"
		"  user add LOGIN              create user@domain with INBOX, Sent, Drafts,\n"
		"                              Trash, Junk and Archive\n"
		"  user passwd LOGIN           set a new password\n"
		"  user verify LOGIN           check a password (exit 0 if it matches)\n"
		"  user import LOGIN HASH|-    store an existing crypt(3) hash ($y$ $6$ $5$\n"
		"                              $2b$ $2y$), creating the account if needed;\n"
		"                              - reads the hash from stdin\n"
		"  user del LOGIN              delete an account and all its mail\n"
		"  user list [DOMAIN]          list accounts\n"
		"  user disable|enable LOGIN   refuse or allow logins\n"
		"  user quota LOGIN SIZE|none  set the storage quota (k, m, g, t suffixes)\n"
		"  expire-tombstones [--retention SECONDS] [--batch N]\n"
		"                              fold expunge tombstones older than SECONDS\n"
		"                              (default: tombstone_retention) into hole\n"
		"                              ranges, N per transaction (default:\n"
		"                              tombstone_expiry_batch), until none is left\n"
		"  config                      print the effective configuration\n"
		"\n"
		"Passwords are read from stdin when it is not a terminal (first line),\n"
		"otherwise prompted for with echo off.  They are never taken from the\n"
		"command line.  pg_conninfo comes from CONFIG or the PG_CONNINFO variable.\n"
		"Exit status: 0 success, 1 failure, 2 usage error.\n");
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", progname);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* ---- names ------------------------------------------------------------ */

/* A usage error: what was wrong, and where to look. */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", progname);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\nTry '%s --help'.\n", progname);
	va_end(ap);
	return EXIT_USAGE;
}

static void ascii_lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* A domain in A-label form (IDNs arrive as xn--...): dot-separated labels
 * of letters, digits and inner hyphens, 253 octets at most.  Lower-cases
 * in place. */
static bool valid_domain(char *d)
{
	ascii_lower(d);
	size_t n = strlen(d);
	if (n == 0 || n > 253)
		return false;
	const char *label = d;
	for (const char *p = d;; p++) {
		if (*p == '.' || *p == '\0') {
			size_t ll = (size_t)(p - label);
			if (ll == 0 || ll > 63 || label[0] == '-' || p[-1] == '-')
				return false;
			if (*p == '\0')
				return true;
			label = p + 1;
		} else if (!isalnum((unsigned char)*p) && *p != '-') {
			return false;
		}
	}
}

/* user@domain: a non-empty local part without controls, spaces or '@'
 * (quoted local parts are not supported), then a valid domain.
 * Lower-cases in place (ASCII; the database checks login = lower(login)). */
static bool valid_login(char *login)
{
	char *at = strchr(login, '@');
	if (at == NULL || at == login || strchr(at + 1, '@') != NULL)
		return false;
	for (const char *p = login; p < at; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= 0x20 || c == 0x7f || c == '"' || c == '\\')
			return false;
	}
	if ((size_t)(at - login) > 64)
		return false;
	ascii_lower(login);
	return valid_domain(at + 1);
}

/* ---- passwords ---------------------------------------------------------- */

static struct termios saved_tty;
static volatile sig_atomic_t tty_changed;

static void restore_tty_and_die(int sig)
{
	if (tty_changed)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Read one line from fd byte by byte: no stdio buffer keeps a copy of the
 * secret, and nothing after the first line is consumed.  Strips the line
 * end (LF or CRLF).  Returns the length, -1 on EOF before any byte or on an
 * I/O error, -2 if the line does not fit. */
static ssize_t read_line_fd(int fd, char *buf, size_t size)
{
	size_t n = 0;
	bool any = false, overflow = false;
	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		any = true;
		if (c == '\n')
			break;
		if (n + 1 < size)
			buf[n++] = c;
		else
			overflow = true;
	}
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	if (overflow) {
		secure_zero(buf, size);
		return -2;
	}
	return any ? (ssize_t)n : -1;
}

static ssize_t prompt_noecho(const char *prompt, char *buf, size_t size)
{
	struct termios t;
	if (tcgetattr(STDIN_FILENO, &saved_tty) != 0)
		return -1;
	t = saved_tty;
	t.c_lflag &= ~(tcflag_t)ECHO;
	t.c_lflag |= ECHONL;
	struct sigaction sa = { 0 }, old_int, old_term, old_hup;
	sa.sa_handler = restore_tty_and_die;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	sigaction(SIGHUP, &sa, &old_hup);
	fputs(prompt, stderr);
	fflush(stderr);
	tty_changed = 1;
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &t);
	ssize_t n = read_line_fd(STDIN_FILENO, buf, size);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
	tty_changed = 0;
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGHUP, &old_hup, NULL);
	return n;
}

/* Get a password into buf: the first line of stdin when it is not a
 * terminal, else a prompt (twice when confirm).  Refuses empty passwords.
 * Returns 0, or -1 after printing why.  The caller wipes buf. */
static int read_password(char *buf, size_t size, bool confirm)
{
	ssize_t n;
	if (!isatty(STDIN_FILENO)) {
		n = read_line_fd(STDIN_FILENO, buf, size);
		if (n == -1) {
			fail("no password on stdin (give it as the first line)");
			return -1;
		}
	} else {
		n = prompt_noecho("Password: ", buf, size);
		if (n > 0 && confirm) {
			char again[PASSWORD_MAX];
			ssize_t m = prompt_noecho("Password (again): ", again, sizeof(again));
			bool same = m == n && strcmp(buf, again) == 0;
			secure_zero(again, sizeof(again));
			if (!same) {
				secure_zero(buf, size);
				fail("the passwords do not match");
				return -1;
			}
		}
		if (n == -1) {
			fail("could not read a password from the terminal");
			return -1;
		}
	}
	if (n == -2) {
		fail("password longer than %d bytes", PASSWORD_MAX - 1);
		return -1;
	}
	if (n == 0) {
		fail("empty passwords are not allowed");
		return -1;
	}
	return 0;
}

/* yescrypt with a fresh random salt and libxcrypt's default cost.  Writes
 * the crypt(3) string to out.  Returns 0, or -1 after printing why. */
static int hash_password(const char *pw, char *out, size_t outlen)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)) == NULL) {
		fail("crypt_gensalt: %s", strerror(errno));
		return -1;
	}
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	const char *h = crypt_r(pw, salt, cd);
	int rc = -1;
	if (h == NULL || h[0] == '*')
		fail("crypt: yescrypt failed");
	else if (strlen(h) >= outlen)
		fail("crypt: hash too long");
	else {
		memcpy(out, h, strlen(h) + 1);
		rc = 0;
	}
	secure_zero(cd, sizeof(*cd));
	free(cd);
	return rc;
}

/* Does pw match the crypt(3) string stored?  The comparison does not stop
 * at the first differing byte. */
static bool password_matches(const char *pw, const char *stored)
{
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	const char *h = crypt_r(pw, stored, cd);
	bool ok = false;
	if (h != NULL && h[0] != '*') {
		size_t n = strlen(h);
		if (n == strlen(stored)) {
			unsigned char diff = 0;
			for (size_t i = 0; i < n; i++)
				diff |= (unsigned char)(h[i] ^ stored[i]);
			ok = diff == 0;
		}
	}
	secure_zero(cd, sizeof(*cd));
	free(cd);
	return ok;
}

/* An imported hash must be one crypt_r can verify: a known prefix, and a
 * string crypt_r accepts as a complete setting (it answers "*0"/"*1" for
 * malformed ones, and a well-formed hash reproduces its own length). */
static bool valid_imported_hash(const char *hash)
{
	static const char *const prefixes[] = { "$y$", "$6$", "$5$", "$2b$", "$2y$" };
	bool known = false;
	for (size_t i = 0; i < ARRAY_SIZE(prefixes); i++)
		if (strncmp(hash, prefixes[i], strlen(prefixes[i])) == 0)
			known = true;
	if (!known)
		return false;
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	const char *h = crypt_r("imapctl-import-check", hash, cd);
	bool ok = h != NULL && h[0] != '*' && strlen(h) == strlen(hash);
	free(cd);
	return ok;
}

/* ---- database ----------------------------------------------------------- */

static PGconn *db_connect(void)
{
	const char *keys[] = { "connect_timeout", "fallback_application_name", "dbname", NULL };
	const char *vals[] = { "10", "imapctl", conninfo, NULL };
	PGconn *conn = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(conn) != CONNECTION_OK) {
		const char *m = PQerrorMessage(conn);
		fail("cannot connect to PostgreSQL: %.*s", (int)strcspn(m, "\n"), m);
		PQfinish(conn);
		return NULL;
	}
	PQclear(PQexec(conn, "SET client_min_messages = warning"));
	return conn;
}

/* Run a parameterised statement.  Returns the result when its status is
 * the expected one, else prints the server's message and returns NULL. */
static PGresult *db_exec(PGconn *conn, const char *sql, int n, const char *const *params,
			 ExecStatusType want)
{
	PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) == want)
		return res;
	const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	if (m == NULL)
		m = PQerrorMessage(conn);
	fail("%.*s", (int)strcspn(m, "\n"), m);
	PQclear(res);
	return NULL;
}

static const char *sqlstate(const PGresult *res)
{
	const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	return s ? s : "";
}

static bool db_begin(PGconn *conn)
{
	PGresult *r = db_exec(conn, "BEGIN", 0, NULL, PGRES_COMMAND_OK);
	PQclear(r);
	return r != NULL;
}

static bool db_commit(PGconn *conn)
{
	PGresult *r = db_exec(conn, "COMMIT", 0, NULL, PGRES_COMMAND_OK);
	PQclear(r);
	return r != NULL;
}

/* Is there an account with this login?  1 yes, 0 no, -1 error. */
static int account_exists(PGconn *conn, const char *login)
{
	const char *p[1] = { login };
	PGresult *r = db_exec(conn, "SELECT 1 FROM account WHERE login = $1", 1, p, PGRES_TUPLES_OK);
	if (r == NULL)
		return -1;
	int found = PQntuples(r) > 0;
	PQclear(r);
	return found;
}

static int tenant_exists(PGconn *conn, const char *domain)
{
	const char *p[1] = { domain };
	PGresult *r = db_exec(conn, "SELECT 1 FROM tenant WHERE name = $1", 1, p, PGRES_TUPLES_OK);
	if (r == NULL)
		return -1;
	int found = PQntuples(r) > 0;
	PQclear(r);
	return found;
}

/* ---- commands ----------------------------------------------------------- */

static int cmd_migrate(int argc, char **argv)
{
	const char *dir = getenv("MAIL_SQL_DIR");
	if (dir == NULL || *dir == '\0')
		dir = "sql";
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
			dir = argv[++i];
		else if (strncmp(argv[i], "--dir=", 6) == 0)
			dir = argv[i] + 6;
		else
			return usage_error("migrate: unexpected argument '%s'", argv[i]);
	}
	char err[1024];
	int n = migrate_run(conninfo, dir, stdout, err, sizeof(err));
	if (n < 0) {
		fail("migrate: %s", err);
		if (strncmp(err, dir, strlen(dir)) == 0 && strstr(err, strerror(ENOENT)) != NULL)
			fprintf(stderr, "(run it from the repository root, or give --dir DIR or MAIL_SQL_DIR)\n");
		return EXIT_FAIL;
	}
	if (n == 0)
		printf("schema is up to date\n");
	else
		printf("%d migration%s applied\n", n, n == 1 ? "" : "s");
	return EXIT_OK;
}

static int cmd_tenant_add(PGconn *conn, char *domain)
{
	const char *p[1] = { domain };
	PGresult *r = PQexecParams(conn, "INSERT INTO tenant (name) VALUES ($1) RETURNING id",
				   1, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		if (strcmp(sqlstate(r), "23505") == 0)
			fail("tenant %s already exists", domain);
		else {
			const char *m = PQresultErrorMessage(r);
			fail("%.*s", (int)strcspn(m, "\n"), m);
		}
		PQclear(r);
		return EXIT_FAIL;
	}
	printf("tenant %s created (id %s)\n", domain, PQgetvalue(r, 0, 0));
	PQclear(r);
	return EXIT_OK;
}

static int cmd_tenant_list(PGconn *conn)
{
	PGresult *r = db_exec(conn,
		"SELECT t.name, t.id, count(a.id), to_char(t.created_at, 'YYYY-MM-DD HH24:MI:SS') "
		"FROM tenant t LEFT JOIN account a ON a.tenant_id = t.id "
		"GROUP BY t.id ORDER BY t.name", 0, NULL, PGRES_TUPLES_OK);
	if (r == NULL)
		return EXIT_FAIL;
	printf("%-40s %8s %8s  %s\n", "DOMAIN", "ID", "ACCOUNTS", "CREATED");
	for (int i = 0; i < PQntuples(r); i++)
		printf("%-40s %8s %8s  %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
		       PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
	PQclear(r);
	return EXIT_OK;
}

static int cmd_tenant_del(PGconn *conn, char *domain, bool force)
{
	if (!db_begin(conn))
		return EXIT_FAIL;
	/* FOR UPDATE conflicts with the key-share lock an account insert takes
	 * through its foreign key, so no account can slip into the tenant
	 * between the count and the delete. */
	const char *p[1] = { domain };
	PGresult *r = db_exec(conn,
		"SELECT t.id, (SELECT count(*) FROM account a WHERE a.tenant_id = t.id) "
		"FROM tenant t WHERE t.name = $1 FOR UPDATE", 1, p, PGRES_TUPLES_OK);
	if (r == NULL)
		return EXIT_FAIL;
	if (PQntuples(r) == 0) {
		fail("no tenant %s", domain);
		PQclear(r);
		return EXIT_FAIL;
	}
	char id[32], accounts[32];
	snprintf(id, sizeof(id), "%s", PQgetvalue(r, 0, 0));
	snprintf(accounts, sizeof(accounts), "%s", PQgetvalue(r, 0, 1));
	PQclear(r);
	if (strcmp(accounts, "0") != 0 && !force) {
		fail("tenant %s still has %s account(s); delete them first or use --force",
		     domain, accounts);
		return EXIT_FAIL;
	}
	const char *ip[1] = { id };
	/* Accounts first (their mailboxes, messages and tombstones cascade),
	 * then the tenant, whose blobs cascade once nothing references them. */
	r = db_exec(conn, "DELETE FROM account WHERE tenant_id = $1", 1, ip, PGRES_COMMAND_OK);
	if (r == NULL)
		return EXIT_FAIL;
	PQclear(r);
	r = db_exec(conn, "DELETE FROM tenant WHERE id = $1", 1, ip, PGRES_COMMAND_OK);
	if (r == NULL)
		return EXIT_FAIL;
	PQclear(r);
	if (!db_commit(conn))
		return EXIT_FAIL;
	if (strcmp(accounts, "0") != 0)
		printf("tenant %s deleted with %s account(s)\n", domain, accounts);
	else
		printf("tenant %s deleted\n", domain);
	return EXIT_OK;
}

static int cmd_user_add(PGconn *conn, const char *login)
{
	const char *domain = strchr(login, '@') + 1;
	int t = tenant_exists(conn, domain);
	if (t < 0)
		return EXIT_FAIL;
	if (t == 0) {
		fail("no tenant %s (create it with: imapctl tenant add %s)", domain, domain);
		return EXIT_FAIL;
	}
	int e = account_exists(conn, login);
	if (e < 0)
		return EXIT_FAIL;
	if (e > 0) {
		fail("user %s already exists", login);
		return EXIT_FAIL;
	}

	char pw[PASSWORD_MAX], hash[CRYPT_OUTPUT_SIZE];
	int rc = read_password(pw, sizeof(pw), true);
	if (rc == 0)
		rc = hash_password(pw, hash, sizeof(hash));
	secure_zero(pw, sizeof(pw));
	if (rc < 0)
		return EXIT_FAIL;

	const char *p[2] = { login, hash };
	PGresult *r = PQexecParams(conn, "SELECT account_create($1, $2)", 2, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		if (strcmp(sqlstate(r), "23505") == 0)
			fail("user %s already exists", login);
		else {
			const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
			if (m == NULL)
				m = PQerrorMessage(conn);
			fail("%.*s", (int)strcspn(m, "\n"), m);
		}
		PQclear(r);
		return EXIT_FAIL;
	}
	printf("user %s created (id %s)\n", login, PQgetvalue(r, 0, 0));
	PQclear(r);
	return EXIT_OK;
}

/* Check the login exists, printing why not; 0 if it does. */
static int need_account(PGconn *conn, const char *login)
{
	int e = account_exists(conn, login);
	if (e == 0)
		fail("no user %s", login);
	return e > 0 ? 0 : -1;
}

static int cmd_user_passwd(PGconn *conn, const char *login)
{
	if (need_account(conn, login) < 0)
		return EXIT_FAIL;
	char pw[PASSWORD_MAX], hash[CRYPT_OUTPUT_SIZE];
	int rc = read_password(pw, sizeof(pw), true);
	if (rc == 0)
		rc = hash_password(pw, hash, sizeof(hash));
	secure_zero(pw, sizeof(pw));
	if (rc < 0)
		return EXIT_FAIL;
	const char *p[2] = { login, hash };
	PGresult *r = db_exec(conn, "UPDATE account SET password_hash = $2 WHERE login = $1",
			      2, p, PGRES_COMMAND_OK);
	if (r == NULL)
		return EXIT_FAIL;
	bool updated = strcmp(PQcmdTuples(r), "0") != 0;
	PQclear(r);
	if (!updated) {
		fail("no user %s", login);
		return EXIT_FAIL;
	}
	printf("password of %s changed\n", login);
	return EXIT_OK;
}

static int cmd_user_verify(PGconn *conn, const char *login)
{
	const char *p[1] = { login };
	PGresult *r = db_exec(conn, "SELECT password_hash, state FROM account WHERE login = $1",
			      1, p, PGRES_TUPLES_OK);
	if (r == NULL)
		return EXIT_FAIL;
	if (PQntuples(r) == 0) {
		fail("no user %s", login);
		PQclear(r);
		return EXIT_FAIL;
	}
	char pw[PASSWORD_MAX];
	if (read_password(pw, sizeof(pw), false) < 0) {
		secure_zero(pw, sizeof(pw));
		PQclear(r);
		return EXIT_FAIL;
	}
	bool ok = password_matches(pw, PQgetvalue(r, 0, 0));
	secure_zero(pw, sizeof(pw));
	bool disabled = strcmp(PQgetvalue(r, 0, 1), "active") != 0;
	PQclear(r);
	if (!ok) {
		fail("password for %s does not match", login);
		return EXIT_FAIL;
	}
	printf("password for %s matches%s\n", login, disabled ? " (but the account is disabled)" : "");
	return EXIT_OK;
}

static int cmd_user_import(PGconn *conn, const char *login, const char *hash_arg)
{
	char hash[CRYPT_OUTPUT_SIZE];
	if (strcmp(hash_arg, "-") == 0) {
		ssize_t n = read_line_fd(STDIN_FILENO, hash, sizeof(hash));
		if (n <= 0) {
			fail("no hash on stdin");
			return EXIT_FAIL;
		}
	} else if (strlen(hash_arg) >= sizeof(hash)) {
		fail("hash too long");
		return EXIT_FAIL;
	} else {
		snprintf(hash, sizeof(hash), "%s", hash_arg);
	}
	/* The hash is not the password, but it is still never printed. */
	if (!valid_imported_hash(hash)) {
		fail("not a crypt(3) hash this server verifies "
		     "(expected $y$, $6$, $5$, $2b$ or $2y$; quote it in single quotes)");
		return EXIT_FAIL;
	}
	int e = account_exists(conn, login);
	if (e < 0)
		return EXIT_FAIL;
	const char *p[2] = { login, hash };
	PGresult *r;
	if (e > 0) {
		r = db_exec(conn, "UPDATE account SET password_hash = $2 WHERE login = $1",
			    2, p, PGRES_COMMAND_OK);
		if (r == NULL)
			return EXIT_FAIL;
		PQclear(r);
		printf("password hash of %s replaced\n", login);
		return EXIT_OK;
	}
	r = db_exec(conn, "SELECT account_create($1, $2)", 2, p, PGRES_TUPLES_OK);
	if (r == NULL)
		return EXIT_FAIL;
	printf("user %s created (id %s) with the imported hash\n", login, PQgetvalue(r, 0, 0));
	PQclear(r);
	return EXIT_OK;
}

static int cmd_user_del(PGconn *conn, const char *login)
{
	const char *p[1] = { login };
	/* Mailboxes, messages, tombstones and subscriptions cascade; blobs no
	 * longer referenced are left to storaged's sweep. */
	PGresult *r = db_exec(conn, "DELETE FROM account WHERE login = $1", 1, p, PGRES_COMMAND_OK);
	if (r == NULL)
		return EXIT_FAIL;
	bool deleted = strcmp(PQcmdTuples(r), "0") != 0;
	PQclear(r);
	if (!deleted) {
		fail("no user %s", login);
		return EXIT_FAIL;
	}
	printf("user %s deleted\n", login);
	return EXIT_OK;
}

static int cmd_user_list(PGconn *conn, char *domain)
{
	PGresult *r;
	const char *sql =
		"SELECT a.login, a.state, coalesce(a.quota_bytes::text, '-'), "
		"       to_char(a.created_at, 'YYYY-MM-DD HH24:MI:SS') "
		"FROM account a JOIN tenant t ON t.id = a.tenant_id "
		"WHERE $1::text IS NULL OR t.name = $1 ORDER BY t.name, a.login";
	if (domain != NULL) {
		if (!valid_domain(domain))
			return usage_error("invalid domain '%s'", domain);
		int t = tenant_exists(conn, domain);
		if (t < 0)
			return EXIT_FAIL;
		if (t == 0) {
			fail("no tenant %s", domain);
			return EXIT_FAIL;
		}
	}
	const char *p[1] = { domain };
	r = db_exec(conn, sql, 1, p, PGRES_TUPLES_OK);
	if (r == NULL)
		return EXIT_FAIL;
	printf("%-48s %-9s %14s  %s\n", "LOGIN", "STATE", "QUOTA", "CREATED");
	for (int i = 0; i < PQntuples(r); i++)
		printf("%-48s %-9s %14s  %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
		       PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
	PQclear(r);
	return EXIT_OK;
}

static int cmd_user_state(PGconn *conn, const char *login, const char *state)
{
	const char *p[2] = { login, state };
	PGresult *r = db_exec(conn, "UPDATE account SET state = $2 WHERE login = $1",
			      2, p, PGRES_COMMAND_OK);
	if (r == NULL)
		return EXIT_FAIL;
	bool updated = strcmp(PQcmdTuples(r), "0") != 0;
	PQclear(r);
	if (!updated) {
		fail("no user %s", login);
		return EXIT_FAIL;
	}
	printf("user %s is %s\n", login, state);
	return EXIT_OK;
}

/* "none", or a byte count with an optional k/m/g/t (binary) suffix. */
static int parse_size(const char *s, char *out, size_t outlen)
{
	if (strcmp(s, "none") == 0) {
		out[0] = '\0';
		return 0;
	}
	size_t n = strlen(s);
	uint64_t mult = 1;
	if (n > 1) {
		switch (tolower((unsigned char)s[n - 1])) {
		case 'k': mult = 1ULL << 10; n--; break;
		case 'm': mult = 1ULL << 20; n--; break;
		case 'g': mult = 1ULL << 30; n--; break;
		case 't': mult = 1ULL << 40; n--; break;
		default: break;
		}
	}
	uint64_t v;
	if (parse_u64(s, n, (uint64_t)INT64_MAX / mult, &v) < 0)
		return -1;
	snprintf(out, outlen, "%llu", (unsigned long long)(v * mult));
	return 0;
}

static int cmd_user_quota(PGconn *conn, const char *login, const char *size)
{
	char bytes[32];
	if (parse_size(size, bytes, sizeof(bytes)) < 0)
		return usage_error("invalid size '%s' (bytes with an optional k, m, g or t suffix, or none)", size);
	const char *p[2] = { login, bytes[0] ? bytes : NULL };
	PGresult *r = db_exec(conn, "UPDATE account SET quota_bytes = $2::bigint WHERE login = $1",
			      2, p, PGRES_COMMAND_OK);
	if (r == NULL)
		return EXIT_FAIL;
	bool updated = strcmp(PQcmdTuples(r), "0") != 0;
	PQclear(r);
	if (!updated) {
		fail("no user %s", login);
		return EXIT_FAIL;
	}
	if (bytes[0])
		printf("quota of %s set to %s bytes\n", login, bytes);
	else
		printf("quota of %s removed\n", login);
	return EXIT_OK;
}

/* The same work as storaged's periodic job (storaged/housekeeping.c), for
 * operators and tests: call expire_tombstones() until it returns 0.  Each
 * call is its own transaction (autocommit), so an interrupted run keeps
 * what it folded and the mailbox locks are held for one batch at a time. */
static int cmd_expire_tombstones(PGconn *conn, uint64_t retention, uint64_t batch)
{
	char rs[32], bs[32];
	snprintf(rs, sizeof(rs), "%llu seconds", (unsigned long long)retention);
	snprintf(bs, sizeof(bs), "%llu", (unsigned long long)batch);
	const char *p[2] = { rs, bs };
	uint64_t total = 0, calls = 0;
	uint64_t t0 = now_ms();
	for (;;) {
		PGresult *r = db_exec(conn, "SELECT expire_tombstones($1::interval, $2::integer)",
				      2, p, PGRES_TUPLES_OK);
		if (r == NULL) {
			if (total > 0)
				fprintf(stderr, "%s: %llu tombstones were folded before the error\n",
					progname, (unsigned long long)total);
			return EXIT_FAIL;
		}
		uint64_t n = 0;
		const char *v = PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "";
		bool ok = parse_u64(v, strlen(v), UINT64_MAX, &n) == 0;
		PQclear(r);
		if (!ok) {
			fail("expire_tombstones: unexpected answer");
			return EXIT_FAIL;
		}
		calls++;
		if (n == 0)
			break;
		total += n;
	}
	printf("%llu tombstone%s folded into hole ranges (%llu call%s, %llu ms)\n",
	       (unsigned long long)total, total == 1 ? "" : "s", (unsigned long long)calls,
	       calls == 1 ? "" : "s", (unsigned long long)(now_ms() - t0));
	return EXIT_OK;
}

static int run_expire_tombstones(int argc, char **argv, const struct config *cfg)
{
	uint64_t retention = (uint64_t)cfg->tombstone_retention;
	uint64_t batch = (uint64_t)cfg->tombstone_expiry_batch;
	for (int i = 0; i < argc; i++) {
		const char *opt = argv[i], *val = NULL;
		if ((strcmp(opt, "--retention") == 0 || strcmp(opt, "--batch") == 0) && i + 1 < argc)
			val = argv[++i];
		else if (strncmp(opt, "--retention=", 12) == 0)
			opt = "--retention", val = argv[i] + 12;
		else if (strncmp(opt, "--batch=", 8) == 0)
			opt = "--batch", val = argv[i] + 8;
		else
			return usage_error("expire-tombstones: unexpected argument '%s'", argv[i]);
		/* The same bounds as the configuration keys. */
		if (strcmp(opt, "--retention") == 0) {
			if (parse_u64(val, strlen(val), 315360000, &retention) < 0)
				return usage_error("--retention: expected seconds (0..315360000), not '%s'", val);
		} else if (parse_u64(val, strlen(val), 10000000, &batch) < 0 || batch == 0) {
			return usage_error("--batch: expected 1..10000000, not '%s'", val);
		}
	}
	PGconn *conn = db_connect();
	if (conn == NULL)
		return EXIT_FAIL;
	int rc = cmd_expire_tombstones(conn, retention, batch);
	PQfinish(conn);
	return rc;
}

static int run_tenant(int argc, char **argv)
{
	if (argc < 1)
		return usage_error("tenant: missing subcommand (add, list, del)");
	const char *sub = argv[0];
	bool force = false;
	char *domain = NULL;
	int nargs = 0;
	if (strcmp(sub, "add") != 0 && strcmp(sub, "list") != 0 && strcmp(sub, "del") != 0)
		return usage_error("tenant: unknown subcommand '%s'", sub);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--force") == 0 && strcmp(sub, "del") == 0)
			force = true;
		else if (argv[i][0] == '-')
			return usage_error("tenant %s: unknown option '%s'", sub, argv[i]);
		else if (nargs++ == 0)
			domain = argv[i];
	}
	if (strcmp(sub, "list") == 0 && nargs != 0)
		return usage_error("tenant list takes no argument");
	if (strcmp(sub, "list") != 0) {
		if (nargs != 1)
			return usage_error("tenant %s takes one DOMAIN", sub);
		if (!valid_domain(domain))
			return usage_error("invalid domain '%s'", domain);
	}

	PGconn *conn = db_connect();
	if (conn == NULL)
		return EXIT_FAIL;
	int rc;
	if (strcmp(sub, "add") == 0)
		rc = cmd_tenant_add(conn, domain);
	else if (strcmp(sub, "del") == 0)
		rc = cmd_tenant_del(conn, domain, force);
	else
		rc = cmd_tenant_list(conn);
	PQfinish(conn);
	return rc;
}

static int run_user(int argc, char **argv)
{
	static const struct {
		const char *name;
		int min, max;		/* positional arguments after the subcommand */
		const char *args;	/* for the message when they do not fit */
	} subs[] = {
		{ "add", 1, 1, "LOGIN" }, { "passwd", 1, 1, "LOGIN" }, { "verify", 1, 1, "LOGIN" },
		{ "import", 2, 2, "LOGIN HASH|-" }, { "del", 1, 1, "LOGIN" },
		{ "list", 0, 1, "[DOMAIN]" }, { "disable", 1, 1, "LOGIN" },
		{ "enable", 1, 1, "LOGIN" }, { "quota", 2, 2, "LOGIN SIZE|none" },
	};
	if (argc < 1)
		return usage_error("user: missing subcommand");
	const char *sub = argv[0];
	int nargs = argc - 1;
	size_t k = 0;
	while (k < ARRAY_SIZE(subs) && strcmp(sub, subs[k].name) != 0)
		k++;
	if (k == ARRAY_SIZE(subs))
		return usage_error("user: unknown subcommand '%s'", sub);
	if (nargs < subs[k].min || nargs > subs[k].max)
		return usage_error("usage: imapctl user %s %s", sub, subs[k].args);

	char *login = NULL;
	if (strcmp(sub, "list") != 0) {
		login = argv[1];
		if (!valid_login(login))
			return usage_error("invalid login '%s': expected user@domain", login);
	}

	PGconn *conn = db_connect();
	if (conn == NULL)
		return EXIT_FAIL;
	int rc;
	if (strcmp(sub, "add") == 0)
		rc = cmd_user_add(conn, login);
	else if (strcmp(sub, "passwd") == 0)
		rc = cmd_user_passwd(conn, login);
	else if (strcmp(sub, "verify") == 0)
		rc = cmd_user_verify(conn, login);
	else if (strcmp(sub, "import") == 0)
		rc = cmd_user_import(conn, login, argv[2]);
	else if (strcmp(sub, "del") == 0)
		rc = cmd_user_del(conn, login);
	else if (strcmp(sub, "list") == 0)
		rc = cmd_user_list(conn, nargs ? argv[1] : NULL);
	else if (strcmp(sub, "disable") == 0)
		rc = cmd_user_state(conn, login, "disabled");
	else if (strcmp(sub, "enable") == 0)
		rc = cmd_user_state(conn, login, "active");
	else
		rc = cmd_user_quota(conn, login, argv[2]);
	PQfinish(conn);
	return rc;
}

int main(int argc, char **argv)
{
	const char *config_path = NULL;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
			config_path = argv[++i];
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return EXIT_OK;
		} else {
			return usage_error("unknown option '%s'", argv[i]);
		}
	}
	if (i >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[i++];
	if (strcmp(cmd, "help") == 0) {
		usage(stdout);
		return EXIT_OK;
	}
	if (strcmp(cmd, "migrate") != 0 && strcmp(cmd, "tenant") != 0 &&
	    strcmp(cmd, "user") != 0 && strcmp(cmd, "config") != 0 &&
	    strcmp(cmd, "expire-tombstones") != 0)
		return usage_error("unknown command '%s'", cmd);
	if (strcmp(cmd, "config") == 0 && i != argc)
		return usage_error("config takes no argument");

	struct config cfg;
	char err[1024];
	if (config_load(&cfg, config_path, err, sizeof(err)) < 0) {
		fail("%s", err);
		return EXIT_FAIL;
	}
	conninfo = cfg.pg_conninfo;

	int rc;
	if (strcmp(cmd, "migrate") == 0)
		rc = cmd_migrate(argc - i, argv + i);
	else if (strcmp(cmd, "tenant") == 0)
		rc = run_tenant(argc - i, argv + i);
	else if (strcmp(cmd, "user") == 0)
		rc = run_user(argc - i, argv + i);
	else if (strcmp(cmd, "expire-tombstones") == 0)
		rc = run_expire_tombstones(argc - i, argv + i, &cfg);
	else {
		config_dump(&cfg, stdout);
		rc = EXIT_OK;
	}
	config_free(&cfg);
	return rc;
}
