/* notify-tail - print change notifications as they pass, for operators.
 *
 *   notify-tail [-c FILE] [--tenant ID] [--mailbox ID] [--count N]
 *
 * Subscribes to `<prefix>.<tenant>.>` (or `<prefix>.>` for every tenant,
 * or one mailbox's subject) on the NATS server of the configuration and
 * prints one line per notification:
 *
 *   2026-11-28T17:40:01.123Z mail.3.42 1207 flags
 *
 * that is the time it arrived, the subject (prefix, tenant id, mailbox
 * id) and the payload (the mailbox's new HIGHESTMODSEQ and the kind of
 * change; empty when the mailbox was deleted).  It only listens: it never
 * publishes and needs no database.  With --count it exits after N
 * notifications (scripts, tests).  SIGINT/SIGTERM end it.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <ev.h>

#include "lib/config.h"
#include "lib/util.h"
#include "notify/notify.h"

struct tail {
	struct ev_loop *loop;
	struct notify *n;
	long long left;		/* notifications still to print; < 0: no limit */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: notify-tail [-c FILE] [--tenant ID] [--mailbox ID] [--count N]\n"
		"\n"
		"  -c FILE        configuration file (nats_url, nats_subject_prefix; environment overrides)\n"
		"  --tenant ID    only this tenant's mailboxes (default: every tenant)\n"
		"  --mailbox ID   only this mailbox (needs --tenant)\n"
		"  --count N      exit after N notifications\n");
}

static void on_msg(void *arg, const char *subject, const char *data, size_t len)
{
	struct tail *t = arg;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	struct tm tm;
	gmtime_r(&tv.tv_sec, &tm);
	char when[32];
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	/* The payload is ours ("<modseq> <kind>"), but print it safely. */
	char safe[128];
	size_t k = 0;
	for (size_t i = 0; i < len && k + 1 < sizeof(safe); i++)
		safe[k++] = data[i] >= 0x20 && data[i] < 0x7f ? data[i] : '?';
	safe[k] = '\0';
	printf("%s.%03ldZ %s %s\n", when, (long)(tv.tv_usec / 1000), subject, safe);
	fflush(stdout);
	if (t->left > 0 && --t->left == 0)
		ev_break(t->loop, EVBREAK_ALL);
}

static void on_state(void *arg, bool connected)
{
	fprintf(stderr, "notify-tail: NATS %s\n", connected ? "connected, listening" : "disconnected, retrying");
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

int main(int argc, char **argv)
{
	const char *config_path = NULL;
	long long tenant = -1, mailbox = -1, count = -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool more = i + 1 < argc;
		if (strcmp(a, "-c") == 0 && more) {
			config_path = argv[++i];
		} else if (strcmp(a, "--tenant") == 0 && more) {
			tenant = atoll(argv[++i]);
		} else if (strcmp(a, "--mailbox") == 0 && more) {
			mailbox = atoll(argv[++i]);
		} else if (strcmp(a, "--count") == 0 && more) {
			count = atoll(argv[++i]);
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if ((mailbox >= 0 && tenant < 0) || (tenant == 0 || mailbox == 0) || count == 0) {
		usage(stderr);
		return 2;
	}
	struct config cfg;
	char err[512];
	if (config_load(&cfg, config_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "notify-tail: %s\n", err);
		config_free(&cfg);
		return 1;
	}
	char subject[256];
	int rc;
	if (mailbox > 0)
		rc = notify_subject_mailbox(subject, sizeof(subject), cfg.nats_subject_prefix, tenant, mailbox);
	else if (tenant > 0)
		rc = notify_subject_tenant(subject, sizeof(subject), cfg.nats_subject_prefix, tenant);
	else
		rc = snprintf(subject, sizeof(subject), "%s.>", cfg.nats_subject_prefix);
	if (rc < 0 || (size_t)rc >= sizeof(subject)) {
		fprintf(stderr, "notify-tail: nats_subject_prefix is not a valid subject\n");
		config_free(&cfg);
		return 1;
	}
	struct tail t = { .loop = ev_default_loop(EVFLAG_AUTO), .left = count };
	ev_signal sigint, sigterm;
	ev_signal_init(&sigint, on_signal, SIGINT);
	ev_signal_init(&sigterm, on_signal, SIGTERM);
	ev_signal_start(t.loop, &sigint);
	ev_signal_start(t.loop, &sigterm);
	t.n = notify_new(t.loop, &cfg, "notify-tail", on_state, &t);
	struct notify_sub *sub = notify_subscribe(t.n, subject, on_msg, &t);
	fprintf(stderr, "notify-tail: subscribing to %s\n", subject);
	ev_run(t.loop, 0);
	notify_unsubscribe(t.n, &sub);
	notify_free(&t.n);
	notify_global_shutdown();
	ev_signal_stop(t.loop, &sigint);
	ev_signal_stop(t.loop, &sigterm);
	config_free(&cfg);
	return 0;
}
