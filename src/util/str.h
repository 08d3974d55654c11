/* SPDX-License-Identifier: MIT */
/*
 * str.h - the two string chores every module has: report an error into a
 * caller's buffer, copy a string into a fixed array.
 */
#ifndef VISOR_UTIL_STR_H
#define VISOR_UTIL_STR_H

#include <stdarg.h>
#include <stddef.h>

/* Format one line into err[0..len) (nothing if err is NULL or len 0) and
 * return @code, so `return err_set(err, len, -EINVAL, "...")` reads as one
 * statement. */
int err_set(char *err, size_t len, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
int err_vset(char *err, size_t len, int code, const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));

/* Copy @src into dst[0..size), truncating if it does not fit (callers
 * check lengths first; this only guarantees no overflow and a NUL). */
void str_copy(char *dst, size_t size, const char *src);

#endif
