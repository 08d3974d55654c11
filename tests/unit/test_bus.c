/* SPDX-License-Identifier: MIT */
#include "../../src/devices/bus.h"

#include <errno.h>

#include "test.h"

struct fake {
	struct bus_dev dev;
	uint8_t regs[16];
	uint64_t last_off;
};

static void fake_read(struct bus_dev *dev, uint64_t off, void *data, uint32_t len)
{
	struct fake *f = container_of(dev, struct fake, dev);
	f->last_off = off;
	memcpy(data, &f->regs[off], len);
}

static void fake_write(struct bus_dev *dev, uint64_t off, const void *data, uint32_t len)
{
	struct fake *f = container_of(dev, struct fake, dev);
	f->last_off = off;
	memcpy(&f->regs[off], data, len);
}

static const struct bus_dev_ops fake_ops = {.read = fake_read, .write = fake_write};

TEST(register_rejects_overlap_and_empty)
{
	struct bus b;
	struct fake a = {.dev = {.ops = &fake_ops, .name = "a"}};
	struct fake c = {.dev = {.ops = &fake_ops, .name = "c"}};
	struct fake d = {.dev = {.ops = &fake_ops, .name = "d"}};
	bus_init(&b, "pio");
	CHECK_EQ(bus_register(&b, &a.dev, 0x100, 8), 0);
	CHECK_EQ(bus_register(&b, &c.dev, 0x104, 8), (unsigned long long)-EEXIST);
	CHECK_EQ(bus_register(&b, &c.dev, 0xf8, 9), (unsigned long long)-EEXIST);
	CHECK_EQ(bus_register(&b, &c.dev, 0xf8, 8), 0);
	CHECK_EQ(bus_register(&b, &d.dev, 0x200, 0), (unsigned long long)-EINVAL);
	CHECK_EQ(bus_register(&b, &d.dev, UINT64_MAX - 2, 8), (unsigned long long)-EINVAL);
	CHECK_EQ(bus_register(&b, &d.dev, 0x108, 8), 0);
}

TEST(dispatch_offset_and_unhandled)
{
	struct bus b;
	struct fake a = {.dev = {.ops = &fake_ops, .name = "a"}};
	bus_init(&b, "mmio");
	CHECK_EQ(bus_register(&b, &a.dev, 0x1000, 16), 0);
	uint32_t v = 0xdeadbeef;
	CHECK(bus_access(&b, 0x1004, &v, 4, true));
	CHECK_EQ(a.last_off, 4);
	uint32_t r = 0;
	CHECK(bus_access(&b, 0x1004, &r, 4, false));
	CHECK_EQ(r, 0xdeadbeef);
	/* straddles the end of the window: not decoded */
	uint64_t q = 0;
	CHECK(!bus_access(&b, 0x100c, &q, 8, false));
	CHECK_EQ(q, UINT64_MAX);
	CHECK(!bus_access(&b, 0x0, &r, 4, false));
	CHECK_EQ(r, 0xffffffff);
	CHECK_EQ(b.unhandled, 2);
	/* writes nobody decodes are dropped */
	CHECK(!bus_access(&b, 0x2000, &v, 4, true));
}

TEST_MAIN()
