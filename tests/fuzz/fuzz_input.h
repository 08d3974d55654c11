/* SPDX-License-Identifier: MIT */
/*
 * fuzz_input.h - reading a fuzz input as a stream of fields (the device,
 * transport and API targets): a cursor whose reads past the end give 0,
 * and FZ_CHECK, an invariant that names itself before it traps.
 */
#ifndef VISOR_TESTS_FUZZ_INPUT_H
#define VISOR_TESTS_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct fz {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t fz_u8(struct fz *f)
{
	if (!f->n)
		return 0;
	f->n--;
	return *f->p++;
}

static inline uint16_t fz_u16(struct fz *f)
{
	uint16_t lo = fz_u8(f);
	return (uint16_t)(lo | (uint16_t)fz_u8(f) << 8);
}

static inline uint32_t fz_u32(struct fz *f)
{
	uint32_t lo = fz_u16(f);
	return lo | (uint32_t)fz_u16(f) << 16;
}

static inline uint64_t fz_u64(struct fz *f)
{
	uint64_t lo = fz_u32(f);
	return lo | (uint64_t)fz_u32(f) << 32;
}

/* Copy up to @n input bytes to @dst; returns how many (the rest of @dst
 * is left alone). */
static inline size_t fz_bytes(struct fz *f, void *dst, size_t n)
{
	if (n > f->n)
		n = f->n;
	memcpy(dst, f->p, n);
	f->p += n;
	f->n -= n;
	return n;
}

/* The next @n input bytes (fewer at the end) as a cursor of their own. */
static inline struct fz fz_take(struct fz *f, size_t n)
{
	if (n > f->n)
		n = f->n;
	struct fz sub = {f->p, n};
	f->p += n;
	f->n -= n;
	return sub;
}

/* The harnesses' own bookkeeping loops are not what is being fuzzed: no
 * coverage feedback from them (it would also cost much of the time). */
#define FZ_QUIET __attribute__((no_sanitize("coverage"), noinline))

/* A check failed: say which (the crash report shows the stack too). */
#define FZ_CHECK(cond)                                                                     \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond,      \
				__FILE__, __LINE__);                                       \
			__builtin_trap();                                                  \
		}                                                                          \
	} while (0)

#endif
