/* SPDX-License-Identifier: MIT */
/*
 * test.h - a minimal unit-test harness.
 *
 *   TEST(name) { CHECK(x == 1); CHECK_EQ(a, b); }
 *   TEST_MAIN()
 *
 * Each test file is one binary.  It runs every TEST in file order, prints
 * "PASS name" / "FAIL name: file:line: expr" lines and ends with the plain
 * summary line "N passed, N failed"; the exit status is non-zero if any test
 * failed.  tests/run-unit aggregates the binaries.
 */
#ifndef VISOR_TEST_H
#define VISOR_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct test_case {
	const char *name;
	void (*fn)(void);
};

#define TEST_MAX 512
extern struct test_case test_cases_[TEST_MAX];
extern int test_count_;
extern int test_failed_now_;

#define TEST(name)                                                                          \
	static void test_##name(void);                                                      \
	__attribute__((constructor)) static void test_register_##name(void)                 \
	{                                                                                   \
		if (test_count_ < TEST_MAX)                                                 \
			test_cases_[test_count_++] = (struct test_case){#name, test_##name}; \
	}                                                                                   \
	static void test_##name(void)

#define CHECK(expr)                                                                           \
	do {                                                                                  \
		if (!(expr)) {                                                                \
			printf("  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #expr);     \
			test_failed_now_ = 1;                                                 \
		}                                                                             \
	} while (0)

#define CHECK_EQ(a, b)                                                                          \
	do {                                                                                    \
		unsigned long long a_ = (unsigned long long)(a), b_ = (unsigned long long)(b);  \
		if (a_ != b_) {                                                                 \
			printf("  %s:%d: CHECK_EQ(%s, %s) failed: 0x%llx != 0x%llx\n", __FILE__, \
			       __LINE__, #a, #b, a_, b_);                                       \
			test_failed_now_ = 1;                                                   \
		}                                                                               \
	} while (0)

#define CHECK_STR(a, b)                                                                        \
	do {                                                                                   \
		const char *a_ = (a), *b_ = (b);                                               \
		if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                       \
			printf("  %s:%d: CHECK_STR(%s, %s) failed: \"%s\" != \"%s\"\n", __FILE__, \
			       __LINE__, #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");      \
			test_failed_now_ = 1;                                                  \
		}                                                                              \
	} while (0)

/* DIR/NAME in @buf (@len bytes), DIR being @dir: made on first use from the
 * template in it (e.g. "/tmp/visor-test-log-XXXXXX") by mkdtemp. */
static inline const char *test_tmp_path(char *dir, char *buf, size_t len, const char *name)
{
	if (strstr(dir, "XXXXXX") && !mkdtemp(dir))
		abort();
	snprintf(buf, len, "%s/%s", dir, name);
	return buf;
}

#define TEST_MAIN()                                                                    \
	struct test_case test_cases_[TEST_MAX];                                        \
	int test_count_;                                                               \
	int test_failed_now_;                                                          \
	int main(int argc, char **argv)                                                \
	{                                                                              \
		int passed = 0, failed = 0;                                            \
		for (int i = 0; i < test_count_; i++) {                                \
			if (argc > 1 && !strstr(test_cases_[i].name, argv[1]))          \
				continue;                                              \
			test_failed_now_ = 0;                                          \
			test_cases_[i].fn();                                           \
			printf("%s %s\n", test_failed_now_ ? "FAIL" : "PASS",          \
			       test_cases_[i].name);                                   \
			if (test_failed_now_)                                          \
				failed++;                                              \
			else                                                           \
				passed++;                                              \
		}                                                                      \
		printf("%d passed, %d failed\n", passed, failed);                      \
		return failed ? 1 : 0;                                                 \
	}

#endif
