/* SPDX-License-Identifier: MIT */
/*
 * bus_unregister and the bus's concurrency rules: windows move while other
 * threads dispatch, and a device op may move windows on its own bus.
 */
#include "../../src/devices/bus.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include "test.h"

struct fake {
	struct bus_dev dev;
	struct bus *bus; /* for the self-moving device */
	uint64_t other_base;
	_Atomic uint64_t reads, writes;
	uint8_t id;
};

static void fake_read(struct bus_dev *dev, uint64_t off, void *data, uint32_t len)
{
	struct fake *f = container_of(dev, struct fake, dev);
	atomic_fetch_add(&f->reads, 1);
	memset(data, f->id, len);
}

static void fake_write(struct bus_dev *dev, uint64_t off, const void *data, uint32_t len)
{
	struct fake *f = container_of(dev, struct fake, dev);
	atomic_fetch_add(&f->writes, 1);
}

static const struct bus_dev_ops fake_ops = {.read = fake_read, .write = fake_write};

/* A device whose write moves its own window (as an ECAM write moving a BAR
 * on the same MMIO bus does). */
static void mover_write(struct bus_dev *dev, uint64_t off, const void *data, uint32_t len)
{
	struct fake *f = container_of(dev, struct fake, dev);
	uint64_t to = f->other_base;
	f->other_base = dev->base;
	CHECK_EQ(bus_unregister(f->bus, dev), 0);
	CHECK_EQ(bus_register(f->bus, dev, to, dev->len), 0);
	atomic_fetch_add(&f->writes, 1);
}

static const struct bus_dev_ops mover_ops = {.read = fake_read, .write = mover_write};

static uint8_t read8(struct bus *b, uint64_t addr)
{
	uint8_t v = 0;
	bus_access(b, addr, &v, 1, false);
	return v;
}

TEST(unregister_basic)
{
	struct bus b;
	struct fake a = {.dev = {.ops = &fake_ops, .name = "a"}, .id = 0xa};
	struct fake c = {.dev = {.ops = &fake_ops, .name = "c"}, .id = 0xc};
	bus_init(&b, "mmio");
	CHECK_EQ(bus_unregister(&b, &a.dev), (unsigned long long)-ENOENT);
	CHECK_EQ(bus_unregister(NULL, &a.dev), (unsigned long long)-EINVAL);
	CHECK_EQ(bus_unregister(&b, NULL), (unsigned long long)-EINVAL);
	CHECK_EQ(bus_register(&b, &a.dev, 0x1000, 0x100), 0);
	CHECK_EQ(bus_register(&b, &c.dev, 0x2000, 0x100), 0);
	/* one window per bus_dev */
	CHECK_EQ(bus_register(&b, &a.dev, 0x3000, 0x100), (unsigned long long)-EEXIST);
	CHECK_EQ(read8(&b, 0x1000), 0xa);
	CHECK_EQ(bus_unregister(&b, &a.dev), 0);
	CHECK_EQ(b.ndevs, 1);
	CHECK_EQ(read8(&b, 0x1000), 0xff); /* nobody decodes it now */
	CHECK(bus_find(&b, 0x1000, 1) == NULL);
	CHECK_EQ(read8(&b, 0x2080), 0xc);
	CHECK_EQ(bus_unregister(&b, &a.dev), (unsigned long long)-ENOENT);
	/* the freed range can be taken again, by anyone */
	CHECK_EQ(bus_register(&b, &a.dev, 0x3000, 0x100), 0);
	CHECK_EQ(read8(&b, 0x30ff), 0xa);
	CHECK_EQ(a.dev.base, 0x3000);
	CHECK_EQ(bus_register(&b, &c.dev, 0x1000, 0x10), (unsigned long long)-EEXIST);
	CHECK_EQ(bus_unregister(&b, &c.dev), 0);
	CHECK_EQ(bus_register(&b, &c.dev, 0x1000, 0x10), 0);
	CHECK_EQ(read8(&b, 0x100f), 0xc);
	CHECK_EQ(read8(&b, 0x1010), 0xff);
}

TEST(unregister_keeps_order_for_lookup)
{
	struct bus b;
	struct fake f[BUS_MAX_DEVS];
	bus_init(&b, "mmio");
	for (int i = 0; i < BUS_MAX_DEVS; i++)
		f[i] = (struct fake){.dev = {.ops = &fake_ops, .name = "f"}, .id = (uint8_t)i};
	for (int i = 0; i < BUS_MAX_DEVS; i++) {
		/* registered in a scrambled order */
		int j = (i * 37) % BUS_MAX_DEVS;
		CHECK_EQ(bus_register(&b, &f[j].dev, 0x10000 + (uint64_t)j * 0x100, 0x100), 0);
	}
	struct fake extra = {.dev = {.ops = &fake_ops, .name = "x"}};
	CHECK_EQ(bus_register(&b, &extra.dev, 0x0, 1), (unsigned long long)-ENOSPC);
	for (int i = 0; i < BUS_MAX_DEVS; i += 3)
		CHECK_EQ(bus_unregister(&b, &f[i].dev), 0);
	for (int i = 0; i < BUS_MAX_DEVS; i++) {
		uint8_t want = i % 3 == 0 ? 0xff : (uint8_t)i;
		CHECK_EQ(read8(&b, 0x10000 + (uint64_t)i * 0x100 + 0x7f), want);
	}
	for (size_t i = 1; i < b.ndevs; i++)
		CHECK(b.devs[i - 1]->base < b.devs[i]->base);
	CHECK_EQ(bus_register(&b, &extra.dev, 0x0, 1), 0);
}

TEST(op_may_move_its_own_window)
{
	struct bus b;
	bus_init(&b, "mmio");
	struct fake m = {.dev = {.ops = &mover_ops, .name = "m"}, .id = 0x5a};
	m.bus = &b;
	m.other_base = 0x9000;
	CHECK_EQ(bus_register(&b, &m.dev, 0x8000, 0x10), 0);
	uint32_t v = 1;
	/* would deadlock if the bus held its lock across the dispatch */
	CHECK(bus_access(&b, 0x8000, &v, 4, true));
	CHECK_EQ(m.dev.base, 0x9000);
	CHECK_EQ(read8(&b, 0x9000), 0x5a);
	CHECK_EQ(read8(&b, 0x8000), 0xff);
	CHECK(bus_access(&b, 0x9004, &v, 4, true));
	CHECK_EQ(m.dev.base, 0x8000);
	CHECK_EQ(atomic_load(&m.writes), 2);
}

struct race {
	struct bus *b;
	struct fake *f;
	atomic_bool stop;
	_Atomic uint64_t hits, misses, bad;
};

static void *reader(void *arg)
{
	struct race *r = arg;
	uint64_t i = 0;
	while (!atomic_load(&r->stop)) {
		uint64_t addr = (i++ & 1) ? 0x4000 : 0x5000;
		uint8_t v = 0;
		bool hit = bus_access(r->b, addr + (i & 0xf), &v, 1, false);
		if (hit) {
			atomic_fetch_add(&r->hits, 1);
			if (v != 0x77 && v != 0x33)
				atomic_fetch_add(&r->bad, 1);
		} else {
			atomic_fetch_add(&r->misses, 1);
			if (v != 0xff)
				atomic_fetch_add(&r->bad, 1);
		}
	}
	return NULL;
}

TEST(concurrent_access_while_windows_move)
{
	struct bus b;
	bus_init(&b, "mmio");
	struct fake moving = {.dev = {.ops = &fake_ops, .name = "moving"}, .id = 0x77};
	struct fake fixed = {.dev = {.ops = &fake_ops, .name = "fixed"}, .id = 0x33};
	CHECK_EQ(bus_register(&b, &fixed.dev, 0x100, 0x10), 0);
	struct race r = {.b = &b, .f = &moving};
	atomic_init(&r.stop, false);
	pthread_t t[3];
	for (int i = 0; i < 3; i++)
		CHECK_EQ(pthread_create(&t[i], NULL, reader, &r), 0);
	/* keep moving the window until the readers have raced with it a
	 * good while (they may start late under sanitizers) */
	for (int i = 0; i < 20000 || (atomic_load(&r.hits) + atomic_load(&r.misses) < 100000 &&
				      i < 20000000);
	     i++) {
		uint64_t at = (i & 1) ? 0x4000 : 0x5000;
		CHECK_EQ(bus_register(&b, &moving.dev, at, 0x10), 0);
		CHECK_EQ(bus_unregister(&b, &moving.dev), 0);
	}
	atomic_store(&r.stop, true);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ(atomic_load(&r.bad), 0);
	CHECK(atomic_load(&r.hits) + atomic_load(&r.misses) > 0);
	CHECK_EQ(b.ndevs, 1);
	CHECK_EQ(read8(&b, 0x105), 0x33);
}

TEST_MAIN()
