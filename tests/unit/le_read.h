/* SPDX-License-Identifier: MIT */
/*
 * le_read.h - reading back what the firmware-table builders wrote: the
 * little-endian fields and the 8-bit sum their checksums must zero.
 *
 * Written independently of src/util/bytes.h on purpose, so that the tests
 * do not check the builders' byte order with the builders' own helpers.
 * Header-only, static inline, so that every tests/unit/test_*.c stays one
 * self-contained binary.
 */
#ifndef VISOR_TEST_LE_READ_H
#define VISOR_TEST_LE_READ_H

#include <stddef.h>
#include <stdint.h>

static inline uint8_t sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	for (size_t i = 0; i < n; i++)
		s = (uint8_t)(s + p[i]);
	return s;
}

static inline uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t rd64(const uint8_t *p)
{
	return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

#endif
