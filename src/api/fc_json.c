/* SPDX-License-Identifier: MIT */
/*
 * fc_json.c - Firecracker API requests and config files <-> struct vm_action.
 *
 * Parsing is two steps: an iterative validator of our own accepts exactly
 * RFC 8259 (json-c's "strict" mode still takes single quotes, raw control
 * characters, Infinity and "1."), bounds the nesting without recursion and
 * refuses integer literals beyond 64 bits (json-c saturates them silently);
 * then json-c builds the tree, and the member counts the validator took
 * find duplicate names (json-c keeps the last; serde refuses them, and a
 * request that means different things to a proxy and to visor is a bug).
 * Then each
 * Firecracker object has one decoder, used by the API and the config file
 * alike.  Replies are written by a small JSON writer of our own so escaping
 * and UTF-8 handling are exactly what the header promises.
 */
#include "fc_json.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "../config.h"

/* Firecracker's own words where tools may match on them. */
#define MSG_ID_MISMATCH "The id from the path does not match the id from the body!"
#define MSG_GET_BODY "GET request cannot have a body."
#define MSG_EMPTY_PUT "Empty PUT request."
#define MSG_EMPTY_PATCH "Empty PATCH request."

#define MSG_NO_MMDS "visor does not support MMDS yet"
#define MSG_NO_PMEM "visor does not support pmem devices yet"
#define MSG_NO_HOTPLUG "visor does not support memory hotplug yet"
#define MSG_NO_CPU_CONFIG "visor does not support custom CPU templates (cpu-config) yet"
#define MSG_NO_HINTING "visor does not support balloon free page hinting yet"

/* ---- decoder context and messages --------------------------------------- */

struct dec {
	char *msg;
	size_t msglen;
	/* dotted path of the object being decoded ("rate_limiter.bandwidth."),
	 * so a message names the field as the user wrote it */
	char prefix[64];
};

__attribute__((format(printf, 2, 3))) static int fail(struct dec *d, const char *fmt, ...)
{
	if (d->msg && d->msglen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(d->msg, d->msglen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Messages quote what the client sent (paths, names, values): keep them
 * one line, whatever was quoted, so a log line cannot be forged. */
static void one_line(char *s, size_t size)
{
	for (size_t i = 0; i < size && s[i]; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			s[i] = '?';
}

static size_t push_prefix(struct dec *d, const char *name)
{
	size_t m = strlen(d->prefix);
	snprintf(d->prefix + m, sizeof(d->prefix) - m, "%s.", name);
	return m;
}

static void pop_prefix(struct dec *d, size_t m)
{
	d->prefix[m] = 0;
}

static const char *found(const struct json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null: return "null";
	case json_type_boolean: return "a boolean";
	case json_type_double: return "a fractional number";
	case json_type_int: return "an integer";
	case json_type_object: return "an object";
	case json_type_array: return "an array";
	case json_type_string: return "a string";
	}
	return "a value";
}

/* "`a`, `b`, `c`" into buf (truncated if it must be). */
static void join_names(char *buf, size_t size, const char *const *names)
{
	size_t at = 0;
	buf[0] = 0;
	for (const char *const *n = names; *n && at < size; n++) {
		int w = snprintf(buf + at, size - at, "%s`%s`", n == names ? "" : ", ", *n);
		if (w < 0)
			break;
		at += (size_t)w;
	}
}

/* Refuse members not in @known (NULL-terminated). */
static int check_fields(struct dec *d, struct json_object *o, const char *const *known)
{
	struct json_object_iterator it = json_object_iter_begin(o), end = json_object_iter_end(o);
	for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
		const char *key = json_object_iter_peek_name(&it);
		const char *const *k = known;
		while (*k && strcmp(*k, key))
			k++;
		if (!*k) {
			char list[256];
			join_names(list, sizeof(list), known);
			return fail(d, "unknown field `%s%.64s`, expected one of %s", d->prefix, key, list);
		}
	}
	return 0;
}

/*
 * Look a member up.  1: present (*v may be NULL for a JSON null of a
 * required field: the caller's type check reports it); 0: absent or null
 * and optional; -EINVAL: required and absent.
 */
static int lookup(struct dec *d, struct json_object *o, const char *name, bool required,
		  struct json_object **v)
{
	*v = NULL;
	if (!json_object_object_get_ex(o, name, v))
		return required ? fail(d, "missing field `%s%s`", d->prefix, name) : 0;
	if (!*v && !required)
		return 0;
	return 1;
}

/* An integer in [min, max]; 1 present, 0 absent, <0 refused. */
static int get_uint(struct dec *d, struct json_object *o, const char *name, bool required,
		    uint64_t min, uint64_t max, uint64_t *out)
{
	struct json_object *v;
	int r = lookup(d, o, name, required, &v);
	if (r <= 0)
		return r;
	char want[80];
	if (min == 0 && max == UINT64_MAX)
		snprintf(want, sizeof(want), "an unsigned integer");
	else
		snprintf(want, sizeof(want), "an integer from %llu to %llu", (unsigned long long)min,
			 (unsigned long long)max);
	if (json_object_is_type(v, json_type_double))
		return fail(d, "invalid value for `%s%s`: expected %s, found %.40s", d->prefix, name, want,
			    json_object_get_string(v));
	if (!json_object_is_type(v, json_type_int))
		return fail(d, "invalid type for `%s%s`: expected %s, found %s", d->prefix, name, want,
			    found(v));
	int64_t s = json_object_get_int64(v);
	if (s < 0)
		return fail(d, "invalid value for `%s%s`: expected %s, found %lld", d->prefix, name, want,
			    (long long)s);
	/* literals beyond 2^64-1 were refused by validate_json(): json-c
	 * would have saturated them */
	uint64_t u = json_object_get_uint64(v);
	if (u < min || u > max)
		return fail(d, "invalid value for `%s%s`: expected %s, found %llu", d->prefix, name, want,
			    (unsigned long long)u);
	*out = u;
	return 1;
}

static int get_u32(struct dec *d, struct json_object *o, const char *name, bool required,
		   uint32_t *out)
{
	uint64_t v;
	int r = get_uint(d, o, name, required, 0, UINT32_MAX, &v);
	if (r > 0)
		*out = (uint32_t)v;
	return r;
}

static int get_bool(struct dec *d, struct json_object *o, const char *name, bool required, bool *out)
{
	struct json_object *v;
	int r = lookup(d, o, name, required, &v);
	if (r <= 0)
		return r;
	if (!json_object_is_type(v, json_type_boolean))
		return fail(d, "invalid type for `%s%s`: expected a boolean, found %s", d->prefix, name,
			    found(v));
	*out = json_object_get_boolean(v);
	return 1;
}

/* A string without NUL characters; *out points into @o. */
static int get_str(struct dec *d, struct json_object *o, const char *name, bool required,
		   const char **out)
{
	struct json_object *v;
	int r = lookup(d, o, name, required, &v);
	if (r <= 0)
		return r;
	if (!json_object_is_type(v, json_type_string))
		return fail(d, "invalid type for `%s%s`: expected a string, found %s", d->prefix, name,
			    found(v));
	const char *s = json_object_get_string(v);
	if (strlen(s) != (size_t)json_object_get_string_len(v))
		return fail(d, "invalid value for `%s%s`: contains a NUL character", d->prefix, name);
	*out = s;
	return 1;
}

/* Copy @s into buf[size] or refuse: visor never truncates silently. */
static int copy_str(struct dec *d, const char *name, const char *s, char *buf, size_t size)
{
	size_t n = strlen(s);
	if (n >= size)
		return fail(d, "invalid value for `%s%s`: longer than %zu bytes", d->prefix, name, size - 1);
	memcpy(buf, s, n + 1);
	return 0;
}

static int get_str_into(struct dec *d, struct json_object *o, const char *name, bool required,
			char *buf, size_t size)
{
	const char *s;
	int r = get_str(d, o, name, required, &s);
	if (r <= 0)
		return r;
	r = copy_str(d, name, s, buf, size);
	return r < 0 ? r : 1;
}

/* A resource id: config_check_id() decides, so the CLI, the config file
 * and the API say the same thing about the same id. */
static int get_id(struct dec *d, struct json_object *o, const char *name, bool required,
		  const char *what, char *buf, size_t size)
{
	const char *s;
	int r = get_str(d, o, name, required, &s);
	if (r <= 0)
		return r;
	struct config_err e;
	if (config_check_id(what, s, &e))
		return fail(d, "%s", e.msg);
	r = copy_str(d, name, s, buf, size);
	return r < 0 ? r : 1;
}

/* One of @values (NULL-terminated); *idx its index. */
static int get_enum(struct dec *d, struct json_object *o, const char *name, bool required,
		    const char *const *values, bool icase, int *idx)
{
	const char *s;
	int r = get_str(d, o, name, required, &s);
	if (r <= 0)
		return r;
	for (int i = 0; values[i]; i++) {
		if (icase ? !strcasecmp(values[i], s) : !strcmp(values[i], s)) {
			*idx = i;
			return 1;
		}
	}
	char list[160];
	join_names(list, sizeof(list), values);
	return fail(d, "invalid value for `%s%s`: expected one of %s, found `%.40s`", d->prefix, name, list,
		    s);
}

static int get_obj(struct dec *d, struct json_object *o, const char *name, bool required,
		   struct json_object **out)
{
	struct json_object *v;
	int r = lookup(d, o, name, required, &v);
	if (r <= 0)
		return r;
	if (!json_object_is_type(v, json_type_object))
		return fail(d, "invalid type for `%s%s`: expected an object, found %s", d->prefix, name,
			    found(v));
	*out = v;
	return 1;
}

/* True when @name is present and not null. */
static bool has_value(struct json_object *o, const char *name)
{
	struct json_object *v = NULL;
	return json_object_object_get_ex(o, name, &v) && v;
}

/* ---- strict parsing -------------------------------------------------------- */

/* Per object of the document, in order of their '{': how many members the
 * text has, and where it starts. */
struct scan {
	uint32_t *count;
	size_t *start;
	size_t n, cap;
};

static void scan_free(struct scan *sc)
{
	free(sc->count);
	free(sc->start);
}

/* @s[i] is '"' of a string validate_json() accepted: the offset after its
 * closing quote. */
static size_t skip_string(const char *s, size_t len, size_t i)
{
	for (i++; i < len && s[i] != '"'; i++)
		if (s[i] == '\\')
			i++;
	return i < len ? i + 1 : len;
}

/* Length of the well-formed UTF-8 sequence at s[0..n) (RFC 3629: no
 * overlongs, no surrogates, nothing above U+10FFFF), 0 if there is none. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t len;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		lo = c == 0xe0 ? 0xa0 : 0x80;
		hi = c == 0xed ? 0x9f : 0xbf;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		lo = c == 0xf0 ? 0x90 : 0x80;
		hi = c == 0xf4 ? 0x8f : 0xbf;
	} else {
		return 0;
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_hex(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A string literal at s[i] == '"' (RFC 8259 §7): returns the offset after
 * the closing quote, or 0 with *why set.  *nul set for a \u0000 escape. */
static size_t lex_string(const char *s, size_t len, size_t i, bool *nul, const char **why, size_t *at)
{
	for (i++; i < len;) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"')
			return i + 1;
		if (c < 0x20) {
			*why = "control character in a string";
			*at = i;
			return 0;
		}
		if (c == '\\') {
			char e = i + 1 < len ? s[i + 1] : 0;
			if (e == 'u') {
				if (i + 5 >= len || !is_hex(s[i + 2]) || !is_hex(s[i + 3]) || !is_hex(s[i + 4]) ||
				    !is_hex(s[i + 5])) {
					*why = "invalid \\u escape";
					*at = i;
					return 0;
				}
				if (!memcmp(s + i + 2, "0000", 4))
					*nul = true;
				unsigned cu = (unsigned)strtoul((char[5]){s[i + 2], s[i + 3], s[i + 4], s[i + 5], 0},
							       NULL, 16);
				if (cu >= 0xdc00 && cu <= 0xdfff) {
					/* a trailing surrogate without its leading one */
					*why = "lone surrogate in a \\u escape";
					*at = i;
					return 0;
				}
				if (cu >= 0xd800 && cu <= 0xdbff) {
					/* must be followed by a trailing surrogate escape (RFC 8259 §7) */
					unsigned lo = 0;
					if (i + 11 < len && s[i + 6] == '\\' && s[i + 7] == 'u' &&
					    is_hex(s[i + 8]) && is_hex(s[i + 9]) && is_hex(s[i + 10]) &&
					    is_hex(s[i + 11]))
						lo = (unsigned)strtoul((char[5]){s[i + 8], s[i + 9], s[i + 10],
										s[i + 11], 0},
								       NULL, 16);
					if (lo < 0xdc00 || lo > 0xdfff) {
						*why = "lone surrogate in a \\u escape";
						*at = i;
						return 0;
					}
					i += 6; /* the pair: both escapes */
				}
				i += 6;
			} else if (e && strchr("\"\\/bfnrt", e)) {
				i += 2;
			} else {
				*why = "invalid escape";
				*at = i;
				return 0;
			}
			continue;
		}
		size_t l = utf8_seq((const unsigned char *)s + i, len - i);
		if (!l) {
			*why = "invalid UTF-8";
			*at = i;
			return 0;
		}
		i += l;
	}
	*why = "unterminated string";
	*at = len;
	return 0;
}

/* A number at s[i] (RFC 8259 §6): the offset after it, or 0.  *integer
 * when it has neither fraction nor exponent. */
static size_t lex_number(const char *s, size_t len, size_t i, bool *integer)
{
	*integer = true;
	if (i < len && s[i] == '-')
		i++;
	if (i < len && s[i] == '0') {
		i++;
	} else if (i < len && is_digit(s[i])) {
		while (i < len && is_digit(s[i]))
			i++;
	} else {
		return 0;
	}
	if (i < len && s[i] == '.') {
		*integer = false;
		if (++i >= len || !is_digit(s[i]))
			return 0;
		while (i < len && is_digit(s[i]))
			i++;
	}
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		*integer = false;
		i++;
		if (i < len && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= len || !is_digit(s[i]))
			return 0;
		while (i < len && is_digit(s[i]))
			i++;
	}
	return i;
}

struct scan_level {
	bool obj;
	size_t idx;             /* an object's index in struct scan */
	size_t key_at, key_len; /* its last member name (raw text, no quotes) */
};

enum expect { EX_VALUE, EX_VALUE_OR_END, EX_KEY, EX_KEY_OR_END, EX_COLON, EX_COMMA_OR_END, EX_DONE };

/*
 * Validate @s as one strict RFC 8259 JSON text (UTF-8, at most
 * FC_JSON_MAX_DEPTH levels deep, iteratively: no recursion on input) and
 * refuse what json-c would let through or get wrong: single quotes, raw
 * control characters, NaN/Infinity, "1.", member names with NUL
 * characters, integers beyond 64 bits (json-c saturates them).  Counts the
 * members of every object for check_duplicates().
 */
static int validate_json(struct dec *d, const char *s, size_t len, struct scan *sc)
{
	struct scan_level st[FC_JSON_MAX_DEPTH];
	int top = -1;
	enum expect ex = EX_VALUE;
	const char *why = NULL;
	size_t i = 0, at = 0;
	for (;;) {
		while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
			i++;
		if (i >= len)
			break;
		char c = s[i];
		at = i;
		if (ex == EX_DONE) {
			why = "trailing characters";
			goto bad;
		}
		if (ex == EX_COLON) {
			if (c != ':') {
				why = "':' expected";
				goto bad;
			}
			i++;
			ex = EX_VALUE;
			continue;
		}
		if (ex == EX_COMMA_OR_END) {
			if (c == ',') {
				i++;
				ex = st[top].obj ? EX_KEY : EX_VALUE;
				continue;
			}
			if (c != (st[top].obj ? '}' : ']')) {
				why = st[top].obj ? "',' or '}' expected" : "',' or ']' expected";
				goto bad;
			}
			i++;
			top--;
			ex = top < 0 ? EX_DONE : EX_COMMA_OR_END;
			continue;
		}
		if (ex == EX_KEY || ex == EX_KEY_OR_END) {
			if (ex == EX_KEY_OR_END && c == '}') {
				i++;
				top--;
				ex = top < 0 ? EX_DONE : EX_COMMA_OR_END;
				continue;
			}
			if (c != '"') {
				why = "a quoted member name expected";
				goto bad;
			}
			bool nul = false;
			size_t e = lex_string(s, len, i, &nul, &why, &at);
			if (!e)
				goto bad;
			st[top].key_at = i + 1;
			st[top].key_len = e - i - 2;
			sc->count[st[top].idx]++;
			if (nul)
				return fail(d, "invalid field name `%.*s`: contains a NUL character",
					    (int)(st[top].key_len > 64 ? 64 : st[top].key_len), s + st[top].key_at);
			i = e;
			ex = EX_COLON;
			continue;
		}
		/* EX_VALUE, EX_VALUE_OR_END */
		if (ex == EX_VALUE_OR_END && c == ']') {
			i++;
			top--;
			ex = top < 0 ? EX_DONE : EX_COMMA_OR_END;
			continue;
		}
		if (c == '{' || c == '[') {
			if (top + 1 >= FC_JSON_MAX_DEPTH) {
				why = "nesting too deep";
				goto bad;
			}
			top++;
			st[top] = (struct scan_level){.obj = c == '{', .idx = sc->n};
			if (c == '{') {
				if (sc->n == sc->cap) {
					size_t nc = sc->cap ? 2 * sc->cap : 16;
					uint32_t *cn = realloc(sc->count, nc * sizeof(*cn));
					if (cn)
						sc->count = cn;
					size_t *sn = realloc(sc->start, nc * sizeof(*sn));
					if (sn)
						sc->start = sn;
					if (!cn || !sn)
						return fail(d, "out of memory");
					sc->cap = nc;
				}
				sc->count[sc->n] = 0;
				sc->start[sc->n] = i;
				sc->n++;
			}
			i++;
			ex = c == '{' ? EX_KEY_OR_END : EX_VALUE_OR_END;
			continue;
		}
		if (c == '"') {
			bool nul = false;
			size_t e = lex_string(s, len, i, &nul, &why, &at);
			if (!e)
				goto bad;
			i = e;
		} else if (c == '-' || is_digit(c)) {
			bool integer;
			size_t e = lex_number(s, len, i, &integer);
			if (!e) {
				why = "invalid number";
				goto bad;
			}
			bool neg = c == '-';
			size_t ds = i + neg, nd = e - ds;
			const char *lim = neg ? "9223372036854775808" : "18446744073709551615";
			size_t ll = strlen(lim);
			if (integer && (nd > ll || (nd == ll && memcmp(s + ds, lim, ll) > 0))) {
				int k = top;
				while (k >= 0 && !st[k].obj)
					k--;
				size_t kl = k >= 0 ? st[k].key_len : 6;
				const char *kp = k >= 0 ? s + st[k].key_at : "number";
				return fail(d, "invalid value for `%.*s`: %.*s%s is out of range",
					    (int)(kl > 64 ? 64 : kl), kp, (int)(e - i > 40 ? 40 : e - i), s + i,
					    e - i > 40 ? "..." : "");
			}
			i = e;
		} else if (len - i >= 4 && (!memcmp(s + i, "true", 4) || !memcmp(s + i, "null", 4))) {
			i += 4;
		} else if (len - i >= 5 && !memcmp(s + i, "false", 5)) {
			i += 5;
		} else {
			why = "unexpected character";
			goto bad;
		}
		ex = top < 0 ? EX_DONE : EX_COMMA_OR_END;
	}
	if (ex == EX_DONE)
		return 0;
	why = "unexpected end of data";
	at = len;
bad:
	return fail(d, "invalid JSON at byte %zu: %s", at, why);
}

/* Decode the JSON string literal s[0..n) (quotes included). */
static char *decode_string(const char *s, size_t n)
{
	char *tmp = strndup(s, n);
	if (!tmp)
		return NULL;
	struct json_object *o = json_tokener_parse(tmp);
	free(tmp);
	char *r = o && json_object_is_type(o, json_type_string) ? strdup(json_object_get_string(o)) : NULL;
	json_object_put(o);
	return r;
}

/*
 * @o has fewer members than its text s[0..len) (which starts at its '{'):
 * name the first duplicate.  json-c keeps the first occurrence's place and
 * the last one's value, so walking the raw names against json-c's order
 * finds the first name json-c does not list next.
 */
static int report_duplicate(struct dec *d, struct json_object *o, const char *s, size_t len)
{
	struct json_object_iterator it = json_object_iter_begin(o), end = json_object_iter_end(o);
	int depth = 0;
	bool want_key = false;
	for (size_t i = 0; i < len;) {
		char c = s[i];
		if (c == '"') {
			size_t e = skip_string(s, len, i);
			if (depth == 1 && want_key) {
				want_key = false;
				char *key = decode_string(s + i, e - i);
				if (!key)
					return fail(d, "duplicate field");
				if (!json_object_iter_equal(&it, &end) &&
				    !strcmp(key, json_object_iter_peek_name(&it))) {
					json_object_iter_next(&it);
				} else {
					fail(d, "duplicate field `%.64s`", key);
					free(key);
					return -EINVAL;
				}
				free(key);
			}
			i = e;
			continue;
		}
		if (c == '{' || c == '[') {
			depth++;
			if (depth == 1)
				want_key = c == '{';
		} else if (c == '}' || c == ']') {
			if (--depth <= 0)
				break;
		} else if (c == ',' && depth == 1) {
			want_key = true;
		}
		i++;
	}
	return fail(d, "duplicate field");
}

/* Compare json-c's objects with the member counts of the text, in the same
 * (document) order; the first object with fewer members has a duplicate. */
static int check_duplicates(struct dec *d, struct json_object *o, const struct scan *sc, size_t *k,
			    const char *text, size_t len)
{
	if (json_object_is_type(o, json_type_object)) {
		if (*k >= sc->n)
			return fail(d, "duplicate field");
		size_t idx = (*k)++;
		if ((size_t)json_object_object_length(o) != sc->count[idx])
			return report_duplicate(d, o, text + sc->start[idx], len - sc->start[idx]);
		struct json_object_iterator it = json_object_iter_begin(o), end = json_object_iter_end(o);
		for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
			int r = check_duplicates(d, json_object_iter_peek_value(&it), sc, k, text, len);
			if (r)
				return r;
		}
	} else if (json_object_is_type(o, json_type_array)) {
		size_t n = json_object_array_length(o);
		for (size_t i = 0; i < n; i++) {
			int r = check_duplicates(d, json_object_array_get_idx(o, i), sc, k, text, len);
			if (r)
				return r;
		}
	}
	return 0;
}

/*
 * Parse @text strictly into *out (NULL for a JSON null).  0, or -EINVAL
 * with the message in @d.
 */
static int parse_json(struct dec *d, const char *text, size_t len, struct json_object **out)
{
	*out = NULL;
	if (len >= INT_MAX)
		return fail(d, "invalid JSON: the document is too large");
	if (!text)
		text = "";
	const char *nul = memchr(text, 0, len);
	if (nul)
		return fail(d, "invalid JSON at byte %zu: NUL character", (size_t)(nul - text));
	struct scan sc = {0};
	int r = validate_json(d, text, len, &sc);
	if (r) {
		scan_free(&sc);
		return r;
	}
	/* json-c builds the tree; the text is valid, so its limits (one
	 * level of slack over ours) and quirks do not come into play */
	struct json_tokener *tok = json_tokener_new_ex(FC_JSON_MAX_DEPTH + 2);
	if (!tok) {
		scan_free(&sc);
		return fail(d, "out of memory");
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	struct json_object *o = json_tokener_parse_ex(tok, text, (int)len);
	enum json_tokener_error e = json_tokener_get_error(tok);
	if (e == json_tokener_continue) {
		/* a top-level number: tell the tokenizer the text ended */
		o = json_tokener_parse_ex(tok, "", 1);
		e = json_tokener_get_error(tok);
	}
	json_tokener_free(tok);
	if (e != json_tokener_success) {
		json_object_put(o);
		scan_free(&sc);
		return fail(d, "invalid JSON: %s", json_tokener_error_desc(e));
	}
	size_t k = 0;
	r = check_duplicates(d, o, &sc, &k, text, len);
	scan_free(&sc);
	if (r) {
		json_object_put(o);
		return r;
	}
	*out = o;
	return 0;
}

/* ---- per-object decoders (shared by the API and the config file) -------- */

static int dec_bucket(struct dec *d, struct json_object *o, const char *name, struct bucket_config *b)
{
	static const char *const fields[] = {"size", "one_time_burst", "refill_time", NULL};
	struct json_object *v;
	int r = get_obj(d, o, name, false, &v);
	if (r <= 0)
		return r;
	size_t m = push_prefix(d, name);
	if ((r = check_fields(d, v, fields)) < 0 ||
	    (r = get_uint(d, v, "size", true, 0, UINT64_MAX, &b->size)) < 0 ||
	    (r = get_uint(d, v, "one_time_burst", false, 0, UINT64_MAX, &b->one_time_burst)) < 0 ||
	    (r = get_uint(d, v, "refill_time", true, 0, UINT64_MAX, &b->refill_time_ms)) < 0)
		goto out;
	r = 1;
out:
	pop_prefix(d, m);
	return r;
}

/* Firecracker's RateLimiter {bandwidth, ops}; absent buckets are zero
 * (no limit).  Returns 0 when @name is absent, else a mask of
 * FC_RL_GIVEN | FC_RL_BANDWIDTH | FC_RL_OPS (which buckets the body gave:
 * a PATCH changes only those), or -errno. */
static int dec_rate_limiter(struct dec *d, struct json_object *o, const char *name,
			    struct rate_limiter_config *rl)
{
	static const char *const fields[] = {"bandwidth", "ops", NULL};
	memset(rl, 0, sizeof(*rl));
	struct json_object *v;
	int r = get_obj(d, o, name, false, &v);
	if (r <= 0)
		return r;
	size_t m = push_prefix(d, name);
	int mask = FC_RL_GIVEN;
	if ((r = check_fields(d, v, fields)) < 0 || (r = dec_bucket(d, v, "bandwidth", &rl->bandwidth)) < 0)
		goto out;
	mask |= r > 0 ? FC_RL_BANDWIDTH : 0;
	if ((r = dec_bucket(d, v, "ops", &rl->ops)) < 0)
		goto out;
	mask |= r > 0 ? FC_RL_OPS : 0;
	r = mask;
out:
	pop_prefix(d, m);
	return r;
}

static const char *const cpu_templates[] = {"None", "C3", "T2", "T2S", "T2CL", "T2A", "V1N1", NULL};
static const char *const huge_pages[] = {"None", "Transparent", "2M", NULL};

/* MachineConfiguration: PUT (vcpu_count, mem_size_mib required; smt and
 * track_dirty_pages default false; visor's own dirty_ring_entries, KVM's
 * dirty ring per vCPU, default 4096 where the host has it) or PATCH (any
 * subset, not none). */
static int dec_machine(struct dec *d, struct json_object *o, struct vm_action *a, bool patch)
{
	static const char *const fields[] = {"vcpu_count", "mem_size_mib", "smt", "track_dirty_pages",
					     "cpu_template", "huge_pages", "dirty_ring_entries", NULL};
	a->kind = patch ? ACT_PATCH_MACHINE_CONFIG : ACT_PUT_MACHINE_CONFIG;
	int r, idx = 0;
	if ((r = check_fields(d, o, fields)) < 0)
		return r;
	if ((r = get_uint(d, o, "vcpu_count", !patch, 0, UINT64_MAX, &a->u.machine.cpus)) < 0)
		return r;
	a->has_cpus = r;
	if ((r = get_uint(d, o, "mem_size_mib", !patch, 0, UINT64_MAX, &a->u.machine.mem_mib)) < 0)
		return r;
	a->has_mem = r;
	if ((r = get_bool(d, o, "smt", false, &a->u.machine.smt)) < 0)
		return r;
	a->has_smt = r;
	if ((r = get_bool(d, o, "track_dirty_pages", false, &a->u.machine.track_dirty_pages)) < 0)
		return r;
	a->has_track_dirty = r;
	if ((r = get_uint(d, o, "dirty_ring_entries", false, 0, UINT64_MAX, &a->u.machine.dirty_ring)) < 0)
		return r;
	a->has_dirty_ring = r;
	bool other = false;
	if ((r = get_enum(d, o, "cpu_template", false, cpu_templates, false, &idx)) < 0)
		return r;
	if (r && idx)
		return fail(d, "visor does not support CPU templates yet (cpu_template `%s`)", cpu_templates[idx]);
	other |= r;
	if ((r = get_enum(d, o, "huge_pages", false, huge_pages, false, &idx)) < 0)
		return r;
	if (r && idx)
		return fail(d, "visor does not support huge pages yet (huge_pages `%s`)", huge_pages[idx]);
	other |= r;
	if (patch && !a->has_cpus && !a->has_mem && !a->has_smt && !a->has_track_dirty &&
	    !a->has_dirty_ring && !other)
		return fail(d, MSG_EMPTY_PATCH);
	return 0;
}

/* BootSource */
static int dec_boot(struct dec *d, struct json_object *o, struct vm_action *a)
{
	static const char *const fields[] = {"kernel_image_path", "initrd_path", "boot_args", NULL};
	a->kind = ACT_PUT_BOOT_SOURCE;
	int r;
	if ((r = check_fields(d, o, fields)) < 0 ||
	    (r = get_str_into(d, o, "kernel_image_path", true, a->u.boot.kernel, sizeof(a->u.boot.kernel))) < 0)
		return r;
	if ((r = get_str_into(d, o, "initrd_path", false, a->u.boot.initrd, sizeof(a->u.boot.initrd))) < 0)
		return r;
	a->u.boot.has_initrd = r;
	if ((r = get_str_into(d, o, "boot_args", false, a->u.boot.cmdline, sizeof(a->u.boot.cmdline))) < 0)
		return r;
	a->u.boot.has_cmdline = r;
	return 0;
}

static const char *const cache_types[] = {"Unsafe", "Writeback", NULL};
static const char *const io_engines[] = {"Sync", "Async", NULL};

/* Drive (virtio-block only). */
static int dec_drive(struct dec *d, struct json_object *o, struct vm_action *a)
{
	static const char *const fields[] = {"drive_id", "partuuid", "is_root_device", "cache_type",
					     "is_read_only", "path_on_host", "rate_limiter", "io_engine",
					     "socket", NULL};
	struct disk_config *dk = &a->u.disk;
	a->kind = ACT_PUT_DRIVE;
	int r, idx;
	if ((r = check_fields(d, o, fields)) < 0)
		return r;
	if (has_value(o, "socket"))
		return fail(d, "visor does not support vhost-user block devices yet (socket)");
	if ((r = get_id(d, o, "drive_id", true, "drive", dk->id, sizeof(dk->id))) < 0 ||
	    (r = get_str_into(d, o, "path_on_host", true, dk->path, sizeof(dk->path))) < 0 ||
	    (r = get_bool(d, o, "is_root_device", true, &dk->root)) < 0 ||
	    (r = get_bool(d, o, "is_read_only", true, &dk->readonly)) < 0 ||
	    (r = get_str_into(d, o, "partuuid", false, dk->partuuid, sizeof(dk->partuuid))) < 0)
		return r;
	/* Firecracker's defaults: Unsafe, Sync */
	idx = 0;
	if ((r = get_enum(d, o, "cache_type", false, cache_types, false, &idx)) < 0)
		return r;
	dk->cache = idx ? DRIVE_CACHE_WRITEBACK : DRIVE_CACHE_UNSAFE;
	idx = 0;
	if ((r = get_enum(d, o, "io_engine", false, io_engines, false, &idx)) < 0)
		return r;
	dk->io_engine = idx ? DRIVE_IO_ASYNC : DRIVE_IO_SYNC;
	if ((r = dec_rate_limiter(d, o, "rate_limiter", &dk->rl)) < 0)
		return r;
	dk->transport = TRANSPORT_PCI;
	return 0;
}

/* PartialDrive */
static int dec_drive_patch(struct dec *d, struct json_object *o, struct vm_action *a)
{
	static const char *const fields[] = {"drive_id", "path_on_host", "rate_limiter", NULL};
	a->kind = ACT_PATCH_DRIVE;
	int r;
	if ((r = check_fields(d, o, fields)) < 0 ||
	    (r = get_id(d, o, "drive_id", true, "drive", a->u.disk.id, sizeof(a->u.disk.id))) < 0)
		return r;
	if ((r = get_str_into(d, o, "path_on_host", false, a->u.disk.path, sizeof(a->u.disk.path))) < 0)
		return r;
	a->has_path = r;
	if ((r = dec_rate_limiter(d, o, "rate_limiter", &a->u.disk.rl)) < 0)
		return r;
	a->has_rl = r;
	return 0;
}

/* NetworkInterface */
static int dec_net(struct dec *d, struct json_object *o, struct vm_action *a)
{
	static const char *const fields[] = {"iface_id", "host_dev_name", "guest_mac", "mtu",
					     "rx_rate_limiter", "tx_rate_limiter", NULL};
	struct net_config *n = &a->u.net;
	a->kind = ACT_PUT_NET;
	int r;
	uint64_t mtu = 0;
	if ((r = check_fields(d, o, fields)) < 0 ||
	    (r = get_id(d, o, "iface_id", true, "network interface", n->id, sizeof(n->id))) < 0 ||
	    (r = get_str_into(d, o, "host_dev_name", true, n->tap, sizeof(n->tap))) < 0 ||
	    (r = get_str_into(d, o, "guest_mac", false, n->mac, sizeof(n->mac))) < 0 ||
	    /* the schema's range: 0 could not be told from "absent" later */
	    (r = get_uint(d, o, "mtu", false, 68, 65535, &mtu)) < 0 ||
	    (r = dec_rate_limiter(d, o, "rx_rate_limiter", &n->rx_rl)) < 0 ||
	    (r = dec_rate_limiter(d, o, "tx_rate_limiter", &n->tx_rl)) < 0)
		return r;
	n->mtu = (uint32_t)mtu;
	n->transport = TRANSPORT_PCI;
	return 0;
}

/* PartialNetworkInterface */
static int dec_net_patch(struct dec *d, struct json_object *o, struct vm_action *a)
{
	static const char *const fields[] = {"iface_id", "rx_rate_limiter", "tx_rate_limiter", NULL};
	a->kind = ACT_PATCH_NET;
	int r;
	if ((r = check_fields(d, o, fields)) < 0 ||
	    (r = get_id(d, o, "iface_id", true, "network interface", a->u.net.id, sizeof(a->u.net.id))) < 0)
		return r;
	if ((r = dec_rate_limiter(d, o, "rx_rate_limiter", &a->u.net.rx_rl)) < 0)
		return r;
	a->has_rx_rl = r;
	if ((r = dec_rate_limiter(d, o, "tx_rate_limiter", &a->u.net.tx_rl)) < 0)
		return r;
	a->has_tx_rl = r;
	return 0;
}

/* Vsock */
static int dec_vsock(struct dec *d, struct json_object *o, struct vm_action *a)
{
	static const char *const fields[] = {"guest_cid", "uds_path", "vsock_id", NULL};
	struct vsock_config *v = &a->u.vsock;
	a->kind = ACT_PUT_VSOCK;
	int r;
	if ((r = check_fields(d, o, fields)) < 0 ||
	    (r = get_uint(d, o, "guest_cid", true, 0, UINT64_MAX, &v->cid)) < 0 ||
	    (r = get_str_into(d, o, "uds_path", true, v->uds, sizeof(v->uds))) < 0 ||
	    (r = get_id(d, o, "vsock_id", false, "vsock", v->id, sizeof(v->id))) < 0)
		return r;
	v->enabled = true;
	v->transport = TRANSPORT_PCI;
	return 0;
}

/* EntropyDevice */
static int dec_entropy(struct dec *d, struct json_object *o, struct vm_action *a)
{
	static const char *const fields[] = {"rate_limiter", NULL};
	a->kind = ACT_PUT_ENTROPY;
	int r;
	if ((r = check_fields(d, o, fields)) < 0 || (r = dec_rate_limiter(d, o, "rate_limiter", &a->u.rng.rl)) < 0)
		return r;
	a->u.rng.enabled = true;
	a->u.rng.transport = TRANSPORT_PCI;
	return 0;
}

/* Balloon.  free_page_reporting defaults to false as in Firecracker. */
static int dec_balloon(struct dec *d, struct json_object *o, struct vm_action *a)
{
	static const char *const fields[] = {"amount_mib", "deflate_on_oom", "stats_polling_interval_s",
					     "free_page_hinting", "free_page_reporting", NULL};
	struct balloon_config *b = &a->u.balloon;
	a->kind = ACT_PUT_BALLOON;
	uint32_t mib = 0;
	bool hinting = false, reporting = false;
	int r;
	if ((r = check_fields(d, o, fields)) < 0 || (r = get_u32(d, o, "amount_mib", true, &mib)) < 0 ||
	    (r = get_bool(d, o, "deflate_on_oom", true, &b->deflate_on_oom)) < 0 ||
	    (r = get_u32(d, o, "stats_polling_interval_s", false, &b->stats_period)) < 0 ||
	    (r = get_bool(d, o, "free_page_hinting", false, &hinting)) < 0 ||
	    (r = get_bool(d, o, "free_page_reporting", false, &reporting)) < 0)
		return r;
	if (hinting)
		return fail(d, MSG_NO_HINTING);
	b->size = (uint64_t)mib << 20;
	b->no_reporting = !reporting;
	b->enabled = true;
	b->transport = TRANSPORT_PCI;
	return 0;
}

/* BalloonUpdate */
static int dec_balloon_patch(struct dec *d, struct json_object *o, struct vm_action *a)
{
	static const char *const fields[] = {"amount_mib", NULL};
	a->kind = ACT_PATCH_BALLOON;
	uint32_t mib = 0;
	int r;
	if ((r = check_fields(d, o, fields)) < 0 || (r = get_u32(d, o, "amount_mib", true, &mib)) < 0)
		return r;
	a->u.balloon.size = (uint64_t)mib << 20;
	return 0;
}

/* BalloonStatsUpdate */
static int dec_balloon_stats_patch(struct dec *d, struct json_object *o, struct vm_action *a)
{
	static const char *const fields[] = {"stats_polling_interval_s", NULL};
	a->kind = ACT_PATCH_BALLOON_STATS;
	int r;
	if ((r = check_fields(d, o, fields)) < 0 ||
	    (r = get_u32(d, o, "stats_polling_interval_s", true, &a->u.balloon.stats_period)) < 0)
		return r;
	return 0;
}

/* InstanceActionInfo */
static int dec_actions(struct dec *d, struct json_object *o, struct vm_action *a)
{
	static const char *const fields[] = {"action_type", NULL};
	static const char *const types[] = {"FlushMetrics", "InstanceStart", "SendCtrlAltDel", NULL};
	static const enum vm_action_kind kinds[] = {ACT_FLUSH_METRICS, ACT_INSTANCE_START,
						    ACT_SEND_CTRL_ALT_DEL};
	int r, idx = 0;
	if ((r = check_fields(d, o, fields)) < 0 || (r = get_enum(d, o, "action_type", true, types, false, &idx)) < 0)
		return r;
	a->kind = kinds[idx];
	return 0;
}

/* Vm */
static int dec_vm_state(struct dec *d, struct json_object *o, struct vm_action *a)
{
	static const char *const fields[] = {"state", NULL};
	static const char *const states[] = {"Paused", "Resumed", NULL};
	int r, idx = 0;
	if ((r = check_fields(d, o, fields)) < 0 || (r = get_enum(d, o, "state", true, states, false, &idx)) < 0)
		return r;
	a->kind = idx ? ACT_RESUME : ACT_PAUSE;
	return 0;
}

/* Logger.  Levels are case-insensitive; "Warn" is taken for "Warning" and
 * Trace is logged as Debug (visor has no finer level); "module" is
 * accepted and ignored (visor's log has no module filter). */
static int dec_logger(struct dec *d, struct json_object *o, struct vm_action *a)
{
	static const char *const fields[] = {"log_path", "level", "show_level", "show_log_origin", "module",
					     NULL};
	static const char *const levels[] = {"Error", "Warning", "Info", "Debug", "Trace", "Off", "Warn", NULL};
	static const enum log_level map[] = {LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG, LOG_DEBUG, LOG_INFO,
					     LOG_WARN};
	struct logger_config *l = &a->u.logger;
	a->kind = ACT_PUT_LOGGER;
	int r, idx = 2;
	const char *module;
	if ((r = check_fields(d, o, fields)) < 0 ||
	    (r = get_str_into(d, o, "log_path", false, l->path, sizeof(l->path))) < 0 ||
	    (r = get_enum(d, o, "level", false, levels, true, &idx)) < 0 ||
	    (r = get_bool(d, o, "show_level", false, &l->show_level)) < 0 ||
	    (r = get_bool(d, o, "show_log_origin", false, &l->show_origin)) < 0 ||
	    (r = get_str(d, o, "module", false, &module)) < 0)
		return r;
	l->level = map[idx];
	l->off = idx == 5;
	l->set = true;
	return 0;
}

/* Metrics.  emit_id and properties are accepted and ignored: visor's
 * metrics lines carry neither yet. */
static int dec_metrics(struct dec *d, struct json_object *o, struct vm_action *a)
{
	static const char *const fields[] = {"metrics_path", "emit_id", "properties", NULL};
	struct metrics_config *m = &a->u.metrics;
	a->kind = ACT_PUT_METRICS;
	bool emit_id;
	struct json_object *props;
	int r;
	if ((r = check_fields(d, o, fields)) < 0 ||
	    (r = get_str_into(d, o, "metrics_path", true, m->path, sizeof(m->path))) < 0 ||
	    (r = get_bool(d, o, "emit_id", false, &emit_id)) < 0 ||
	    (r = get_obj(d, o, "properties", false, &props)) < 0)
		return r;
	if (r) {
		/* additionalProperties: string */
		size_t pm = push_prefix(d, "properties");
		struct json_object_iterator it = json_object_iter_begin(props), end = json_object_iter_end(props);
		for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
			const char *s;
			if ((r = get_str(d, props, json_object_iter_peek_name(&it), true, &s)) < 0)
				break;
		}
		pop_prefix(d, pm);
		if (r < 0)
			return r;
	}
	m->set = true;
	return 0;
}

/* SerialDevice.  A rate limiter is refused, not ignored: visor would
 * write everything the guest prints. */
static int dec_serial(struct dec *d, struct json_object *o, struct vm_action *a)
{
	static const char *const fields[] = {"serial_out_path", "rate_limiter", NULL};
	a->kind = ACT_PUT_SERIAL;
	int r;
	if ((r = check_fields(d, o, fields)) < 0)
		return r;
	if (has_value(o, "rate_limiter"))
		return fail(d, "visor does not support rate limiting the serial console yet (rate_limiter)");
	if ((r = get_str_into(d, o, "serial_out_path", false, a->u.serial_out, sizeof(a->u.serial_out))) < 0)
		return r;
	return 0;
}

/* SnapshotCreateParams: Full (the default) or Diff; whether a Diff is
 * allowed (dirty page tracking) is the VM's business (vm.c). */
static int dec_snapshot_create(struct dec *d, struct json_object *o, struct vm_action *a)
{
	static const char *const fields[] = {"mem_file_path", "snapshot_path", "snapshot_type", NULL};
	static const char *const types[] = {"Full", "Diff", NULL};
	a->kind = ACT_SNAPSHOT_CREATE;
	int r, type = 0;
	if ((r = check_fields(d, o, fields)) < 0 ||
	    (r = get_str_into(d, o, "snapshot_path", true, a->u.snap.state_path,
			      sizeof(a->u.snap.state_path))) < 0 ||
	    (r = get_str_into(d, o, "mem_file_path", true, a->u.snap.mem_path,
			      sizeof(a->u.snap.mem_path))) < 0 ||
	    (r = get_enum(d, o, "snapshot_type", false, types, false, &type)) < 0)
		return r;
	a->u.snap.diff = type == 1;
	if (!a->u.snap.state_path[0] || !a->u.snap.mem_path[0])
		return fail(d, "invalid value: `snapshot_path` and `mem_file_path` must not be empty");
	if (!strcmp(a->u.snap.state_path, a->u.snap.mem_path))
		return fail(d, "invalid value: `snapshot_path` and `mem_file_path` name the same file");
	return 0;
}

/* SnapshotLoadParams: exactly one of mem_file_path (deprecated) and
 * mem_backend (File: the memory file; Uffd: the page-fault handler's Unix
 * socket). */
static int dec_snapshot_load(struct dec *d, struct json_object *o, struct vm_action *a)
{
	static const char *const fields[] = {"snapshot_path",	  "mem_file_path",     "mem_backend",
					     "enable_diff_snapshots", "track_dirty_pages", "resume_vm",
					     "network_overrides",	  "vsock_override",    "clock_realtime",
					     "huge_pages",		  NULL};
	static const char *const backend_fields[] = {"backend_type", "backend_path", NULL};
	static const char *const backends[] = {"File", "Uffd", NULL};
	static const char *const pages[] = {"Snapshot", "None", "Transparent", "2M", NULL};
	struct snapshot_load *l = &a->u.load;
	a->kind = ACT_SNAPSHOT_LOAD;
	int r;
	bool diff = false;
	if ((r = check_fields(d, o, fields)) < 0 ||
	    (r = get_str_into(d, o, "snapshot_path", true, l->state_path, sizeof(l->state_path))) < 0 ||
	    (r = get_bool(d, o, "enable_diff_snapshots", false, &diff)) < 0 ||
	    (r = get_bool(d, o, "track_dirty_pages", false, &l->track_dirty_pages)) < 0 ||
	    (r = get_bool(d, o, "resume_vm", false, &l->resume_vm)) < 0 ||
	    (r = get_bool(d, o, "clock_realtime", false, &l->clock_realtime)) < 0)
		return r;
	l->track_dirty_pages |= diff;
	int hp = 0;
	if ((r = get_enum(d, o, "huge_pages", false, pages, false, &hp)) < 0)
		return r;
	if (hp >= 2)
		return fail(d, "visor does not support huge pages yet (huge_pages `%s`)", pages[hp]);
	bool has_file = has_value(o, "mem_file_path"), has_backend = has_value(o, "mem_backend");
	if (has_file == has_backend)
		return fail(d, "exactly one of `mem_file_path` and `mem_backend` must be given");
	if (has_file) {
		if ((r = get_str_into(d, o, "mem_file_path", true, l->mem_path, sizeof(l->mem_path))) < 0)
			return r;
	} else {
		struct json_object *b;
		if ((r = get_obj(d, o, "mem_backend", true, &b)) < 0)
			return r;
		size_t m = push_prefix(d, "mem_backend");
		int type = 0;
		if ((r = check_fields(d, b, backend_fields)) < 0 ||
		    (r = get_enum(d, b, "backend_type", true, backends, false, &type)) < 0 ||
		    (r = get_str_into(d, b, "backend_path", true, l->mem_path, sizeof(l->mem_path))) < 0) {
			pop_prefix(d, m);
			return r;
		}
		pop_prefix(d, m);
		l->uffd = type == 1;
		/* sun_path: 108 bytes with the NUL */
		if (l->uffd && strlen(l->mem_path) > 107)
			return fail(d, "invalid value for `mem_backend.backend_path`: a Unix socket "
				       "path of at most 107 bytes for the Uffd backend");
	}
	if (!l->state_path[0] || !l->mem_path[0])
		return fail(d, "invalid value: the snapshot and memory paths must not be empty");
	struct json_object *v = NULL;
	if (json_object_object_get_ex(o, "network_overrides", &v) && v) {
		if (!json_object_is_type(v, json_type_array))
			return fail(d, "invalid type for `network_overrides`: expected an array, found %s",
				    found(v));
		size_t n = json_object_array_length(v);
		if (n > CONFIG_MAX_NICS)
			return fail(d, "invalid value for `network_overrides`: at most %d entries",
				    CONFIG_MAX_NICS);
		static const char *const nfields[] = {"iface_id", "host_dev_name", NULL};
		for (size_t i = 0; i < n; i++) {
			struct json_object *e = json_object_array_get_idx(v, i);
			char pre[40];
			snprintf(pre, sizeof(pre), "network_overrides[%zu]", i);
			if (!json_object_is_type(e, json_type_object))
				return fail(d, "invalid type for `%s`: expected an object, found %s", pre,
					    found(e));
			size_t m = push_prefix(d, pre);
			r = check_fields(d, e, nfields);
			if (r >= 0)
				r = get_id(d, e, "iface_id", true, "network interface", l->net[i].iface,
					   sizeof(l->net[i].iface));
			if (r >= 0)
				r = get_str_into(d, e, "host_dev_name", true, l->net[i].tap,
						 sizeof(l->net[i].tap));
			pop_prefix(d, m);
			if (r < 0)
				return r;
			for (size_t j = 0; j < i; j++)
				if (!strcmp(l->net[j].iface, l->net[i].iface))
					return fail(d, "invalid value for `network_overrides`: interface "
						       "`%s` appears twice",
						    l->net[i].iface);
		}
		l->nnet = (uint32_t)n;
	}
	struct json_object *vs;
	if ((r = get_obj(d, o, "vsock_override", false, &vs)) < 0)
		return r;
	if (r > 0) {
		static const char *const vfields[] = {"uds_path", NULL};
		size_t m = push_prefix(d, "vsock_override");
		r = check_fields(d, vs, vfields);
		if (r >= 0)
			r = get_str_into(d, vs, "uds_path", true, l->vsock_uds, sizeof(l->vsock_uds));
		pop_prefix(d, m);
		if (r < 0)
			return r;
		l->has_vsock_uds = true;
	}
	return 0;
}

/* ---- live migration (visor's own endpoints, docs/api.md) ---------------- */

static const char *const mig_mode_names[] = {"precopy", "postcopy", "auto", "local", NULL};
static const char *const mig_state_names[] = {"None",	   "Setup",	"Active", "Switchover",
					      "Postcopy", "Completed", "Failed", "Cancelled", NULL};

const char *fc_mig_state_name(enum mig_state_kind s)
{
	return (unsigned)s <= MIGS_CANCELLED ? mig_state_names[s] : "None";
}

int fc_mig_state_parse(const char *name)
{
	for (int i = 0; mig_state_names[i]; i++)
		if (!strcmp(mig_state_names[i], name))
			return i;
	return -1;
}

const char *fc_mig_mode_name(enum mig_mode_param m)
{
	return (unsigned)m <= MIGP_LOCAL ? mig_mode_names[m] : "precopy";
}

int fc_mig_mode_parse(const char *name)
{
	for (int i = 0; mig_mode_names[i]; i++)
		if (!strcmp(mig_mode_names[i], name))
			return i;
	return -1;
}

int fc_mig_url_check(const char *url, char *err, size_t errlen)
{
	size_t p = !strncmp(url, "unix:", 5) ? 5 : !strncmp(url, "tcp:", 4) ? 4 : 0;
	if (p && url[p])
		return 0;
	if (errlen)
		snprintf(err, errlen, "expected `unix:PATH` or `tcp:HOST:PORT`, found `%.64s`%s", url,
			 strlen(url) > 64 ? "..." : "");
	return -EINVAL;
}

/* "url": required; the prefix is checked here, the rest by the engine. */
static int dec_mig_url(struct dec *d, struct json_object *o, char *buf, size_t size)
{
	int r = get_str_into(d, o, "url", true, buf, size);
	if (r < 0)
		return r;
	char why[128];
	if (fc_mig_url_check(buf, why, sizeof(why)))
		return fail(d, "invalid value for `%surl`: %s", d->prefix, why);
	return 0;
}

/* A file name of "tls": required and not empty. */
static int get_tls_path(struct dec *d, struct json_object *o, const char *name, char *buf, size_t size)
{
	int r = get_str_into(d, o, name, true, buf, size);
	if (r < 0)
		return r;
	if (!buf[0])
		return fail(d, "invalid value for `%s%s`: must not be empty", d->prefix, name);
	return 0;
}

/* MigrationTls {cert, key, ca, server_name}: this side's certificate and
 * key and the CA the peer's certificate must be signed by; server_name
 * (the name the destination's certificate must carry) only on the side
 * that connects, the sender. */
static int dec_mig_tls(struct dec *d, struct json_object *o, bool sender, struct mig_tls_params *t)
{
	static const char *const fields[] = {"cert", "key", "ca", "server_name", NULL};
	struct json_object *v;
	int r = get_obj(d, o, "tls", false, &v);
	if (r <= 0)
		return r;
	size_t m = push_prefix(d, "tls");
	if ((r = check_fields(d, v, fields)) < 0)
		goto out;
	if (!sender && has_value(v, "server_name")) {
		r = fail(d, "invalid field `tls.server_name`: the destination does not connect, it "
			    "has no server name to check (give it to PUT /migration/send)");
		goto out;
	}
	if ((r = get_tls_path(d, v, "cert", t->cert, sizeof(t->cert))) < 0 ||
	    (r = get_tls_path(d, v, "key", t->key, sizeof(t->key))) < 0 ||
	    (r = get_tls_path(d, v, "ca", t->ca, sizeof(t->ca))) < 0 ||
	    (r = get_str_into(d, v, "server_name", false, t->server_name, sizeof(t->server_name))) < 0)
		goto out;
	if (r > 0 && !t->server_name[0]) {
		r = fail(d, "invalid value for `tls.server_name`: must not be empty (omit it: the "
			    "url's host is checked then)");
		goto out;
	}
	t->enabled = true;
	r = 1;
out:
	pop_prefix(d, m);
	return r;
}

/* MigrationSend */
static int dec_mig_send(struct dec *d, struct json_object *o, struct vm_action *a)
{
	static const char *const fields[] = {"url", "downtime_limit_ms", "max_bandwidth_mib", "timeout_s",
					     "mode", "tls", "verify", NULL};
	struct mig_send_params *p = &a->u.mig_send;
	a->kind = ACT_MIGRATION_SEND;
	uint64_t downtime = MIG_DEFAULT_DOWNTIME_MS, timeout = MIG_DEFAULT_TIMEOUT_S;
	int r, mode = MIGP_PRECOPY;
	if ((r = check_fields(d, o, fields)) < 0 || (r = dec_mig_url(d, o, p->url, sizeof(p->url))) < 0 ||
	    (r = get_uint(d, o, "downtime_limit_ms", false, 1, FC_MIG_MAX_DOWNTIME_MS, &downtime)) < 0 ||
	    (r = get_uint(d, o, "max_bandwidth_mib", false, 0, FC_MIG_MAX_BANDWIDTH_MIB,
			  &p->max_bandwidth_mib)) < 0 ||
	    (r = get_uint(d, o, "timeout_s", false, 1, FC_MIG_MAX_TIMEOUT_S, &timeout)) < 0 ||
	    (r = get_enum(d, o, "mode", false, mig_mode_names, false, &mode)) < 0 ||
	    (r = get_bool(d, o, "verify", false, &p->verify)) < 0 ||
	    (r = dec_mig_tls(d, o, true, &p->tls)) < 0)
		return r;
	p->downtime_limit_ms = (uint32_t)downtime;
	p->timeout_s = (uint32_t)timeout;
	p->mode = (enum mig_mode_param)mode;
	if (p->verify && (p->mode == MIGP_POSTCOPY || p->mode == MIGP_LOCAL))
		return fail(d, "invalid value for `verify`: it compares memory after pre-copy's last "
			       "pass, which mode `%s` does not have",
			    p->mode == MIGP_LOCAL ? "local" : "postcopy");
	/* guest memory's file descriptor travels over the Unix socket */
	if (p->mode == MIGP_LOCAL && strncmp(p->url, "unix:", 5))
		return fail(d, "invalid value for `mode`: `local` hands guest memory over a Unix "
			       "socket: it needs a `unix:PATH` url");
	return 0;
}

/* MigrationReceive */
static int dec_mig_recv(struct dec *d, struct json_object *o, struct vm_action *a)
{
	static const char *const fields[] = {"url", "timeout_s", "tls", NULL};
	struct mig_recv_params *p = &a->u.mig_recv;
	a->kind = ACT_MIGRATION_RECEIVE;
	uint64_t timeout = MIG_DEFAULT_TIMEOUT_S;
	int r;
	if ((r = check_fields(d, o, fields)) < 0 || (r = dec_mig_url(d, o, p->url, sizeof(p->url))) < 0 ||
	    (r = get_uint(d, o, "timeout_s", false, 1, FC_MIG_MAX_TIMEOUT_S, &timeout)) < 0 ||
	    (r = dec_mig_tls(d, o, false, &p->tls)) < 0)
		return r;
	p->timeout_s = (uint32_t)timeout;
	return 0;
}

/* PATCH /migration: {"state": "Cancelled"}, nothing else. */
static int dec_mig_patch(struct dec *d, struct json_object *o, struct vm_action *a)
{
	static const char *const fields[] = {"state", NULL};
	static const char *const states[] = {"Cancelled", NULL};
	int r, idx = 0;
	if ((r = check_fields(d, o, fields)) < 0 || (r = get_enum(d, o, "state", true, states, false, &idx)) < 0)
		return r;
	a->kind = ACT_MIGRATION_CANCEL;
	return 0;
}

/* ---- routing ------------------------------------------------------------- */

enum { M_GET = 1, M_PUT = 2, M_PATCH = 4 };

enum route_kind {
	RT_ROOT,
	RT_VERSION,
	RT_VM_CONFIG,
	RT_VM,
	RT_MACHINE,
	RT_BOOT,
	RT_DRIVE,
	RT_NET,
	RT_VSOCK,
	RT_ENTROPY,
	RT_BALLOON,
	RT_BALLOON_STATS,
	RT_ACTIONS,
	RT_LOGGER,
	RT_METRICS,
	RT_SERIAL,
	RT_SNAPSHOT_CREATE,
	RT_SNAPSHOT_LOAD,
	RT_MIGRATION,
	RT_MIGRATION_SEND,
	RT_MIGRATION_RECEIVE,
	RT_UNSUPPORTED,
};

struct route {
	const char *seg[3]; /* fixed segments (NULL-terminated) */
	bool id;            /* followed by a resource id */
	unsigned methods;
	enum route_kind kind;
	const char *unsupported; /* a feature visor lacks: refuse with this */
};

/* Paths and methods of docs/firecracker-api.yaml, and visor's own (/migration). */
static const struct route routes[] = {
	{{NULL}, false, M_GET, RT_ROOT, NULL},
	{{"version"}, false, M_GET, RT_VERSION, NULL},
	{{"vm", "config"}, false, M_GET, RT_VM_CONFIG, NULL},
	{{"vm"}, false, M_PATCH, RT_VM, NULL},
	{{"machine-config"}, false, M_GET | M_PUT | M_PATCH, RT_MACHINE, NULL},
	{{"boot-source"}, false, M_PUT, RT_BOOT, NULL},
	{{"drives"}, true, M_PUT | M_PATCH, RT_DRIVE, NULL},
	{{"network-interfaces"}, true, M_PUT | M_PATCH, RT_NET, NULL},
	{{"vsock"}, false, M_PUT, RT_VSOCK, NULL},
	{{"entropy"}, false, M_PUT, RT_ENTROPY, NULL},
	{{"balloon"}, false, M_GET | M_PUT | M_PATCH, RT_BALLOON, NULL},
	{{"balloon", "statistics"}, false, M_GET | M_PATCH, RT_BALLOON_STATS, NULL},
	{{"actions"}, false, M_PUT, RT_ACTIONS, NULL},
	{{"logger"}, false, M_PUT, RT_LOGGER, NULL},
	{{"metrics"}, false, M_PUT, RT_METRICS, NULL},
	{{"serial"}, false, M_PUT, RT_SERIAL, NULL},
	{{"mmds"}, false, M_GET | M_PUT | M_PATCH, RT_UNSUPPORTED, MSG_NO_MMDS},
	{{"mmds", "config"}, false, M_PUT, RT_UNSUPPORTED, MSG_NO_MMDS},
	{{"pmem"}, true, M_PUT | M_PATCH, RT_UNSUPPORTED, MSG_NO_PMEM},
	{{"hotplug", "memory"}, false, M_GET | M_PUT | M_PATCH, RT_UNSUPPORTED, MSG_NO_HOTPLUG},
	{{"cpu-config"}, false, M_PUT, RT_UNSUPPORTED, MSG_NO_CPU_CONFIG},
	{{"snapshot", "create"}, false, M_PUT, RT_SNAPSHOT_CREATE, NULL},
	{{"snapshot", "load"}, false, M_PUT, RT_SNAPSHOT_LOAD, NULL},
	{{"migration"}, false, M_GET | M_PATCH, RT_MIGRATION, NULL},
	{{"migration", "send"}, false, M_PUT, RT_MIGRATION_SEND, NULL},
	{{"migration", "receive"}, false, M_PUT, RT_MIGRATION_RECEIVE, NULL},
	{{"balloon", "hinting", "start"}, false, M_PATCH, RT_UNSUPPORTED, MSG_NO_HINTING},
	{{"balloon", "hinting", "status"}, false, M_GET, RT_UNSUPPORTED, MSG_NO_HINTING},
	{{"balloon", "hinting", "stop"}, false, M_PATCH, RT_UNSUPPORTED, MSG_NO_HINTING},
};

#define MAX_SEGS 4

struct segs {
	const char *p[MAX_SEGS];
	size_t len[MAX_SEGS];
	size_t n;
};

/* "/a/b/" -> {"a", "b"}; false if not absolute or too many segments. */
static bool split_path(const char *path, struct segs *s)
{
	memset(s, 0, sizeof(*s));
	if (path[0] != '/')
		return false;
	const char *p = path + 1;
	size_t total = strlen(p);
	if (total && p[total - 1] == '/')
		total--;
	if (!total)
		return true;
	const char *end = p + total;
	for (;;) {
		const char *slash = memchr(p, '/', (size_t)(end - p));
		const char *e = slash ? slash : end;
		if (s->n == MAX_SEGS)
			return false;
		s->p[s->n] = p;
		s->len[s->n] = (size_t)(e - p);
		s->n++;
		if (!slash)
			return true;
		p = slash + 1;
	}
}

static const struct route *find_route(const struct segs *s, const char **id, size_t *idlen)
{
	for (size_t r = 0; r < sizeof(routes) / sizeof(routes[0]); r++) {
		const struct route *rt = &routes[r];
		size_t k = 0;
		while (k < 3 && rt->seg[k])
			k++;
		if (!(s->n == k || (rt->id && s->n == k + 1)))
			continue;
		size_t i = 0;
		while (i < k && strlen(rt->seg[i]) == s->len[i] && !memcmp(rt->seg[i], s->p[i], s->len[i]))
			i++;
		if (i < k)
			continue;
		*id = s->n > k ? s->p[k] : "";
		*idlen = s->n > k ? s->len[k] : 0;
		return rt;
	}
	return NULL;
}

static int parse_request(const char *method, const char *path, const char *body, size_t body_len,
			 struct vm_action *a, int *status, char *fault, size_t faultlen)
{
	struct dec d = {.msg = fault, .msglen = faultlen};
	memset(a, 0, sizeof(*a));
	if (faultlen)
		fault[0] = 0;
	*status = 400;
	unsigned m = !strcmp(method, "GET")     ? M_GET
		     : !strcmp(method, "PUT")   ? M_PUT
		     : !strcmp(method, "PATCH") ? M_PATCH
						: 0;
	struct segs s;
	const char *id = "";
	size_t idlen = 0;
	const struct route *rt = split_path(path, &s) ? find_route(&s, &id, &idlen) : NULL;
	if (!rt || !(rt->methods & m))
		return fail(&d, "Invalid request method and/or path: %.16s %.256s%s.", method, path,
			    strlen(path) > 256 ? "..." : "");
	if (rt->unsupported)
		return fail(&d, "%s", rt->unsupported);
	if (m == M_GET) {
		if (body_len)
			return fail(&d, MSG_GET_BODY);
		switch (rt->kind) {
		case RT_ROOT: a->kind = ACT_GET_INFO; break;
		case RT_VERSION: a->kind = ACT_GET_VERSION; break;
		case RT_VM_CONFIG: a->kind = ACT_GET_VM_CONFIG; break;
		case RT_MACHINE: a->kind = ACT_GET_MACHINE_CONFIG; break;
		case RT_BALLOON: a->kind = ACT_GET_BALLOON; break;
		case RT_BALLOON_STATS: a->kind = ACT_GET_BALLOON_STATS; break;
		case RT_MIGRATION: a->kind = ACT_MIGRATION_GET; break;
		default: return fail(&d, "Invalid request method and/or path: %s %.256s.", method, path);
		}
		*status = 0;
		return 0;
	}
	if (!body_len)
		return fail(&d, m == M_PUT ? MSG_EMPTY_PUT : MSG_EMPTY_PATCH);

	/* the id in the path first, as Firecracker does */
	char pid[CONFIG_ID_MAX + 2];
	if (rt->id) {
		size_t n = idlen < sizeof(pid) - 1 ? idlen : sizeof(pid) - 1;
		memcpy(pid, id, n);
		pid[n] = 0;
		struct config_err e;
		if (config_check_id(rt->kind == RT_DRIVE ? "drive" : "network interface", pid, &e))
			return fail(&d, "%s", e.msg);
	}

	struct json_object *o;
	int r = parse_json(&d, body, body_len, &o);
	if (r)
		return r;
	if (!json_object_is_type(o, json_type_object)) {
		r = fail(&d, "invalid type for the request body: expected an object, found %s", found(o));
		goto out;
	}
	bool patch = m == M_PATCH;
	switch (rt->kind) {
	case RT_MACHINE: r = dec_machine(&d, o, a, patch); break;
	case RT_BOOT: r = dec_boot(&d, o, a); break;
	case RT_DRIVE:
		r = patch ? dec_drive_patch(&d, o, a) : dec_drive(&d, o, a);
		if (!r && strcmp(pid, a->u.disk.id))
			r = fail(&d, MSG_ID_MISMATCH);
		break;
	case RT_NET:
		r = patch ? dec_net_patch(&d, o, a) : dec_net(&d, o, a);
		if (!r && strcmp(pid, a->u.net.id))
			r = fail(&d, MSG_ID_MISMATCH);
		break;
	case RT_VSOCK: r = dec_vsock(&d, o, a); break;
	case RT_ENTROPY: r = dec_entropy(&d, o, a); break;
	case RT_BALLOON: r = patch ? dec_balloon_patch(&d, o, a) : dec_balloon(&d, o, a); break;
	case RT_BALLOON_STATS: r = dec_balloon_stats_patch(&d, o, a); break;
	case RT_ACTIONS: r = dec_actions(&d, o, a); break;
	case RT_VM: r = dec_vm_state(&d, o, a); break;
	case RT_LOGGER: r = dec_logger(&d, o, a); break;
	case RT_METRICS: r = dec_metrics(&d, o, a); break;
	case RT_SERIAL: r = dec_serial(&d, o, a); break;
	case RT_SNAPSHOT_CREATE: r = dec_snapshot_create(&d, o, a); break;
	case RT_SNAPSHOT_LOAD: r = dec_snapshot_load(&d, o, a); break;
	case RT_MIGRATION: r = dec_mig_patch(&d, o, a); break;
	case RT_MIGRATION_SEND: r = dec_mig_send(&d, o, a); break;
	case RT_MIGRATION_RECEIVE: r = dec_mig_recv(&d, o, a); break;
	default: r = fail(&d, "Invalid request method and/or path: %s %.256s.", method, path); break;
	}
out:
	json_object_put(o);
	if (r) {
		memset(a, 0, sizeof(*a));
		return -EINVAL;
	}
	*status = 0;
	return 0;
}

int fc_parse_request(const char *method, const char *path, const char *body, size_t body_len,
		     struct vm_action *a, int *status, char *fault, size_t faultlen)
{
	int r = parse_request(method, path, body, body_len, a, status, fault, faultlen);
	if (r && faultlen)
		one_line(fault, faultlen);
	return r;
}

/* ---- config file ------------------------------------------------------------ */

typedef int dec_fn(struct dec *d, struct json_object *o, struct vm_action *a);

static int dec_put_machine(struct dec *d, struct json_object *o, struct vm_action *a)
{
	return dec_machine(d, o, a, false);
}

/* Decode the object at top-level key @key into *a, messages prefixed with
 * @where ("machine-config", "drives[2]"). */
static int dec_section(char *err, size_t errlen, const char *where, struct json_object *v, dec_fn *fn,
		       struct vm_action *a)
{
	char msg[512];
	struct dec d = {.msg = msg, .msglen = sizeof(msg)};
	int r;
	if (!json_object_is_type(v, json_type_object))
		r = fail(&d, "invalid type: expected an object, found %s", found(v));
	else
		r = fn(&d, v, a);
	if (r)
		snprintf(err, errlen, "%s: %s", where, msg);
	return r;
}

/* The array at @key (absent or null: 0 entries), at most @max entries. */
static int get_array(struct dec *d, struct json_object *o, const char *key, size_t max, const char *what,
		     struct json_object **arr, size_t *n)
{
	struct json_object *v;
	*arr = NULL;
	*n = 0;
	int r = lookup(d, o, key, false, &v);
	if (r <= 0)
		return r;
	if (!json_object_is_type(v, json_type_array))
		return fail(d, "invalid type for `%s`: expected an array, found %s", key, found(v));
	*n = json_object_array_length(v);
	if (*n > max)
		return fail(d, "%s: at most %zu %s", key, max, what);
	*arr = v;
	return 1;
}

static int config_file_actions(const char *json, size_t len, struct vm_action **acts, size_t *n,
			       char *err, size_t errlen)
{
	static const char *const fields[] = {"boot-source", "drives", "machine-config", "network-interfaces",
					     "vsock", "balloon", "entropy", "logger", "metrics",
					     /* Firecracker features visor lacks */
					     "mmds-config", "cpu-config", "pmem", "memory-hotplug", NULL};
	struct dec d = {.msg = err, .msglen = errlen};
	*acts = NULL;
	*n = 0;
	if (errlen)
		err[0] = 0;
	struct json_object *o;
	int r = parse_json(&d, json, len, &o);
	if (r)
		return r;
	struct json_object *drives, *nics, *v;
	size_t ndrives, nnics;
	struct vm_action *list = NULL;
	if (!json_object_is_type(o, json_type_object)) {
		r = fail(&d, "invalid type for the config file: expected an object, found %s", found(o));
		goto out;
	}
	if ((r = check_fields(&d, o, fields)) < 0)
		goto out;
	if (has_value(o, "mmds-config")) {
		r = fail(&d, "mmds-config: " MSG_NO_MMDS);
		goto out;
	}
	if (has_value(o, "cpu-config")) {
		r = fail(&d, "cpu-config: " MSG_NO_CPU_CONFIG);
		goto out;
	}
	if (has_value(o, "memory-hotplug")) {
		r = fail(&d, "memory-hotplug: " MSG_NO_HOTPLUG);
		goto out;
	}
	/* Firecracker's own GET /vm/config lists "pmem": [] */
	if (json_object_object_get_ex(o, "pmem", &v) && v &&
	    !(json_object_is_type(v, json_type_array) && json_object_array_length(v) == 0)) {
		r = fail(&d, "pmem: " MSG_NO_PMEM);
		goto out;
	}
	if (!json_object_object_get_ex(o, "boot-source", &v) || !v) {
		r = fail(&d, "missing field `boot-source`");
		goto out;
	}
	if ((r = get_array(&d, o, "drives", CONFIG_MAX_DISKS, "drives", &drives, &ndrives)) < 0 ||
	    (r = get_array(&d, o, "network-interfaces", CONFIG_MAX_NICS, "network interfaces", &nics, &nnics)) < 0)
		goto out;

	/* in the order the actions must run */
	static const struct {
		const char *key;
		dec_fn *fn;
	} singles_before[] = {{"logger", dec_logger}, {"metrics", dec_metrics},
			      {"machine-config", dec_put_machine}, {"boot-source", dec_boot}},
	  singles_after[] = {{"vsock", dec_vsock}, {"balloon", dec_balloon}, {"entropy", dec_entropy}};
	size_t max = 4 + ndrives + nnics + 3, k = 0;
	list = calloc(max, sizeof(*list));
	if (!list) {
		r = fail(&d, "out of memory");
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < sizeof(singles_before) / sizeof(singles_before[0]); i++) {
		if (!json_object_object_get_ex(o, singles_before[i].key, &v) || !v)
			continue;
		if ((r = dec_section(err, errlen, singles_before[i].key, v, singles_before[i].fn, &list[k++])))
			goto out;
	}
	for (size_t i = 0; i < ndrives; i++) {
		char where[48];
		snprintf(where, sizeof(where), "drives[%zu]", i);
		if ((r = dec_section(err, errlen, where, json_object_array_get_idx(drives, i), dec_drive, &list[k++])))
			goto out;
	}
	for (size_t i = 0; i < nnics; i++) {
		char where[48];
		snprintf(where, sizeof(where), "network-interfaces[%zu]", i);
		if ((r = dec_section(err, errlen, where, json_object_array_get_idx(nics, i), dec_net, &list[k++])))
			goto out;
	}
	for (size_t i = 0; i < sizeof(singles_after) / sizeof(singles_after[0]); i++) {
		if (!json_object_object_get_ex(o, singles_after[i].key, &v) || !v)
			continue;
		if ((r = dec_section(err, errlen, singles_after[i].key, v, singles_after[i].fn, &list[k++])))
			goto out;
	}
	*acts = list;
	*n = k;
	list = NULL;
	r = 0;
out:
	free(list);
	json_object_put(o);
	return r;
}

int fc_config_file_actions(const char *json, size_t len, struct vm_action **acts, size_t *n, char *err,
			   size_t errlen)
{
	int r = config_file_actions(json, len, acts, n, err, errlen);
	if (r && errlen)
		one_line(err, errlen);
	return r;
}

/* ---- JSON writer ------------------------------------------------------------- */

struct jw {
	char *buf;
	size_t len, cap;
	bool oom;
	int depth;
	bool first[16];
	bool after_key;
};

static void jw_put(struct jw *w, const char *s, size_t n)
{
	if (w->oom)
		return;
	if (w->len + n + 1 > w->cap) {
		size_t nc = w->cap ? w->cap : 256;
		while (nc < w->len + n + 1)
			nc *= 2;
		char *nb = realloc(w->buf, nc);
		if (!nb) {
			w->oom = true;
			return;
		}
		w->buf = nb;
		w->cap = nc;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = 0;
}

/* A JSON string of s[0..n): escaped, bytes that are not UTF-8 -> U+FFFD. */
static void jw_string(struct jw *w, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	jw_put(w, "\"", 1);
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && p[j] >= 0x20 && p[j] < 0x7f && p[j] != '"' && p[j] != '\\')
			j++;
		if (j > i) {
			jw_put(w, s + i, j - i);
			i = j;
			continue;
		}
		unsigned char c = p[i];
		char esc[8];
		size_t l;
		switch (c) {
		case '"': jw_put(w, "\\\"", 2); break;
		case '\\': jw_put(w, "\\\\", 2); break;
		case '\n': jw_put(w, "\\n", 2); break;
		case '\r': jw_put(w, "\\r", 2); break;
		case '\t': jw_put(w, "\\t", 2); break;
		case '\b': jw_put(w, "\\b", 2); break;
		case '\f': jw_put(w, "\\f", 2); break;
		default:
			if (c < 0x20 || c == 0x7f) {
				snprintf(esc, sizeof(esc), "\\u%04x", c);
				jw_put(w, esc, 6);
			} else if ((l = utf8_seq(p + i, n - i)) > 0) {
				jw_put(w, s + i, l);
				i += l;
				continue;
			} else {
				jw_put(w, "\\ufffd", 6);
			}
		}
		i++;
	}
	jw_put(w, "\"", 1);
}

/* the comma before a value or key, if it is not the first */
static void jw_sep(struct jw *w)
{
	if (w->after_key) {
		w->after_key = false;
		return;
	}
	if (w->depth > 0) {
		if (!w->first[w->depth])
			jw_put(w, ",", 1);
		w->first[w->depth] = false;
	}
}

static void jw_open(struct jw *w, char c)
{
	jw_sep(w);
	jw_put(w, &c, 1);
	if (w->depth + 1 < (int)(sizeof(w->first) / sizeof(w->first[0])))
		w->depth++;
	w->first[w->depth] = true;
}

static void jw_close(struct jw *w, char c)
{
	jw_put(w, &c, 1);
	if (w->depth > 0)
		w->depth--;
}

static void jw_key(struct jw *w, const char *k)
{
	jw_sep(w);
	jw_string(w, k, strlen(k));
	jw_put(w, ":", 1);
	w->after_key = true;
}

/* "key": "string" from a fixed array (never reads past it) */
#define JW_KSTR(w, k, arr) (jw_key((w), (k)), jw_sep(w), jw_string((w), (arr), strnlen((arr), sizeof(arr))))

static void jw_kstr(struct jw *w, const char *k, const char *s)
{
	jw_key(w, k);
	jw_sep(w);
	jw_string(w, s, strlen(s));
}

static void jw_ku64(struct jw *w, const char *k, uint64_t v)
{
	char b[24];
	int n = snprintf(b, sizeof(b), "%llu", (unsigned long long)v);
	jw_key(w, k);
	jw_sep(w);
	jw_put(w, b, (size_t)n);
}

static void jw_kbool(struct jw *w, const char *k, bool v)
{
	jw_key(w, k);
	jw_sep(w);
	jw_put(w, v ? "true" : "false", v ? 4 : 5);
}

static char *jw_finish(struct jw *w, size_t *len)
{
	if (w->oom) {
		free(w->buf);
		*len = 0;
		errno = ENOMEM;
		return NULL;
	}
	*len = w->len;
	return w->buf;
}

/* ---- reply bodies -------------------------------------------------------------- */

static bool bucket_set(const struct bucket_config *b)
{
	return b->size || b->one_time_burst || b->refill_time_ms;
}

static void w_bucket(struct jw *w, const char *k, const struct bucket_config *b)
{
	if (!bucket_set(b))
		return;
	jw_key(w, k);
	jw_open(w, '{');
	jw_ku64(w, "size", b->size);
	jw_ku64(w, "one_time_burst", b->one_time_burst);
	jw_ku64(w, "refill_time", b->refill_time_ms);
	jw_close(w, '}');
}

/* a RateLimiter, omitted when it limits nothing */
static void w_rate_limiter(struct jw *w, const char *k, const struct rate_limiter_config *rl)
{
	if (!bucket_set(&rl->bandwidth) && !bucket_set(&rl->ops))
		return;
	jw_key(w, k);
	jw_open(w, '{');
	w_bucket(w, "bandwidth", &rl->bandwidth);
	w_bucket(w, "ops", &rl->ops);
	jw_close(w, '}');
}

static void w_machine(struct jw *w, const struct vm_config *c)
{
	jw_open(w, '{');
	jw_ku64(w, "vcpu_count", c->cpus);
	jw_ku64(w, "mem_size_mib", c->mem_size >> 20);
	jw_kbool(w, "smt", c->smt);
	jw_kbool(w, "track_dirty_pages", c->track_dirty_pages);
	jw_kstr(w, "huge_pages", "None");
	if (c->dirty_ring_set) /* visor's own: only when given */
		jw_ku64(w, "dirty_ring_entries", c->dirty_ring);
	jw_close(w, '}');
}

static void w_balloon(struct jw *w, const struct balloon_config *b)
{
	jw_open(w, '{');
	jw_ku64(w, "amount_mib", b->size >> 20);
	jw_kbool(w, "deflate_on_oom", b->deflate_on_oom);
	jw_ku64(w, "stats_polling_interval_s", b->stats_period);
	jw_kbool(w, "free_page_hinting", false);
	jw_kbool(w, "free_page_reporting", !b->no_reporting);
	jw_close(w, '}');
}

static void w_drive(struct jw *w, const struct disk_config *dk)
{
	jw_open(w, '{');
	JW_KSTR(w, "drive_id", dk->id);
	if (dk->partuuid[0])
		JW_KSTR(w, "partuuid", dk->partuuid);
	jw_kbool(w, "is_root_device", dk->root);
	jw_kstr(w, "cache_type", dk->cache == DRIVE_CACHE_WRITEBACK ? "Writeback" : "Unsafe");
	jw_kbool(w, "is_read_only", dk->readonly);
	JW_KSTR(w, "path_on_host", dk->path);
	w_rate_limiter(w, "rate_limiter", &dk->rl);
	jw_kstr(w, "io_engine", dk->io_engine == DRIVE_IO_ASYNC ? "Async" : "Sync");
	jw_close(w, '}');
}

static void w_net(struct jw *w, const struct net_config *n)
{
	jw_open(w, '{');
	JW_KSTR(w, "iface_id", n->id);
	JW_KSTR(w, "host_dev_name", n->tap);
	if (n->mac[0])
		JW_KSTR(w, "guest_mac", n->mac);
	if (n->mtu)
		jw_ku64(w, "mtu", n->mtu);
	w_rate_limiter(w, "rx_rate_limiter", &n->rx_rl);
	w_rate_limiter(w, "tx_rate_limiter", &n->tx_rl);
	jw_close(w, '}');
}

static const char *level_name(const struct logger_config *l)
{
	if (l->off)
		return "Off";
	switch (l->level) {
	case LOG_DEBUG: return "Debug";
	case LOG_INFO: return "Info";
	case LOG_WARN: return "Warning";
	case LOG_ERROR: return "Error";
	}
	return "Info";
}

/* FullVmConfiguration.  Unconfigured singletons are omitted rather than
 * null (Firecracker writes null, which Swagger 2.0 has no way to allow);
 * the arrays are always there. */
static void w_full_config(struct jw *w, const struct vm_config *c)
{
	jw_open(w, '{');
	if (c->balloon.enabled) {
		jw_key(w, "balloon");
		w_balloon(w, &c->balloon);
	}
	jw_key(w, "drives");
	jw_open(w, '[');
	for (uint32_t i = 0; i < c->ndisks && i < CONFIG_MAX_DISKS; i++)
		w_drive(w, &c->disks[i]);
	jw_close(w, ']');
	if (c->kernel[0]) {
		jw_key(w, "boot-source");
		jw_open(w, '{');
		JW_KSTR(w, "kernel_image_path", c->kernel);
		if (c->initrd[0])
			JW_KSTR(w, "initrd_path", c->initrd);
		JW_KSTR(w, "boot_args", c->cmdline);
		jw_close(w, '}');
	}
	if (c->logger.set) {
		jw_key(w, "logger");
		jw_open(w, '{');
		if (c->logger.path[0])
			JW_KSTR(w, "log_path", c->logger.path);
		jw_kstr(w, "level", level_name(&c->logger));
		jw_kbool(w, "show_level", c->logger.show_level);
		jw_kbool(w, "show_log_origin", c->logger.show_origin);
		jw_close(w, '}');
	}
	jw_key(w, "machine-config");
	w_machine(w, c);
	if (c->metrics.set) {
		jw_key(w, "metrics");
		jw_open(w, '{');
		JW_KSTR(w, "metrics_path", c->metrics.path);
		jw_close(w, '}');
	}
	jw_key(w, "network-interfaces");
	jw_open(w, '[');
	for (uint32_t i = 0; i < c->nnics && i < CONFIG_MAX_NICS; i++)
		w_net(w, &c->nics[i]);
	jw_close(w, ']');
	if (c->vsock.enabled) {
		jw_key(w, "vsock");
		jw_open(w, '{');
		jw_ku64(w, "guest_cid", c->vsock.cid);
		JW_KSTR(w, "uds_path", c->vsock.uds);
		if (c->vsock.id[0])
			JW_KSTR(w, "vsock_id", c->vsock.id);
		jw_close(w, '}');
	}
	if (c->rng.enabled) {
		jw_key(w, "entropy");
		jw_open(w, '{');
		w_rate_limiter(w, "rate_limiter", &c->rng.rl);
		jw_close(w, '}');
	}
	jw_close(w, '}');
}

/* virtio 1.2 §5.5.6.3 tags 0-9, then Linux's (include/uapi/linux/virtio_balloon.h),
 * named as Firecracker's BalloonStats names them */
static const char *const stat_names[16] = {
	"swap_in",     "swap_out",         "major_faults", "minor_faults", "free_memory",   "total_memory",
	"available_memory", "disk_caches", "hugetlb_allocations", "hugetlb_failures", "oom_kill",
	"alloc_stall", "async_scan",       "direct_scan",  "async_reclaim", "direct_reclaim",
};

static void w_balloon_stats(struct jw *w, const struct balloon_stats_reply *s)
{
	jw_open(w, '{');
	jw_ku64(w, "target_pages", s->target_pages);
	jw_ku64(w, "actual_pages", s->actual_pages);
	jw_ku64(w, "target_mib", s->target_mib);
	jw_ku64(w, "actual_mib", s->actual_mib);
	for (unsigned i = 0; i < 16; i++)
		if (s->valid & (1u << i))
			jw_ku64(w, stat_names[i], s->val[i]);
	jw_close(w, '}');
}

/* GET /migration (docs/api.md, "Live migration"): every field of struct
 * mig_status; "url" and "error" only when there is one. */
static void w_mig_status(struct jw *w, const struct mig_status *s)
{
	jw_open(w, '{');
	jw_kstr(w, "state", fc_mig_state_name(s->state));
	jw_kbool(w, "incoming", s->incoming);
	jw_kstr(w, "mode", fc_mig_mode_name(s->mode));
	if (s->url[0])
		JW_KSTR(w, "url", s->url);
	jw_ku64(w, "pass", s->pass);
	jw_ku64(w, "bytes", s->bytes);
	jw_ku64(w, "pages_data", s->pages_data);
	jw_ku64(w, "pages_zero", s->pages_zero);
	jw_ku64(w, "remaining_bytes", s->remaining_bytes);
	jw_ku64(w, "mem_bytes", s->mem_bytes);
	jw_ku64(w, "dirty_rate_bps", s->dirty_rate);
	jw_ku64(w, "bandwidth_bps", s->bandwidth);
	jw_ku64(w, "expected_downtime_ms", s->expected_downtime_ms);
	jw_ku64(w, "downtime_limit_ms", s->downtime_limit_ms);
	jw_ku64(w, "throttle_pct", s->throttle_pct);
	jw_ku64(w, "elapsed_ms", s->elapsed_ms);
	jw_ku64(w, "downtime_ms", s->downtime_ms);
	jw_kstr(w, "dirty_log", s->dirty_log == MIG_DIRTY_RING     ? "ring"
				: s->dirty_log == MIG_DIRTY_BITMAP ? "bitmap"
								   : "none");
	jw_ku64(w, "dirty_ring_entries", s->dirty_ring_entries);
	jw_ku64(w, "dirty_ring_full_exits", s->dirty_ring_full_exits);
	if (s->error[0])
		JW_KSTR(w, "error", s->error);
	jw_close(w, '}');
}

/* InstanceInfo.state has three values; a guest that has stopped is
 * reported "Paused": it was started (pre-boot requests are refused) and it
 * does not run. */
static const char *state_name(enum vm_state s)
{
	switch (s) {
	case VM_NOT_STARTED: return "Not started";
	case VM_RUNNING: return "Running";
	case VM_PAUSED: return "Paused";
	case VM_STOPPED: return "Paused";
	}
	return "Not started";
}

char *fc_format_fault(const char *msg, size_t *len)
{
	struct jw w = {0};
	jw_open(&w, '{');
	jw_kstr(&w, "fault_message", msg ? msg : "");
	jw_close(&w, '}');
	return jw_finish(&w, len);
}

char *fc_format_reply(const struct vm_action *a, const struct vm_reply *r, size_t *len)
{
	*len = 0;
	if (r->status == 204)
		return NULL;
	if (r->status != 200) {
		struct jw w = {0};
		jw_open(&w, '{');
		JW_KSTR(&w, "fault_message", r->fault);
		jw_close(&w, '}');
		return jw_finish(&w, len);
	}
	struct jw w = {0};
	switch (a->kind) {
	case ACT_GET_INFO:
		jw_open(&w, '{');
		jw_kstr(&w, "app_name", FC_APP_NAME);
		JW_KSTR(&w, "id", r->id);
		jw_kstr(&w, "state", state_name(r->state));
		JW_KSTR(&w, "vmm_version", r->version);
		/* visor's extension (the schema allows extra properties):
		 * milliseconds since InstanceStart, 0 before */
		jw_ku64(&w, "uptime_ms", r->uptime_ms);
		jw_close(&w, '}');
		break;
	case ACT_GET_VERSION:
		jw_open(&w, '{');
		jw_kstr(&w, "firecracker_version", FC_API_VERSION);
		jw_close(&w, '}');
		break;
	case ACT_GET_VM_CONFIG: w_full_config(&w, &r->config); break;
	case ACT_GET_MACHINE_CONFIG: w_machine(&w, &r->config); break;
	case ACT_GET_BALLOON: w_balloon(&w, &r->config.balloon); break;
	case ACT_GET_BALLOON_STATS: w_balloon_stats(&w, &r->balloon); break;
	case ACT_MIGRATION_GET: w_mig_status(&w, &r->mig); break;
	default: return NULL;
	}
	return jw_finish(&w, len);
}
