/* SPDX-License-Identifier: MIT */
#include "str.h"

#include <stdio.h>
#include <string.h>

int err_vset(char *err, size_t len, int code, const char *fmt, va_list ap)
{
	if (err && len)
		vsnprintf(err, len, fmt, ap);
	return code;
}

int err_set(char *err, size_t len, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	err_vset(err, len, code, fmt, ap);
	va_end(ap);
	return code;
}

void str_copy(char *dst, size_t size, const char *src)
{
	if (!size)
		return;
	size_t n = strnlen(src, size - 1);
	memcpy(dst, src, n);
	dst[n] = 0;
}
