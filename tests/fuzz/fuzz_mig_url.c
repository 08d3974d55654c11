/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the migration URL parser (migration/transport.c,
 * mig_url_parse), which reads the "url" of PUT /migration/send and
 * /migration/receive and `visor run --incoming`.
 *
 * Input: the URL (a NUL ends it early, as it would a C string).
 * Beyond crashes and sanitizer reports, these must hold:
 *   - a refusal is -EINVAL with a non-empty one-line message that does not
 *     overflow a small buffer, and leaves the result untouched;
 *   - an acceptance is 0 with a sound URL: unix: a NUL-terminated path of
 *     1 to 107 bytes without control characters, equal to the input after
 *     "unix:"; tcp: a numeric host inet_pton() accepts;
 *   - mig_url_format() of it parses back to the same URL.
 * Seeds: tests/fuzz/corpus-mig_url.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/migration/transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same(const struct mig_url *a, const struct mig_url *b)
{
	return a->kind == b->kind && !strcmp(a->path, b->path) && !strcmp(a->host, b->host) &&
	       a->port == b->port;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';

	struct mig_url u, v;
	memset(&u, 0x5a, sizeof(u));
	memcpy(&v, &u, sizeof(u));
	char err[96];
	memset(err, 0, sizeof(err));
	int r = mig_url_parse(s, &u, err, sizeof(err));
	if (r) {
		if (r != -EINVAL || !err[0] || strchr(err, '\n') || memcmp(&u, &v, sizeof(u)))
			__builtin_trap();
		free(s);
		return 0;
	}
	if (u.kind == MIG_URL_UNIX) {
		size_t n = strnlen(u.path, sizeof(u.path));
		if (n == 0 || n == sizeof(u.path) || strcmp(u.path, s + 5))
			__builtin_trap();
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)u.path[i] < 0x20 || u.path[i] == 0x7f)
				__builtin_trap();
	} else if (u.kind == MIG_URL_TCP) {
		unsigned char a[16];
		if (strnlen(u.host, sizeof(u.host)) == sizeof(u.host) ||
		    (inet_pton(AF_INET, u.host, a) != 1 && inet_pton(AF_INET6, u.host, a) != 1))
			__builtin_trap();
	} else {
		__builtin_trap();
	}
	char txt[MIG_URL_TEXT_MAX];
	int n = mig_url_format(&u, txt, sizeof(txt));
	if (n <= 0 || (size_t)n != strlen(txt))
		__builtin_trap();
	if (mig_url_parse(txt, &v, err, sizeof(err)) || !same(&u, &v))
		__builtin_trap();
	free(s);
	return 0;
}
