/* SPDX-License-Identifier: MIT */
/*
 * bytes.h - little-endian byte access and the 8-bit table checksum.
 *
 * Everything a guest sees in memory or through a register window (firmware
 * tables, boot protocol structures, config spaces, MMIO data) is
 * little-endian and may sit at any alignment: these helpers go byte by byte,
 * so they need no alignment and do not depend on the host's byte order.
 *
 * Contract for all of them: p points at enough valid bytes (1, 2, 4 or 8
 * for the fixed widths, n for put_le/get_le); nothing else is touched.
 */
#ifndef VISOR_UTIL_BYTES_H
#define VISOR_UTIL_BYTES_H

#include <stddef.h>
#include <stdint.h>

static inline void put_le8(void *p, uint8_t v)
{
	((uint8_t *)p)[0] = v;
}

static inline void put_le16(void *p, uint16_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
}

static inline void put_le32(void *p, uint32_t v)
{
	put_le16(p, (uint16_t)v);
	put_le16((uint8_t *)p + 2, (uint16_t)(v >> 16));
}

static inline void put_le64(void *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32((uint8_t *)p + 4, (uint32_t)(v >> 32));
}

static inline uint16_t get_le16(const void *p)
{
	const uint8_t *b = p;
	return (uint16_t)(b[0] | b[1] << 8);
}

static inline uint32_t get_le32(const void *p)
{
	return (uint32_t)get_le16(p) | (uint32_t)get_le16((const uint8_t *)p + 2) << 16;
}

static inline uint64_t get_le64(const void *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32((const uint8_t *)p + 4) << 32;
}

/* Store the low n bytes of v at p.  n must be at most 8. */
static inline void put_le(void *p, uint64_t v, size_t n)
{
	uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

/* The value of the n bytes at p (an access of any width a bus can make).
 * Only the first 8 bytes are read when n is larger. */
static inline uint64_t get_le(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t v = 0;
	for (size_t i = 0; i < n && i < 8; i++)
		v |= (uint64_t)b[i] << (8 * i);
	return v;
}

/*
 * The checksum byte of ACPI, MP and similar tables: the value that makes
 * p[0..len) sum to zero (mod 256) once stored in one of those bytes, which
 * must hold 0 while it is computed.  len may be 0 (the result is then 0).
 */
static inline uint8_t checksum8(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + b[i]);
	return (uint8_t)(0x100 - sum);
}

#endif
