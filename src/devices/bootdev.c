/* SPDX-License-Identifier: MIT */
/*
 * bootdev.c - boot-time marker port; see bootdev.h.
 */
#include "bootdev.h"

#include <string.h>

#include "../arch/x86/layout.h"

static void bootdev_read(struct bus_dev *dev, uint64_t offset, void *data, uint32_t len)
{
	uint8_t *out = data;
	for (uint32_t i = 0; i < len; i++)
		out[i] = offset + i == 0 ? 0x00 : 0xff;
}

static void bootdev_write(struct bus_dev *dev, uint64_t offset, const void *data, uint32_t len)
{
	struct bootdev *b = container_of(dev, struct bootdev, bus);
	if (offset != 0 || len == 0 || ((const uint8_t *)data)[0] != BOOTDEV_MAGIC)
		return;
	if (!atomic_exchange(&b->fired, true) && b->booted)
		b->booted(b->ctx);
}

static const struct bus_dev_ops bootdev_ops = {
	.read = bootdev_read,
	.write = bootdev_write,
};

int bootdev_init(struct bootdev *b, void (*booted)(void *ctx), void *ctx)
{
	memset(b, 0, sizeof(*b));
	b->bus.ops = &bootdev_ops;
	b->bus.name = "bootdev";
	atomic_init(&b->fired, false);
	b->booted = booted;
	b->ctx = ctx;
	return 0;
}
