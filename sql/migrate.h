/* migrate.h - apply the numbered SQL migrations in sql/.
 *
 * Migrations are files named NNNN_description.sql (four digits, then an
 * underscore); they are applied in numeric order, each in its own
 * transaction together with its row in schema_version, so a failed file
 * leaves no trace and running the runner again is harmless.  A migration
 * therefore must not contain BEGIN/COMMIT or statements that refuse to run
 * in a transaction block (CREATE INDEX CONCURRENTLY, VACUUM).
 *
 * Blocking libpq: this is for command-line tools (imapctl), never for code
 * running inside an event loop.
 */
#ifndef SQL_MIGRATE_H
#define SQL_MIGRATE_H

#include <stddef.h>
#include <stdio.h>

/* The pg_advisory_lock key the runner holds while it works, so that two
 * runners started together (several pods, a test harness) apply each file
 * once: the second waits, then finds everything recorded. ("mailmigr") */
#define MIGRATE_LOCK_KEY 0x6d61696c6d696772LL

/* Connect with conninfo (a libpq connection string; a connect_timeout of
 * 10 s applies unless it names one), take the advisory lock, create
 * schema_version if missing, and apply every migration in dir not yet
 * recorded there.  One line per applied migration goes to progress (may be
 * NULL).
 *
 * Refuses (before touching the database) a directory holding two files with
 * the same number, and *.sql files whose names do not follow the pattern,
 * so a misnamed migration is never silently skipped.
 *
 * Returns the number of migrations applied (0 when the schema was already
 * current), or -1 with a message in err. */
int migrate_run(const char *conninfo, const char *dir, FILE *progress, char *err, size_t errlen);

#endif
