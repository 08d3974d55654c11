/* SPDX-License-Identifier: MIT */
/* The console escape sequence. */
#include "../../src/console.h"

#include "test.h"

TEST(escape_sequence)
{
	struct console c = {0};
	uint8_t out[64];
	bool quit;
	size_t n = console_filter_input(&c, (const uint8_t *)"ab\x01\x01" "c", 5, out, &quit);
	CHECK(!quit);
	CHECK_EQ(n, 4);
	CHECK(memcmp(out, "ab\x01" "c", 4) == 0);
	/* escape split across reads, then x */
	n = console_filter_input(&c, (const uint8_t *)"z\x01", 2, out, &quit);
	CHECK_EQ(n, 1);
	CHECK(!quit);
	n = console_filter_input(&c, (const uint8_t *)"xyz", 3, out, &quit);
	CHECK(quit);
	CHECK_EQ(n, 0);
	/* escape + other byte passes both */
	c.escape_pending = false;
	n = console_filter_input(&c, (const uint8_t *)"\x01q", 2, out, &quit);
	CHECK_EQ(n, 2);
	CHECK_EQ(out[0], 1);
	CHECK_EQ(out[1], 'q');
}

TEST_MAIN()
