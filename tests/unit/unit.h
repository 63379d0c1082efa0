/* unit.h - the project's small C unit-test harness.
 *
 *   TEST(parser_atom) { ... CHECK(x == 1); CHECK_EQ_STR(a, "b"); }
 *
 * Tests register themselves at start-up; tests/unit/runner.c runs them all
 * (or those whose name contains argv[1]) and ends with "N passed, N failed".
 * A CHECK failure marks the test failed, prints file:line, and continues.
 */
#ifndef TESTS_UNIT_H
#define TESTS_UNIT_H

#include <stdio.h>
#include <string.h>

typedef void (*unit_fn)(void);
void unit_register(const char *name, unit_fn fn);
void unit_fail(const char *file, int line, const char *expr);
extern int unit_checks;

#define TEST(name)                                                      \
	static void test_##name(void);                                  \
	__attribute__((constructor)) static void register_##name(void)  \
	{ unit_register(#name, test_##name); }                          \
	static void test_##name(void)

#define CHECK(expr) do { unit_checks++; if (!(expr)) unit_fail(__FILE__, __LINE__, #expr); } while (0)
#define CHECK_EQ_INT(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); unit_checks++; \
	if (a_ != b_) { char m_[256]; snprintf(m_, sizeof(m_), "%s == %s (%lld != %lld)", #a, #b, a_, b_); \
	unit_fail(__FILE__, __LINE__, m_); } } while (0)
#define CHECK_EQ_MEM(p, n, s) do { unit_checks++; size_t n_ = (n); const char *s_ = (s); \
	if (n_ != strlen(s_) || memcmp((p), s_, n_) != 0) { char m_[512]; \
	snprintf(m_, sizeof(m_), "%s == \"%s\" (got \"%.*s\")", #p, s_, (int)(n_ > 200 ? 200 : n_), (const char *)(p)); \
	unit_fail(__FILE__, __LINE__, m_); } } while (0)

#endif
