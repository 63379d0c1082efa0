/* runner.c - runs every registered unit test; see unit.h. */
#include "tests/unit/unit.h"

#include <stdlib.h>

struct unit_test {
	const char *name;
	unit_fn fn;
};

static struct unit_test *tests;
static size_t ntests, captests;
static int cur_failed;
int unit_checks;

void unit_register(const char *name, unit_fn fn)
{
	if (ntests == captests) {
		captests = captests ? captests * 2 : 64;
		tests = realloc(tests, captests * sizeof(*tests));
		if (tests == NULL)
			abort();
	}
	tests[ntests++] = (struct unit_test){ name, fn };
}

void unit_fail(const char *file, int line, const char *expr)
{
	fprintf(stderr, "    %s:%d: check failed: %s\n", file, line, expr);
	cur_failed = 1;
}

int main(int argc, char **argv)
{
	int passed = 0, failed = 0;
	for (size_t i = 0; i < ntests; i++) {
		if (argc > 1 && strstr(tests[i].name, argv[1]) == NULL)
			continue;
		cur_failed = 0;
		tests[i].fn();
		if (cur_failed) {
			printf("FAIL %s\n", tests[i].name);
			failed++;
		} else {
			printf("ok   %s\n", tests[i].name);
			passed++;
		}
	}
	free(tests);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
