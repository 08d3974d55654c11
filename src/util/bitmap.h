/* SPDX-License-Identifier: MIT */
/* bitmap.h - bit @i of a byte array (bit i%8 of byte i/8); no bounds check:
 * the caller owns the size. */
#ifndef VISOR_UTIL_BITMAP_H
#define VISOR_UTIL_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

static inline bool bitmap_test(const uint8_t *map, uint64_t i)
{
	return map[i / 8] & (1u << (i % 8));
}

static inline void bitmap_set(uint8_t *map, uint64_t i, bool on)
{
	if (on)
		map[i / 8] |= (uint8_t)(1u << (i % 8));
	else
		map[i / 8] &= (uint8_t)~(1u << (i % 8));
}

#endif
