/* SPDX-License-Identifier: MIT */
/*
 * dev_fake.h - what the legacy-device unit tests share: an interrupt line
 * that records what the device does with it, and the check that a register
 * read of any width defines exactly the bytes it covers.
 *
 * Header-only, static inline, so that every tests/unit/test_*.c stays one
 * self-contained binary.
 */
#ifndef VISOR_TEST_DEV_FAKE_H
#define VISOR_TEST_DEV_FAKE_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "../../src/devices/bus.h"
#include "../../src/devices/irq.h"

/* The recorder behind a struct irq_line {fake_set_level, &fake_irq, gsi}. */
struct fake_irq {
	int level;
	int raises; /* 0 -> 1 transitions */
	int calls;
};

static inline void fake_set_level(void *ctx, uint32_t gsi, int level)
{
	struct fake_irq *f = ctx;
	if (level && !f->level)
		f->raises++;
	f->level = level;
	f->calls++;
}

/*
 * Read @len (1..8) bytes at @off of @dev twice, into buffers filled with
 * 0xa5 and 0x5a beforehand: true if every byte of the access was written
 * (the two reads do not both still hold their fill) and none past it.
 * @a (8 bytes) receives the first read, for checks of the values.
 */
static inline bool read_is_defined(struct bus_dev *dev, uint64_t off, uint32_t len, uint8_t a[8])
{
	uint8_t b[8];
	bool ok = true;
	memset(a, 0xa5, 8);
	memset(b, 0x5a, 8);
	dev->ops->read(dev, off, a, len);
	dev->ops->read(dev, off, b, len);
	for (uint32_t i = 0; i < len; i++)
		ok = ok && !(a[i] == 0xa5 && b[i] == 0x5a);
	for (uint32_t i = len; i < 8; i++)
		ok = ok && a[i] == 0xa5 && b[i] == 0x5a;
	return ok;
}

#endif
