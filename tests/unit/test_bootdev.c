/* SPDX-License-Identifier: MIT */
#include "../../src/devices/bootdev.h"

#include "../../src/arch/x86/layout.h"
#include "dev_fake.h"
#include "test.h"

static int booted;
static void *seen_ctx;
static void fake_booted(void *ctx)
{
	seen_ctx = ctx;
	booted++;
}

TEST(magic_fires_once)
{
	struct bootdev b;
	int ctx;
	booted = 0;
	CHECK_EQ(bootdev_init(&b, fake_booted, &ctx), 0);
	for (int v = 0; v < 256; v++) {
		uint8_t x = (uint8_t)v;
		if (x != BOOTDEV_MAGIC)
			b.bus.ops->write(&b.bus, 0, &x, 1);
	}
	CHECK_EQ(booted, 0);
	uint8_t m = BOOTDEV_MAGIC;
	b.bus.ops->write(&b.bus, 0, &m, 1);
	CHECK_EQ(booted, 1);
	CHECK(seen_ctx == &ctx);
	for (int i = 0; i < 1000; i++)
		b.bus.ops->write(&b.bus, 0, &m, 1);
	CHECK_EQ(booted, 1);
}

TEST(reads_zero)
{
	struct bootdev b;
	CHECK_EQ(bootdev_init(&b, NULL, NULL), 0);
	uint8_t m = BOOTDEV_MAGIC;
	b.bus.ops->write(&b.bus, 0, &m, 1); /* NULL callback is fine */
	for (uint32_t w = 1; w <= 8; w *= 2) {
		uint8_t a[8];
		CHECK(read_is_defined(&b.bus, 0, w, a));
		CHECK_EQ(a[0], 0);
		for (uint32_t i = 1; i < w; i++)
			CHECK_EQ(a[i], 0xff);
	}
}

TEST(wide_write_uses_byte0)
{
	struct bootdev b;
	booted = 0;
	CHECK_EQ(bootdev_init(&b, fake_booted, NULL), 0);
	uint32_t v = 0x7b00; /* magic in byte 1 only */
	b.bus.ops->write(&b.bus, 0, &v, 4);
	CHECK_EQ(booted, 0);
	v = BOOTDEV_MAGIC;
	b.bus.ops->write(&b.bus, 0, &v, 4);
	CHECK_EQ(booted, 1);
}

TEST_MAIN()
