/* SPDX-License-Identifier: MIT */
/*
 * aml.c - AML encoder; see aml.h for the model (marks, sticky errors).
 *
 * Encodings follow ACPI 6.4 chapter 20 ("ACPI Machine Language
 * Specification") and §6.4 (resource data types).
 */
#include "aml.h"

#include <errno.h>
#include <string.h>

#include "../../util/bytes.h"

void aml_init(struct aml *a, uint8_t *buf, size_t cap)
{
	a->buf = buf;
	a->cap = buf ? cap : 0;
	a->len = 0;
	a->err = 0;
}

static void set_err(struct aml *a, int err)
{
	if (!a->err)
		a->err = err;
}

/* Append n bytes.  While there is no error, len <= cap holds. */
static void emit(struct aml *a, const void *p, size_t n)
{
	if (!a->err) {
		if (n > a->cap - a->len)
			a->err = -ENOSPC;
		else if (n)
			memcpy(a->buf + a->len, p, n);
	}
	a->len += n;
}

/* Insert n bytes at offset at (<= len), moving what follows up. */
static void insert(struct aml *a, size_t at, const void *p, size_t n)
{
	if (!a->err) {
		if (at > a->len) {
			a->err = -EINVAL;
		} else if (n > a->cap - a->len) {
			a->err = -ENOSPC;
		} else {
			memmove(a->buf + at + n, a->buf + at, a->len - at);
			memcpy(a->buf + at, p, n);
		}
	}
	a->len += n;
}

int aml_pkglength_encode(size_t body_len, uint8_t out[4])
{
	/* The encoded value includes the PkgLength bytes: try 1..4 of them.
	 * One byte holds 6 bits; n > 1 bytes hold 4 + 8 * (n - 1) bits. */
	if (body_len + 1 <= 0x3f) {
		out[0] = (uint8_t)(body_len + 1);
		return 1;
	}
	for (int n = 2; n <= 4; n++) {
		size_t max = ((size_t)1 << (4 + 8 * (n - 1))) - 1;
		if (body_len > max - (size_t)n)
			continue;
		size_t total = body_len + (size_t)n;
		out[0] = (uint8_t)(((unsigned)(n - 1) << 6) | (total & 0x0f));
		for (int i = 1; i < n; i++)
			out[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
		return n;
	}
	return -E2BIG;
}

/* Close a PkgLength-prefixed object whose body started at mark. */
static int pkg_end(struct aml *a, size_t mark)
{
	uint8_t pl[4];
	if (mark > a->len) {
		set_err(a, -EINVAL);
		return a->err;
	}
	int n = aml_pkglength_encode(a->len - mark, pl);
	if (n < 0) {
		set_err(a, n);
		return a->err;
	}
	insert(a, mark, pl, (size_t)n);
	return a->err;
}

int aml_raw(struct aml *a, const void *data, size_t len)
{
	if (len && !data)
		set_err(a, -EINVAL);
	else
		emit(a, data, len);
	return a->err;
}

int aml_byte(struct aml *a, uint8_t b)
{
	emit(a, &b, 1);
	return a->err;
}

static bool seg_lead_char(char c)
{
	return (c >= 'A' && c <= 'Z') || c == '_';
}

static bool seg_char(char c)
{
	return seg_lead_char(c) || (c >= '0' && c <= '9');
}

int aml_namestring(struct aml *a, const char *path)
{
	if (!path) {
		set_err(a, -EINVAL);
		return a->err;
	}
	/* Validate first so nothing partial is emitted. */
	const char *p = path;
	if (*p == '\\')
		p++;
	else
		while (*p == '^')
			p++;
	size_t prefix_len = (size_t)(p - path);
	const char *segs = p;
	size_t nseg = 0;
	while (*p) {
		size_t n = 0;
		if (!seg_lead_char(*p)) {
			set_err(a, -EINVAL);
			return a->err;
		}
		while (seg_char(*p) && n < 4) {
			p++;
			n++;
		}
		nseg++;
		if (*p == '.' && p[1])
			p++;
		else if (*p) {
			set_err(a, -EINVAL);
			return a->err;
		}
	}
	if (nseg > 255) {
		set_err(a, -EINVAL);
		return a->err;
	}

	emit(a, path, prefix_len);
	if (nseg == 0) {
		aml_byte(a, 0x00); /* NullName */
	} else if (nseg == 2) {
		aml_byte(a, AML_DUAL_NAME_PREFIX);
	} else if (nseg > 2) {
		aml_byte(a, AML_MULTI_NAME_PREFIX);
		aml_byte(a, (uint8_t)nseg);
	}
	p = segs;
	for (size_t i = 0; i < nseg; i++) {
		char seg[4] = {'_', '_', '_', '_'};
		for (size_t n = 0; n < 4 && *p && *p != '.'; n++)
			seg[n] = *p++;
		if (*p == '.')
			p++;
		emit(a, seg, 4);
	}
	return a->err;
}

/* Shortest integer encoding of v into out; returns its length (1..9). */
static size_t integer_encode(uint64_t v, uint8_t out[9])
{
	if (v == 0) {
		out[0] = AML_ZERO_OP;
		return 1;
	}
	if (v == 1) {
		out[0] = AML_ONE_OP;
		return 1;
	}
	size_t n;
	if (v <= 0xff) {
		out[0] = AML_BYTE_PREFIX;
		n = 1;
	} else if (v <= 0xffff) {
		out[0] = AML_WORD_PREFIX;
		n = 2;
	} else if (v <= 0xffffffffu) {
		out[0] = AML_DWORD_PREFIX;
		n = 4;
	} else {
		out[0] = AML_QWORD_PREFIX;
		n = 8;
	}
	put_le(out + 1, v, n);
	return n + 1;
}

int aml_integer(struct aml *a, uint64_t v)
{
	uint8_t b[9];
	emit(a, b, integer_encode(v, b));
	return a->err;
}

static int fixed_const(struct aml *a, uint8_t prefix, uint64_t v, size_t n)
{
	uint8_t b[9];
	b[0] = prefix;
	put_le(b + 1, v, n);
	emit(a, b, n + 1);
	return a->err;
}

int aml_byte_const(struct aml *a, uint8_t v)
{
	return fixed_const(a, AML_BYTE_PREFIX, v, 1);
}

int aml_word_const(struct aml *a, uint16_t v)
{
	return fixed_const(a, AML_WORD_PREFIX, v, 2);
}

int aml_dword_const(struct aml *a, uint32_t v)
{
	return fixed_const(a, AML_DWORD_PREFIX, v, 4);
}

int aml_qword_const(struct aml *a, uint64_t v)
{
	return fixed_const(a, AML_QWORD_PREFIX, v, 8);
}

int aml_string(struct aml *a, const char *s)
{
	if (!s) {
		set_err(a, -EINVAL);
		return a->err;
	}
	size_t n = strlen(s);
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)s[i] > 0x7f) {
			set_err(a, -EINVAL);
			return a->err;
		}
	}
	aml_byte(a, AML_STRING_PREFIX);
	emit(a, s, n + 1); /* with the NullChar */
	return a->err;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int aml_eisaid_value(const char *id, uint32_t *out)
{
	if (!id || !out || strlen(id) != 7)
		return -EINVAL;
	unsigned c[3];
	int h[4];
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z')
			return -EINVAL;
		c[i] = (unsigned)(id[i] - 0x40); /* 'A' = 1 .. 'Z' = 26, 5 bits */
	}
	for (int i = 0; i < 4; i++) {
		h[i] = hex_digit(id[3 + i]);
		if (h[i] < 0)
			return -EINVAL;
	}
	uint32_t b0 = (c[0] << 2) | (c[1] >> 3);
	uint32_t b1 = ((c[1] & 7) << 5) | c[2];
	uint32_t b2 = (uint32_t)(h[0] << 4 | h[1]);
	uint32_t b3 = (uint32_t)(h[2] << 4 | h[3]);
	*out = b0 | b1 << 8 | b2 << 16 | b3 << 24;
	return 0;
}

int aml_eisaid(struct aml *a, const char *id)
{
	uint32_t v;
	int err = aml_eisaid_value(id, &v);
	if (err) {
		set_err(a, err);
		return a->err;
	}
	return aml_dword_const(a, v);
}

int aml_name_decl(struct aml *a, const char *path)
{
	aml_byte(a, AML_NAME_OP);
	return aml_namestring(a, path);
}

int aml_name_integer(struct aml *a, const char *path, uint64_t v)
{
	aml_name_decl(a, path);
	return aml_integer(a, v);
}

int aml_name_string(struct aml *a, const char *path, const char *s)
{
	aml_name_decl(a, path);
	return aml_string(a, s);
}

int aml_name_eisaid(struct aml *a, const char *path, const char *id)
{
	aml_name_decl(a, path);
	return aml_eisaid(a, id);
}

/* DefScope := ScopeOp PkgLength NameString TermList (§20.2.5.1) */
size_t aml_scope_begin(struct aml *a, const char *path)
{
	aml_byte(a, AML_SCOPE_OP);
	size_t mark = a->len;
	aml_namestring(a, path);
	return mark;
}

int aml_scope_end(struct aml *a, size_t mark)
{
	return pkg_end(a, mark);
}

/* DefDevice := DeviceOp(0x5b 0x82) PkgLength NameString TermList (§20.2.5.2) */
size_t aml_device_begin(struct aml *a, const char *path)
{
	aml_byte(a, AML_EXT_OP_PREFIX);
	aml_byte(a, AML_DEVICE_OP);
	size_t mark = a->len;
	aml_namestring(a, path);
	return mark;
}

int aml_device_end(struct aml *a, size_t mark)
{
	return pkg_end(a, mark);
}

/*
 * DefMethod := MethodOp PkgLength NameString MethodFlags TermList
 * (§20.2.5.2).  MethodFlags: [2:0] ArgCount, [3] SerializeFlag,
 * [7:4] SyncLevel.
 */
size_t aml_method_begin(struct aml *a, const char *path, unsigned nargs, bool serialized)
{
	aml_byte(a, AML_METHOD_OP);
	size_t mark = a->len;
	aml_namestring(a, path);
	if (nargs > 7)
		set_err(a, -EINVAL);
	aml_byte(a, (uint8_t)((nargs & 7) | (serialized ? 1u << 3 : 0)));
	return mark;
}

int aml_method_end(struct aml *a, size_t mark)
{
	return pkg_end(a, mark);
}

/* DefReturn := ReturnOp ArgObject (§20.2.5.3) */
int aml_return(struct aml *a)
{
	return aml_byte(a, AML_RETURN_OP);
}

int aml_method_return_integer(struct aml *a, const char *path, uint64_t v)
{
	size_t m = aml_method_begin(a, path, 0, false);
	aml_return(a);
	aml_integer(a, v);
	return aml_method_end(a, m);
}

int aml_notify(struct aml *a, const char *path, uint64_t value)
{
	aml_byte(a, AML_NOTIFY_OP);
	aml_namestring(a, path);
	return aml_integer(a, value);
}

/* DefPackage := PackageOp PkgLength NumElements(byte) PackageElementList
 * (§20.2.5.4) */
size_t aml_package_begin(struct aml *a)
{
	aml_byte(a, AML_PACKAGE_OP);
	return a->len;
}

int aml_package_end(struct aml *a, size_t mark, unsigned nelem)
{
	if (nelem > 255) {
		set_err(a, -E2BIG);
		return a->err;
	}
	uint8_t n = (uint8_t)nelem;
	if (mark > a->len) {
		set_err(a, -EINVAL);
		return a->err;
	}
	insert(a, mark, &n, 1);
	return pkg_end(a, mark);
}

/* DefBuffer := BufferOp PkgLength BufferSize(TermArg) ByteList
 * (§20.2.5.4) */
size_t aml_buffer_begin(struct aml *a)
{
	aml_byte(a, AML_BUFFER_OP);
	return a->len;
}

int aml_buffer_end(struct aml *a, size_t mark)
{
	uint8_t b[9];
	if (mark > a->len) {
		set_err(a, -EINVAL);
		return a->err;
	}
	insert(a, mark, b, integer_encode(a->len - mark, b));
	return pkg_end(a, mark);
}

int aml_buffer(struct aml *a, const void *data, size_t len)
{
	size_t m = aml_buffer_begin(a);
	aml_raw(a, data, len);
	return aml_buffer_end(a, m);
}

size_t aml_restemplate_begin(struct aml *a)
{
	return aml_buffer_begin(a);
}

/* End Tag, §6.4.2.9: 0x79 | checksum.  The checksum makes the bytes of
 * every descriptor plus the End Tag sum to zero (mod 256). */
int aml_restemplate_end(struct aml *a, size_t mark)
{
	uint8_t end[2] = {0x79, 0};
	if (mark > a->len) {
		set_err(a, -EINVAL);
		return a->err;
	}
	if (!a->err) {
		/* The descriptors' checksum, less the End Tag's own first byte. */
		uint8_t ck = a->len > mark ? checksum8(a->buf + mark, a->len - mark) : 0;
		end[1] = (uint8_t)(ck - end[0]);
	}
	emit(a, end, sizeof(end));
	return aml_buffer_end(a, mark);
}

int aml_res_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len)
{
	uint8_t d[8] = {0x47, 0x01};
	put_le(d + 2, min, 2);
	put_le(d + 4, max, 2);
	d[6] = align;
	d[7] = len;
	emit(a, d, sizeof(d));
	return a->err;
}

int aml_res_irq_noflags(struct aml *a, unsigned irq)
{
	if (irq > 15) {
		set_err(a, -EINVAL);
		return a->err;
	}
	uint8_t d[3] = {0x22};
	put_le(d + 1, 1u << irq, 2);
	emit(a, d, sizeof(d));
	return a->err;
}

int aml_res_memory32_fixed(struct aml *a, uint32_t base, uint32_t len, bool writable)
{
	uint8_t d[12] = {0x86, 9, 0, writable ? 1 : 0};
	put_le(d + 4, base, 4);
	put_le(d + 8, len, 4);
	emit(a, d, sizeof(d));
	return a->err;
}

int aml_res_interrupt(struct aml *a, uint8_t flags, uint32_t gsi)
{
	uint8_t d[9] = {0x89, 6, 0, flags, 1};
	put_le(d + 5, gsi, 4);
	emit(a, d, sizeof(d));
	return a->err;
}

/* Common body of the three address space descriptors; w = field width. */
static int addr_space(struct aml *a, uint8_t tag, size_t w, const struct aml_addr_space *s)
{
	uint8_t d[3 + 3 + 5 * 8];
	if (!s) {
		set_err(a, -EINVAL);
		return a->err;
	}
	uint64_t lim = w == 8 ? UINT64_MAX : (1ULL << (8 * w)) - 1;
	if (s->granularity > lim || s->min > lim || s->max > lim || s->translation > lim ||
	    s->length > lim) {
		set_err(a, -EINVAL);
		return a->err;
	}
	size_t body = 3 + 5 * w;
	d[0] = tag;
	put_le(d + 1, body, 2);
	d[3] = s->type;
	d[4] = s->gen_flags;
	d[5] = s->type_flags;
	put_le(d + 6 + 0 * w, s->granularity, w);
	put_le(d + 6 + 1 * w, s->min, w);
	put_le(d + 6 + 2 * w, s->max, w);
	put_le(d + 6 + 3 * w, s->translation, w);
	put_le(d + 6 + 4 * w, s->length, w);
	emit(a, d, 3 + body);
	return a->err;
}

int aml_res_word_addr(struct aml *a, const struct aml_addr_space *s)
{
	return addr_space(a, 0x88, 2, s);
}

int aml_res_dword_addr(struct aml *a, const struct aml_addr_space *s)
{
	return addr_space(a, 0x87, 4, s);
}

int aml_res_qword_addr(struct aml *a, const struct aml_addr_space *s)
{
	return addr_space(a, 0x8a, 8, s);
}

/* A producer window [min, max]; -EINVAL if empty or the length overflows. */
static int window(struct aml *a, uint8_t tag, size_t w, uint8_t type, uint8_t tflags,
		  uint64_t min, uint64_t max)
{
	if (max < min || (min == 0 && max == UINT64_MAX)) {
		set_err(a, -EINVAL);
		return a->err;
	}
	struct aml_addr_space s = {
		.type = type,
		.gen_flags = AML_ADDR_MIN_FIXED | AML_ADDR_MAX_FIXED,
		.type_flags = tflags,
		.min = min,
		.max = max,
		.length = max - min + 1,
	};
	return addr_space(a, tag, w, &s);
}

int aml_res_word_bus_number(struct aml *a, uint16_t min, uint16_t max)
{
	return window(a, 0x88, 2, AML_RES_TYPE_BUS, 0, min, max);
}

int aml_res_dword_io(struct aml *a, uint32_t min, uint32_t max)
{
	return window(a, 0x87, 4, AML_RES_TYPE_IO, AML_IO_ENTIRE_RANGE, min, max);
}

int aml_res_dword_memory(struct aml *a, uint8_t cache, uint32_t min, uint32_t max)
{
	return window(a, 0x87, 4, AML_RES_TYPE_MEMORY, (uint8_t)((cache & 6) | AML_MEM_RW), min,
		      max);
}

int aml_res_qword_memory(struct aml *a, uint8_t cache, uint64_t min, uint64_t max)
{
	return window(a, 0x8a, 8, AML_RES_TYPE_MEMORY, (uint8_t)((cache & 6) | AML_MEM_RW), min,
		      max);
}
