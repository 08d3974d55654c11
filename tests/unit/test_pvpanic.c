/* SPDX-License-Identifier: MIT */
#include "../../src/devices/pvpanic.h"

#include "dev_fake.h"
#include "test.h"

static int panics;
static void *seen_ctx;
static void fake_panicked(void *ctx)
{
	seen_ctx = ctx;
	panics++;
}

TEST(read_reports_events)
{
	struct pvpanic p;
	CHECK_EQ(pvpanic_init(&p, fake_panicked, NULL), 0);
	for (uint32_t w = 1; w <= 8; w *= 2) {
		uint8_t a[8];
		CHECK(read_is_defined(&p.bus, 0, w, a));
		CHECK_EQ(a[0], PVPANIC_PANICKED | PVPANIC_CRASH_LOADED);
		for (uint32_t i = 1; i < w; i++)
			CHECK_EQ(a[i], 0xff);
	}
	pvpanic_destroy(&p);
}

TEST(panicked_callback)
{
	struct pvpanic p;
	int ctx;
	panics = 0;
	CHECK_EQ(pvpanic_init(&p, fake_panicked, &ctx), 0);
	uint8_t v = 0;
	p.bus.ops->write(&p.bus, 0, &v, 1);
	CHECK_EQ(panics, 0);
	v = PVPANIC_CRASH_LOADED; /* logged only */
	for (int i = 0; i < 100; i++)
		p.bus.ops->write(&p.bus, 0, &v, 1);
	CHECK_EQ(panics, 0);
	CHECK_EQ(p.crash_loaded, 100);
	v = PVPANIC_PANICKED;
	p.bus.ops->write(&p.bus, 0, &v, 1);
	CHECK_EQ(panics, 1);
	CHECK(seen_ctx == &ctx);
	for (int i = 0; i < 1000; i++)
		p.bus.ops->write(&p.bus, 0, &v, 1);
	CHECK_EQ(panics, 1); /* once per init */
	CHECK_EQ(p.panics, 1001);
	pvpanic_destroy(&p);
	/* wide write: byte 0 counts */
	panics = 0;
	CHECK_EQ(pvpanic_init(&p, fake_panicked, NULL), 0);
	uint32_t w = 0xff00;
	p.bus.ops->write(&p.bus, 0, &w, 4);
	CHECK_EQ(panics, 0);
	w = 0xff;
	p.bus.ops->write(&p.bus, 0, &w, 4);
	CHECK_EQ(panics, 1);
	pvpanic_destroy(&p);
}

TEST(null_callback)
{
	struct pvpanic p;
	CHECK_EQ(pvpanic_init(&p, NULL, NULL), 0);
	uint8_t v = 0xff;
	p.bus.ops->write(&p.bus, 0, &v, 1);
	CHECK_EQ(p.panics, 1);
	pvpanic_destroy(&p);
}

TEST_MAIN()
