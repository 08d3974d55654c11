/* SPDX-License-Identifier: MIT */
/*
 * ACPI tables and the AML encoder, checked by parsing the output back the
 * way a guest does: RSDP -> XSDT -> FADT/MADT -> DSDT/FACS, and a small AML
 * decoder that walks the DSDT's term list.
 */
#include "../../src/arch/x86/acpi.h"
#include "../../src/arch/x86/aml.h"
#include "../../src/arch/x86/layout.h"

#include <errno.h>
#include <stdbool.h>

#include "le_read.h"
#include "test.h"

#define BIG 0x20000

/* A built image at guest address gpa, with guest-address translation. */
struct image {
	uint8_t buf[BIG];
	int len;
	uint64_t gpa;
	uint64_t rsdp;
};

/* Pointer to len bytes at guest address a inside the image, or NULL. */
static const uint8_t *at(const struct image *im, uint64_t a, size_t len)
{
	if (a < im->gpa || im->len < 0 || a - im->gpa > (uint64_t)im->len ||
	    len > (uint64_t)im->len - (a - im->gpa))
		return NULL;
	return im->buf + (a - im->gpa);
}

/* A whole table (header length) at guest address a, or NULL. */
static const uint8_t *table_at(const struct image *im, uint64_t a)
{
	const uint8_t *h = at(im, a, 36);
	if (!h)
		return NULL;
	return at(im, a, rd32(h + 4));
}

static int build(struct image *im, uint32_t ncpus, const uint8_t *extra, size_t extra_len)
{
	/* the VM generation ID as the machine describes it */
	struct acpi_config cfg = {.ncpus = ncpus,
				  .sb_extra_aml = extra,
				  .sb_extra_aml_len = extra_len,
				  .vmgenid_gpa = GPA_VMGENID};
	if (!im->gpa)
		im->gpa = GPA_ACPI_TABLES;
	im->rsdp = 0;
	im->len = acpi_build(im->buf, sizeof(im->buf), im->gpa, &cfg, &im->rsdp);
	return im->len;
}

/* Find a table by signature through RSDP -> XSDT, as the guest does. */
static const uint8_t *find_table(const struct image *im, const char *sig)
{
	const uint8_t *rsdp = at(im, im->rsdp, 36);
	if (!rsdp)
		return NULL;
	const uint8_t *xsdt = table_at(im, rd64(rsdp + 24));
	if (!xsdt)
		return NULL;
	uint32_t n = (rd32(xsdt + 4) - 36) / 8;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *t = table_at(im, rd64(xsdt + 36 + 8 * i));
		if (t && !memcmp(t, sig, 4))
			return t;
	}
	return NULL;
}

static void check_header(const uint8_t *t, const char *sig)
{
	CHECK(t != NULL);
	if (!t)
		return;
	CHECK(!memcmp(t, sig, 4));
	CHECK(rd32(t + 4) >= 36);
	CHECK_EQ(sum8(t, rd32(t + 4)), 0);
	CHECK(!memcmp(t + 10, "VISOR ", 6));
	CHECK(!memcmp(t + 16, "VISORVM ", 8));
	CHECK(!memcmp(t + 28, ACPI_CREATOR_ID, 4));
}

/* ---------------------------------------------------------------------------
 * A small AML decoder for the subset visor emits: Scope, Device, Name,
 * Method, and data objects (integers, strings, buffers, packages).
 */
enum obj_kind { O_SCOPE, O_DEVICE, O_INT, O_STR, O_BUF, O_PKG, O_METHOD };

struct obj {
	char path[64];
	enum obj_kind kind;
	uint64_t ival;
	char str[32];
	const uint8_t *data; /* buffer bytes / method body after the flags */
	size_t dlen;
	unsigned nelem;
	uint64_t elem[8];
	uint8_t mflags;
};

struct dec {
	const uint8_t *p;
	size_t pos;
	int bad_line; /* decoder line that rejected the input, 0 if none */
	struct obj objs[512];
	int nobj;
};

#define DFAIL(d)                                  \
	do {                                      \
		if (!(d)->bad_line)               \
			(d)->bad_line = __LINE__; \
		return false;                     \
	} while (0)

static bool dec_pkglen(struct dec *d, size_t limit, size_t *end)
{
	size_t start = d->pos;
	if (d->pos >= limit)
		DFAIL(d);
	uint8_t lead = d->p[d->pos++];
	unsigned n = lead >> 6;
	size_t v;
	if (n == 0) {
		v = lead & 0x3f;
	} else {
		if (lead & 0x30)
			DFAIL(d);
		v = lead & 0x0f;
		for (unsigned i = 0; i < n; i++) {
			if (d->pos >= limit)
				DFAIL(d);
			v |= (size_t)d->p[d->pos++] << (4 + 8 * i);
		}
	}
	if (v < n + 1 || v > limit - start)
		DFAIL(d);
	*end = start + v;
	return true;
}

static bool name_char(uint8_t c, bool lead)
{
	return (c >= 'A' && c <= 'Z') || c == '_' || (!lead && c >= '0' && c <= '9');
}

/* Decode a NameString and resolve it against scope into out. */
static bool dec_name(struct dec *d, size_t limit, const char *scope, char *out, size_t outsz)
{
	char base[64];
	snprintf(base, sizeof(base), "%s", scope);
	if (d->pos < limit && d->p[d->pos] == '\\') {
		strcpy(base, "\\");
		d->pos++;
	} else {
		while (d->pos < limit && d->p[d->pos] == '^') {
			char *dot = strrchr(base, '.');
			if (dot)
				*dot = 0;
			else
				strcpy(base, "\\");
			d->pos++;
		}
	}
	if (d->pos >= limit)
		DFAIL(d);
	unsigned count;
	uint8_t c = d->p[d->pos];
	if (c == 0x00) {
		d->pos++;
		count = 0;
	} else if (c == 0x2e) {
		d->pos++;
		count = 2;
	} else if (c == 0x2f) {
		d->pos++;
		if (d->pos >= limit)
			DFAIL(d);
		count = d->p[d->pos++];
	} else {
		count = 1;
	}
	if (count > 8)
		DFAIL(d);
	for (unsigned i = 0; i < count; i++) {
		if (limit - d->pos < 4)
			DFAIL(d);
		for (int k = 0; k < 4; k++)
			if (!name_char(d->p[d->pos + k], k == 0))
				DFAIL(d);
		size_t bl = strlen(base);
		if (bl + 6 > sizeof(base))
			DFAIL(d);
		if (strcmp(base, "\\"))
			base[bl++] = '.';
		memcpy(base + bl, d->p + d->pos, 4);
		base[bl + 4] = 0;
		d->pos += 4;
	}
	snprintf(out, outsz, "%s", base);
	return true;
}

static bool dec_data(struct dec *d, size_t limit, struct obj *o);

static bool dec_int(struct dec *d, size_t limit, uint64_t *v)
{
	struct obj o;
	if (!dec_data(d, limit, &o) || o.kind != O_INT)
		DFAIL(d);
	*v = o.ival;
	return true;
}

static bool dec_data(struct dec *d, size_t limit, struct obj *o)
{
	if (d->pos >= limit)
		DFAIL(d);
	uint8_t op = d->p[d->pos++];
	size_t n = 0, end;
	o->kind = O_INT;
	switch (op) {
	case 0x00:
		o->ival = 0;
		return true;
	case 0x01:
		o->ival = 1;
		return true;
	case 0x0a:
		n = 1;
		break;
	case 0x0b:
		n = 2;
		break;
	case 0x0c:
		n = 4;
		break;
	case 0x0e:
		n = 8;
		break;
	case 0x0d: {
		o->kind = O_STR;
		size_t i = 0;
		while (d->pos < limit && d->p[d->pos]) {
			if (i + 1 < sizeof(o->str))
				o->str[i++] = (char)d->p[d->pos];
			d->pos++;
		}
		o->str[i] = 0;
		if (d->pos >= limit)
			DFAIL(d);
		d->pos++; /* NullChar */
		return true;
	}
	case 0x11: {
		uint64_t size;
		o->kind = O_BUF;
		if (!dec_pkglen(d, limit, &end) || !dec_int(d, end, &size))
			DFAIL(d);
		o->data = d->p + d->pos;
		o->dlen = end - d->pos;
		if (size != o->dlen)
			DFAIL(d);
		d->pos = end;
		return true;
	}
	case 0x12: {
		o->kind = O_PKG;
		if (!dec_pkglen(d, limit, &end) || d->pos >= end)
			DFAIL(d);
		unsigned num = d->p[d->pos++];
		o->nelem = 0;
		while (d->pos < end) {
			struct obj e;
			if (!dec_data(d, end, &e))
				DFAIL(d);
			if (o->nelem < 8)
				o->elem[o->nelem] = e.kind == O_INT ? e.ival : ~0ULL;
			o->nelem++;
		}
		if (o->nelem != num)
			DFAIL(d);
		return true;
	}
	default:
		DFAIL(d);
	}
	if (limit - d->pos < n)
		DFAIL(d);
	o->ival = 0;
	for (size_t i = 0; i < n; i++)
		o->ival |= (uint64_t)d->p[d->pos + i] << (8 * i);
	d->pos += n;
	return true;
}

static struct obj *dec_new(struct dec *d, const char *path, enum obj_kind kind)
{
	if (d->nobj >= (int)(sizeof(d->objs) / sizeof(d->objs[0])))
		return NULL;
	struct obj *o = &d->objs[d->nobj++];
	memset(o, 0, sizeof(*o));
	snprintf(o->path, sizeof(o->path), "%s", path);
	o->kind = kind;
	return o;
}

static bool dec_terms(struct dec *d, size_t end, const char *scope)
{
	while (d->pos < end) {
		uint8_t op = d->p[d->pos++];
		char path[64];
		size_t body_end;
		struct obj *o;
		if (op == 0x10 || (op == 0x5b && d->pos < end && d->p[d->pos] == 0x82)) {
			if (op == 0x5b)
				d->pos++;
			if (!dec_pkglen(d, end, &body_end) ||
			    !dec_name(d, body_end, scope, path, sizeof(path)))
				DFAIL(d);
			if (!(o = dec_new(d, path, op == 0x10 ? O_SCOPE : O_DEVICE)))
				DFAIL(d);
			if (!dec_terms(d, body_end, path))
				DFAIL(d);
		} else if (op == 0x08) {
			if (!dec_name(d, end, scope, path, sizeof(path)) ||
			    !(o = dec_new(d, path, O_INT)) || !dec_data(d, end, o))
				DFAIL(d);
			snprintf(o->path, sizeof(o->path), "%s", path);
		} else if (op == 0x14) {
			if (!dec_pkglen(d, end, &body_end) ||
			    !dec_name(d, body_end, scope, path, sizeof(path)) ||
			    d->pos >= body_end || !(o = dec_new(d, path, O_METHOD)))
				DFAIL(d);
			o->mflags = d->p[d->pos++];
			o->data = d->p + d->pos;
			o->dlen = body_end - d->pos;
			d->pos = body_end;
		} else {
			DFAIL(d);
		}
	}
	if (d->pos != end)
		DFAIL(d);
	return true;
}

static bool dec_aml(struct dec *d, const uint8_t *aml, size_t len)
{
	memset(d, 0, sizeof(*d));
	d->p = aml;
	return dec_terms(d, len, "\\");
}

static const struct obj *find(const struct dec *d, const char *path)
{
	for (int i = 0; i < d->nobj; i++)
		if (!strcmp(d->objs[i].path, path))
			return &d->objs[i];
	return NULL;
}

/* Resource template contents (ACPI 6.4 §6.4). */
struct res {
	unsigned nio;
	uint16_t io_min[4], io_max[4];
	uint8_t io_len[4];
	unsigned nirq;
	uint16_t irq_mask;
	unsigned nmem32;
	uint32_t mem32_base, mem32_len;
	unsigned nextirq;
	uint8_t extirq_flags;
	uint32_t extirq;
	unsigned naddr;
	uint8_t addr_tag[4];
};

static bool dec_res(const uint8_t *b, size_t n, struct res *r)
{
	memset(r, 0, sizeof(*r));
	size_t i = 0;
	while (i < n) {
		uint8_t tag = b[i];
		if (tag & 0x80) {
			if (n - i < 3)
				return false;
			size_t len = rd16(b + i + 1);
			const uint8_t *body = b + i + 3;
			if (n - i - 3 < len)
				return false;
			if (tag == 0x86 && len == 9) {
				r->nmem32++;
				r->mem32_base = rd32(body + 1);
				r->mem32_len = rd32(body + 5);
			} else if (tag == 0x89 && len >= 6) {
				r->nextirq++;
				r->extirq_flags = body[0];
				if (body[1] != 1)
					return false;
				r->extirq = rd32(body + 2);
			} else if ((tag == 0x87 && len == 23) || (tag == 0x88 && len == 13) ||
				   (tag == 0x8a && len == 43)) {
				if (r->naddr < 4)
					r->addr_tag[r->naddr] = tag;
				r->naddr++;
			} else {
				return false;
			}
			i += 3 + len;
		} else {
			unsigned type = (tag >> 3) & 0xf, len = tag & 7;
			if (n - i < 1 + len)
				return false;
			if (type == 0xf) /* End Tag: last, and the template sums to 0 */
				return len == 1 && i + 2 == n && sum8(b, n) == 0;
			if (type == 0x8 && len == 7) {
				if (r->nio < 4) {
					CHECK_EQ(b[i + 1], 1); /* Decode16 */
					r->io_min[r->nio] = rd16(b + i + 2);
					r->io_max[r->nio] = rd16(b + i + 4);
					r->io_len[r->nio] = b[i + 7];
				}
				r->nio++;
			} else if (type == 0x4 && len == 2) {
				r->nirq++;
				r->irq_mask = rd16(b + i + 1);
			} else {
				return false;
			}
			i += 1 + len;
		}
	}
	return false; /* no End Tag */
}

/* ---------------------------------------------------------------------------
 * AML encoder
 */

static bool bytes_are(const struct aml *a, const uint8_t *want, size_t n)
{
	if (a->err || a->len != n) {
		printf("  got err %d len %zu, want len %zu\n", a->err, a->len, n);
		return false;
	}
	if (memcmp(a->buf, want, n)) {
		printf("  got:");
		for (size_t i = 0; i < a->len; i++)
			printf(" %02x", a->buf[i]);
		printf("\n");
		return false;
	}
	return true;
}

#define EXPECT_BYTES(a, ...)                                              \
	do {                                                              \
		static const uint8_t want_[] = {__VA_ARGS__};             \
		CHECK(bytes_are((a), want_, sizeof(want_)));              \
	} while (0)

/* Decode a PkgLength as a guest does; returns its byte count. */
static int pkglen_decode(const uint8_t *b, size_t *total)
{
	unsigned n = b[0] >> 6;
	if (n == 0) {
		*total = b[0] & 0x3f;
		return 1;
	}
	*total = b[0] & 0x0f;
	for (unsigned i = 0; i < n; i++)
		*total |= (size_t)b[1 + i] << (4 + 8 * i);
	return (int)n + 1;
}

TEST(aml_pkglength_boundaries)
{
	uint8_t b[4];
	/* total (body + PkgLength bytes) 63 is the largest one-byte form */
	CHECK_EQ(aml_pkglength_encode(0, b), 1);
	CHECK_EQ(b[0], 1);
	CHECK_EQ(aml_pkglength_encode(62, b), 1);
	CHECK_EQ(b[0], 0x3f);
	/* body 63: one byte would say 64 -> two bytes, total 65 */
	CHECK_EQ(aml_pkglength_encode(63, b), 2);
	CHECK_EQ(b[0], 0x41);
	CHECK_EQ(b[1], 0x04);
	/* total 4095 (0xfff) is the largest two-byte form */
	CHECK_EQ(aml_pkglength_encode(4093, b), 2);
	CHECK_EQ(b[0], 0x4f);
	CHECK_EQ(b[1], 0xff);
	/* total 4096 would need 3 bytes -> 4097 */
	CHECK_EQ(aml_pkglength_encode(4094, b), 3);
	CHECK_EQ(b[0], 0x81);
	CHECK_EQ(b[1], 0x00);
	CHECK_EQ(b[2], 0x01);
	CHECK_EQ(aml_pkglength_encode(0xffffc, b), 3); /* total 0xfffff */
	CHECK_EQ(b[0], 0x8f);
	CHECK_EQ(b[1], 0xff);
	CHECK_EQ(b[2], 0xff);
	CHECK_EQ(aml_pkglength_encode(0xffffd, b), 4); /* total 0x100001 */
	CHECK_EQ(b[0], 0xc1);
	CHECK_EQ(b[1], 0x00);
	CHECK_EQ(b[2], 0x00);
	CHECK_EQ(b[3], 0x01);
	CHECK_EQ(aml_pkglength_encode(AML_PKGLENGTH_MAX - 4, b), 4);
	CHECK_EQ(b[0], 0xcf);
	CHECK_EQ(b[3], 0xff);
	CHECK_EQ(aml_pkglength_encode(AML_PKGLENGTH_MAX - 3, b), -E2BIG);
}

TEST(aml_pkglength_roundtrip_minimal)
{
	for (size_t body = 0; body < 0x12000; body++) {
		uint8_t b[4];
		size_t total;
		int n = aml_pkglength_encode(body, b);
		int m = pkglen_decode(b, &total);
		if (n != m || total != body + (size_t)n || (b[0] >> 6 && (b[0] & 0x30))) {
			CHECK_EQ(body, ~0ULL);
			break;
		}
		/* minimal: the next shorter form could not hold the total */
		if (n == 2 && body + 1 <= 0x3f)
			CHECK_EQ(body, ~0ULL);
		if (n == 3 && body + 2 <= 0xfff)
			CHECK_EQ(body, ~0ULL);
	}
}

TEST(aml_pkglength_in_objects)
{
	/* Buffer whose body (BufferSize + bytes) makes totals 63 and 64. */
	static uint8_t data[5000];
	uint8_t out[6000];
	struct aml a;
	/* Buffer body = BufferSize (2 bytes below 256, 3 above) + n: the
	 * PkgLength grows at n = 61 (total 64) and n = 4091 (total 4096). */
	static const size_t sizes[] = {0, 1, 59, 60, 61, 62, 200, 255, 256, 4089, 4090, 4091, 4092,
				       4999};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t n = sizes[i];
		aml_init(&a, out, sizeof(out));
		CHECK_EQ(aml_buffer(&a, data, n), 0);
		size_t body = (n < 2 ? 1 : n < 256 ? 2 : 3) + n;
		size_t pl = body + 1 <= 63 ? 1 : body + 2 <= 4095 ? 2 : 3;
		CHECK_EQ(a.len, 1 + pl + body);
		static struct dec d;
		memset(&d, 0, sizeof(d));
		d.p = out;
		struct obj o;
		CHECK(dec_data(&d, a.len, &o));
		CHECK_EQ(o.kind, O_BUF);
		CHECK_EQ(o.dlen, n);
		CHECK_EQ(d.pos, a.len);
	}
	/* nested blocks: a device holding a 100-byte buffer */
	aml_init(&a, out, sizeof(out));
	size_t sc = aml_scope_begin(&a, "\\_SB");
	size_t dv = aml_device_begin(&a, "DEV0");
	aml_name_decl(&a, "BUF0");
	aml_buffer(&a, data, 100);
	aml_device_end(&a, dv);
	aml_scope_end(&a, sc);
	CHECK_EQ(a.err, 0);
	static struct dec d;
	CHECK(dec_aml(&d, out, a.len));
	CHECK_EQ(d.bad_line, 0);
	const struct obj *o = find(&d, "\\_SB_.DEV0.BUF0");
	CHECK(o && o->kind == O_BUF && o->dlen == 100);
}

TEST(aml_integer_prefixes)
{
	uint8_t out[16];
	struct aml a;
	aml_init(&a, out, sizeof(out));
	aml_integer(&a, 0);
	EXPECT_BYTES(&a, 0x00);
	aml_init(&a, out, sizeof(out));
	aml_integer(&a, 1);
	EXPECT_BYTES(&a, 0x01);
	aml_init(&a, out, sizeof(out));
	aml_integer(&a, 2);
	EXPECT_BYTES(&a, 0x0a, 0x02);
	aml_init(&a, out, sizeof(out));
	aml_integer(&a, 0xff);
	EXPECT_BYTES(&a, 0x0a, 0xff);
	aml_init(&a, out, sizeof(out));
	aml_integer(&a, 0x100);
	EXPECT_BYTES(&a, 0x0b, 0x00, 0x01);
	aml_init(&a, out, sizeof(out));
	aml_integer(&a, 0xffff);
	EXPECT_BYTES(&a, 0x0b, 0xff, 0xff);
	aml_init(&a, out, sizeof(out));
	aml_integer(&a, 0x10000);
	EXPECT_BYTES(&a, 0x0c, 0x00, 0x00, 0x01, 0x00);
	aml_init(&a, out, sizeof(out));
	aml_integer(&a, 0xffffffff);
	EXPECT_BYTES(&a, 0x0c, 0xff, 0xff, 0xff, 0xff);
	aml_init(&a, out, sizeof(out));
	aml_integer(&a, 0x100000000ULL);
	EXPECT_BYTES(&a, 0x0e, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00);
	aml_init(&a, out, sizeof(out));
	aml_integer(&a, UINT64_MAX);
	EXPECT_BYTES(&a, 0x0e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
	/* fixed widths */
	aml_init(&a, out, sizeof(out));
	aml_byte_const(&a, 0);
	aml_word_const(&a, 1);
	aml_dword_const(&a, 0x12345678);
	EXPECT_BYTES(&a, 0x0a, 0x00, 0x0b, 0x01, 0x00, 0x0c, 0x78, 0x56, 0x34, 0x12);
	aml_init(&a, out, sizeof(out));
	aml_qword_const(&a, 5);
	EXPECT_BYTES(&a, 0x0e, 0x05, 0, 0, 0, 0, 0, 0, 0);
}

TEST(aml_namestrings)
{
	uint8_t out[64];
	struct aml a;
	aml_init(&a, out, sizeof(out));
	aml_namestring(&a, "_SB");
	EXPECT_BYTES(&a, '_', 'S', 'B', '_');
	aml_init(&a, out, sizeof(out));
	aml_namestring(&a, "\\_SB.PCI0");
	EXPECT_BYTES(&a, '\\', 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0');
	aml_init(&a, out, sizeof(out));
	aml_namestring(&a, "^^FOO");
	EXPECT_BYTES(&a, '^', '^', 'F', 'O', 'O', '_');
	aml_init(&a, out, sizeof(out));
	aml_namestring(&a, "\\A.B1.C_D");
	EXPECT_BYTES(&a, '\\', 0x2f, 3, 'A', '_', '_', '_', 'B', '1', '_', '_', 'C', '_', 'D',
		     '_');
	aml_init(&a, out, sizeof(out));
	aml_namestring(&a, "\\");
	EXPECT_BYTES(&a, '\\', 0x00);
	aml_init(&a, out, sizeof(out));
	aml_namestring(&a, "");
	EXPECT_BYTES(&a, 0x00);

	static const char *const bad[] = {"abc", "TOOLONG", "A..B", "1ABC", "A.", ".A",
					  "\\^A", "A-B", "\\\\A", "AB CD"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		aml_init(&a, out, sizeof(out));
		CHECK_EQ(aml_namestring(&a, bad[i]), (unsigned long long)-EINVAL);
		CHECK_EQ(a.len, 0);
	}
	aml_init(&a, out, sizeof(out));
	CHECK_EQ(aml_namestring(&a, NULL), (unsigned long long)-EINVAL);
}

TEST(aml_strings_and_eisaid)
{
	uint8_t out[64];
	struct aml a;
	aml_init(&a, out, sizeof(out));
	aml_string(&a, "QEMU0001");
	EXPECT_BYTES(&a, 0x0d, 'Q', 'E', 'M', 'U', '0', '0', '0', '1', 0x00);
	aml_init(&a, out, sizeof(out));
	CHECK_EQ(aml_string(&a, "\xc3\xa9"), (unsigned long long)-EINVAL);

	uint32_t v = 0;
	CHECK_EQ(aml_eisaid_value("PNP0501", &v), 0);
	CHECK_EQ(v, 0x0105d041);
	CHECK_EQ(aml_eisaid_value("PNP0A03", &v), 0);
	CHECK_EQ(v, 0x030ad041);
	CHECK_EQ(aml_eisaid_value("PNP0a08", &v), 0);
	CHECK_EQ(v, 0x080ad041);
	CHECK_EQ(aml_eisaid_value("PNP0B00", &v), 0);
	CHECK_EQ(v, 0x000bd041);
	CHECK_EQ(aml_eisaid_value("PNP050", &v), -EINVAL);
	CHECK_EQ(aml_eisaid_value("PNP05011", &v), -EINVAL);
	CHECK_EQ(aml_eisaid_value("pNP0501", &v), -EINVAL);
	CHECK_EQ(aml_eisaid_value("PNP05G1", &v), -EINVAL);
	CHECK_EQ(aml_eisaid_value(NULL, &v), -EINVAL);

	aml_init(&a, out, sizeof(out));
	aml_name_eisaid(&a, "_HID", "PNP0501");
	EXPECT_BYTES(&a, 0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x05, 0x01);
	aml_init(&a, out, sizeof(out));
	CHECK_EQ(aml_eisaid(&a, "XYZ"), (unsigned long long)-EINVAL);
}

TEST(aml_package_method_device)
{
	uint8_t out[128];
	struct aml a;
	/* Name (_S5, Package () { 5, 5, 0, 0 }) as iasl compiles it */
	aml_init(&a, out, sizeof(out));
	aml_name_decl(&a, "_S5");
	size_t p = aml_package_begin(&a);
	aml_integer(&a, 5);
	aml_integer(&a, 5);
	aml_integer(&a, 0);
	aml_integer(&a, 0);
	aml_package_end(&a, p, 4);
	EXPECT_BYTES(&a, 0x08, '_', 'S', '5', '_', 0x12, 0x08, 0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00,
		     0x00);
	/* Method (_STA, 0, NotSerialized) { Return (0x0F) } */
	aml_init(&a, out, sizeof(out));
	aml_method_return_integer(&a, "_STA", 0x0f);
	EXPECT_BYTES(&a, 0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xa4, 0x0a, 0x0f);
	/* Method (FOO, 3, Serialized) {} */
	aml_init(&a, out, sizeof(out));
	size_t m = aml_method_begin(&a, "FOO", 3, true);
	aml_method_end(&a, m);
	EXPECT_BYTES(&a, 0x14, 0x06, 'F', 'O', 'O', '_', 0x0b);
	aml_init(&a, out, sizeof(out));
	m = aml_method_begin(&a, "FOO", 8, false);
	CHECK_EQ(aml_method_end(&a, m), (unsigned long long)-EINVAL);
	/* Device (DEV) { Name (_UID, 1) } inside Scope (\_SB) */
	aml_init(&a, out, sizeof(out));
	size_t s = aml_scope_begin(&a, "\\_SB");
	size_t d = aml_device_begin(&a, "DEV");
	aml_name_integer(&a, "_UID", 1);
	aml_device_end(&a, d);
	aml_scope_end(&a, s);
	EXPECT_BYTES(&a, 0x10, 0x13, '\\', '_', 'S', 'B', '_', 0x5b, 0x82, 0x0b, 'D', 'E', 'V',
		     '_', 0x08, '_', 'U', 'I', 'D', 0x01);
	/* empty package, Buffer */
	aml_init(&a, out, sizeof(out));
	p = aml_package_begin(&a);
	aml_package_end(&a, p, 0);
	aml_buffer(&a, "\x01\x02", 2);
	EXPECT_BYTES(&a, 0x12, 0x02, 0x00, 0x11, 0x05, 0x0a, 0x02, 0x01, 0x02);
	/* Package with more than 255 elements is not encodable */
	aml_init(&a, out, sizeof(out));
	p = aml_package_begin(&a);
	CHECK_EQ(aml_package_end(&a, p, 256), (unsigned long long)-E2BIG);
}

TEST(aml_resource_descriptors_match_iasl)
{
	/* The bytes iasl 20200925 compiles for this ResourceTemplate (end tag
	 * checksum aside: iasl writes 0, meaning "not checked"):
	 *   IO (Decode16, 0x3F8, 0x3F8, 0x01, 0x08)
	 *   IRQNoFlags () {4}
	 *   WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,
	 *                  0, 0, 0xff, 0, 0x100)
	 *   DWordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
	 *            0, 0xd00, 0xffff, 0, 0xf300)
	 *   DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed,
	 *                NonCacheable, ReadWrite, 0, 0xc0000000, 0xfebfffff, 0,
	 *                0x3ec00000)
	 *   QWordMemory (ResourceConsumer, PosDecode, MinFixed, MaxFixed,
	 *                Prefetchable, ReadWrite, 0, 0x100000000, 0x1ffffffff, 0,
	 *                0x100000000)
	 *   Memory32Fixed (ReadWrite, 0xfec00000, 0x1000)
	 *   Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive) {33}
	 */
	static const uint8_t want[] = {
		0x11, 0x48, 0x09, 0x0a, 0x94,
		0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08,
		0x22, 0x10, 0x00,
		0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x00, 0x00,
		0x00, 0x00, 0x01,
		0x87, 0x17, 0x00, 0x01, 0x0c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0d, 0x00,
		0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf3, 0x00, 0x00,
		0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0xc0, 0xff, 0xff, 0xbf, 0xfe, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x3e,
		0x8a, 0x2b, 0x00, 0x00, 0x0d, 0x07, 0, 0, 0, 0, 0, 0, 0, 0,
		0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
		0xff, 0xff, 0xff, 0xff, 0x01, 0x00, 0x00, 0x00,
		0, 0, 0, 0, 0, 0, 0, 0,
		0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
		0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0xc0, 0xfe, 0x00, 0x10, 0x00, 0x00,
		0x89, 0x06, 0x00, 0x01, 0x01, 0x21, 0x00, 0x00, 0x00,
		0x79, 0x00,
	};
	uint8_t out[256];
	struct aml a;
	aml_init(&a, out, sizeof(out));
	size_t rt = aml_restemplate_begin(&a);
	aml_res_io(&a, 0x3f8, 0x3f8, 1, 8);
	aml_res_irq_noflags(&a, 4);
	aml_res_word_bus_number(&a, 0, 0xff);
	aml_res_dword_io(&a, 0xd00, 0xffff);
	aml_res_dword_memory(&a, AML_MEM_NONCACHEABLE, 0xc0000000, 0xfebfffff);
	struct aml_addr_space q = {
		.type = AML_RES_TYPE_MEMORY,
		.gen_flags = AML_ADDR_CONSUMER | AML_ADDR_MIN_FIXED | AML_ADDR_MAX_FIXED,
		.type_flags = AML_MEM_PREFETCHABLE | AML_MEM_RW,
		.min = 0x100000000ULL,
		.max = 0x1ffffffffULL,
		.length = 0x100000000ULL,
	};
	aml_res_qword_addr(&a, &q);
	aml_res_memory32_fixed(&a, 0xfec00000, 0x1000, true);
	aml_res_interrupt(&a, AML_INT_CONSUMER, 33);
	CHECK_EQ(aml_restemplate_end(&a, rt), 0);
	CHECK_EQ(a.len, sizeof(want));
	CHECK(!memcmp(out, want, sizeof(want) - 1));
	/* our End Tag checksum makes the descriptors sum to zero */
	CHECK_EQ(sum8(out + 5, a.len - 5), 0);
	struct res r;
	CHECK(dec_res(out + 5, a.len - 5, &r));
	CHECK_EQ(r.naddr, 4);
	CHECK_EQ(r.extirq, 33);
	CHECK_EQ(r.mem32_base, 0xfec00000);

	/* the qword shorthand (producer) differs only in general flags */
	aml_init(&a, out, sizeof(out));
	aml_res_qword_memory(&a, AML_MEM_PREFETCHABLE, 0x100000000ULL, 0x1ffffffffULL);
	CHECK_EQ(a.len, 46);
	CHECK_EQ(out[4], 0x0c);
	CHECK(!memcmp(out + 5, want + 89, 41));
}

TEST(aml_resource_errors)
{
	uint8_t out[64];
	struct aml a;
	aml_init(&a, out, sizeof(out));
	CHECK_EQ(aml_res_irq_noflags(&a, 16), (unsigned long long)-EINVAL);
	aml_init(&a, out, sizeof(out));
	CHECK_EQ(aml_res_dword_io(&a, 0x100, 0xff), (unsigned long long)-EINVAL);
	aml_init(&a, out, sizeof(out));
	CHECK_EQ(aml_res_dword_memory(&a, 0, 0, 0xffffffff), (unsigned long long)-EINVAL);
	aml_init(&a, out, sizeof(out));
	struct aml_addr_space s = {.type = AML_RES_TYPE_BUS, .max = 0x10000};
	CHECK_EQ(aml_res_word_addr(&a, &s), (unsigned long long)-EINVAL);
	CHECK_EQ(a.len, 0);
	aml_init(&a, out, sizeof(out));
	CHECK_EQ(aml_raw(&a, NULL, 3), (unsigned long long)-EINVAL);
}

/* Build a small DSDT-like blob with a builder of capacity cap. */
static void build_sample(struct aml *a)
{
	aml_name_decl(a, "_S5");
	size_t p = aml_package_begin(a);
	aml_integer(a, 5);
	aml_integer(a, 0x1234);
	aml_package_end(a, p, 2);
	size_t sb = aml_scope_begin(a, "\\_SB");
	for (int i = 0; i < 3; i++) {
		char name[16];
		snprintf(name, sizeof(name), "D%03d", i);
		size_t d = aml_device_begin(a, name);
		aml_name_string(a, "_HID", "LNRO0005");
		aml_name_integer(a, "_UID", (uint64_t)i);
		aml_name_decl(a, "_CRS");
		size_t rt = aml_restemplate_begin(a);
		aml_res_memory32_fixed(a, 0xd0000000u + 0x200u * (unsigned)i, 0x200, true);
		aml_res_interrupt(a, AML_INT_CONSUMER | AML_INT_EDGE, 16 + (unsigned)i);
		aml_restemplate_end(a, rt);
		aml_device_end(a, d);
	}
	aml_scope_end(a, sb);
}

TEST(aml_overflow_is_sticky_and_bounded)
{
	struct aml a;
	aml_init(&a, NULL, 0);
	build_sample(&a);
	CHECK_EQ(a.err, -ENOSPC);
	size_t need = a.len;
	CHECK(need > 100);

	uint8_t ref[512];
	CHECK(need <= sizeof(ref));
	aml_init(&a, ref, need);
	build_sample(&a);
	CHECK_EQ(a.err, 0);
	CHECK_EQ(a.len, need);
	static struct dec d;
	CHECK(dec_aml(&d, ref, need));
	CHECK_EQ(d.bad_line, 0);
	const struct obj *o = find(&d, "\\_SB_.D002._CRS");
	CHECK(o && o->kind == O_BUF);
	struct res r;
	if (o) {
		CHECK(dec_res(o->data, o->dlen, &r));
		CHECK_EQ(r.mem32_base, 0xd0000400);
		CHECK_EQ(r.extirq, 18);
		CHECK_EQ(r.extirq_flags, AML_INT_CONSUMER | AML_INT_EDGE);
	}
	o = find(&d, "\\_S5_");
	CHECK(o && o->kind == O_PKG && o->nelem == 2 && o->elem[1] == 0x1234);

	/* every smaller capacity: -ENOSPC, the needed size, nothing past cap */
	for (size_t cap = 0; cap < need; cap++) {
		uint8_t *buf = malloc(cap + 32);
		memset(buf, 0xa5, cap + 32);
		aml_init(&a, buf, cap);
		build_sample(&a);
		CHECK_EQ(a.err, -ENOSPC);
		CHECK_EQ(a.len, need);
		for (size_t i = cap; i < cap + 32; i++)
			if (buf[i] != 0xa5) {
				CHECK_EQ(i, ~0ULL);
				break;
			}
		free(buf);
	}
}

/* ---------------------------------------------------------------------------
 * Tables
 */

static struct image im; /* large: keep off the stack */

TEST(rsdp)
{
	memset(&im, 0, sizeof(im));
	CHECK(build(&im, 4, NULL, 0) > 0);
	CHECK_EQ(im.rsdp, GPA_ACPI_TABLES);
	const uint8_t *r = im.buf;
	CHECK(!memcmp(r, "RSD PTR ", 8));
	CHECK_EQ(sum8(r, 20), 0);
	CHECK_EQ(sum8(r, 36), 0);
	CHECK_EQ(r[15], 2);
	CHECK_EQ(rd32(r + 20), 36);
	CHECK(!memcmp(r + 9, "VISOR ", 6));
	CHECK(table_at(&im, rd64(r + 24)) != NULL);
	CHECK(table_at(&im, rd32(r + 16)) != NULL);

	/* Linux's legacy scan: 16-byte steps over 0xE0000-0xFFFFF, first
	 * "RSD PTR " with a valid checksum wins. */
	uint64_t found = 0;
	for (int off = 0; off + 36 <= im.len; off += 16) {
		if (!memcmp(im.buf + off, "RSD PTR ", 8) && sum8(im.buf + off, 20) == 0) {
			found = GPA_ACPI_TABLES + (uint64_t)off;
			break;
		}
	}
	CHECK_EQ(found, GPA_ACPI_TABLES);
	CHECK(im.len <= (int)ACPI_TABLES_MAX);
}

TEST(xsdt_and_rsdt)
{
	memset(&im, 0, sizeof(im));
	CHECK(build(&im, 2, NULL, 0) > 0);
	const uint8_t *xsdt = table_at(&im, rd64(im.buf + 24));
	const uint8_t *rsdt = table_at(&im, rd32(im.buf + 16));
	check_header(xsdt, "XSDT");
	check_header(rsdt, "RSDT");
	if (!xsdt || !rsdt)
		return;
	uint32_t n = (rd32(xsdt + 4) - 36) / 8;
	CHECK_EQ(rd32(xsdt + 4), 36 + 8 * n);
	CHECK_EQ(rd32(rsdt + 4), 36 + 4 * n);
	CHECK_EQ(n, 2);
	int facp = 0, apic = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t a = rd64(xsdt + 36 + 8 * i);
		CHECK_EQ(rd32(rsdt + 36 + 4 * i), a);
		CHECK_EQ(a % 8, 0);
		const uint8_t *t = table_at(&im, a);
		CHECK(t != NULL);
		if (!t)
			continue;
		CHECK_EQ(sum8(t, rd32(t + 4)), 0);
		if (!memcmp(t, "FACP", 4))
			facp++;
		if (!memcmp(t, "APIC", 4))
			apic++;
		check_header(t, memcmp(t, "FACP", 4) ? "APIC" : "FACP");
	}
	CHECK_EQ(facp, 1);
	CHECK_EQ(apic, 1);
}

static void check_gas(const uint8_t *g, uint8_t bits, uint64_t addr)
{
	CHECK_EQ(g[0], 1); /* SystemIO */
	CHECK_EQ(g[1], bits);
	CHECK_EQ(g[2], 0);
	CHECK_EQ(rd64(g + 4), addr);
}

TEST(fadt)
{
	memset(&im, 0, sizeof(im));
	CHECK(build(&im, 1, NULL, 0) > 0);
	const uint8_t *f = find_table(&im, "FACP");
	check_header(f, "FACP");
	if (!f)
		return;
	CHECK_EQ(rd32(f + 4), 276);
	CHECK_EQ(f[8], 6);
	CHECK_EQ(f[131], 4); /* minor version */
	CHECK_EQ(rd16(f + 46), IRQ_ACPI_SCI);
	CHECK_EQ(rd32(f + 48), 0); /* SMI_CMD: no ACPI enable handshake */
	CHECK_EQ(f[52], 0);
	CHECK_EQ(f[53], 0);
	CHECK_EQ(rd32(f + 56), PORT_ACPI_PM1A_EVT);
	CHECK_EQ(rd32(f + 60), 0);
	CHECK_EQ(rd32(f + 64), PORT_ACPI_PM1A_CNT);
	CHECK_EQ(rd32(f + 68), 0);
	CHECK_EQ(rd32(f + 72), 0);
	CHECK_EQ(rd32(f + 76), PORT_ACPI_PM_TMR);
	CHECK_EQ(rd32(f + 80), PORT_ACPI_GPE0);
	CHECK_EQ(rd32(f + 84), 0); /* no GPE1 */
	CHECK_EQ(f[88], PORT_ACPI_PM1A_EVT_LEN);
	CHECK_EQ(f[88], 4);
	CHECK_EQ(f[89], PORT_ACPI_PM1A_CNT_LEN);
	CHECK_EQ(f[89], 2);
	CHECK_EQ(f[91], PORT_ACPI_PM_TMR_LEN);
	CHECK_EQ(f[91], 4);
	CHECK_EQ(f[92], PORT_ACPI_GPE0_LEN); /* GPE0_BLK_LEN: STS and EN halves */
	CHECK_EQ(f[92], 4);
	CHECK_EQ(f[93], 0); /* GPE1_BLK_LEN */
	CHECK_EQ(f[94], 0); /* GPE1_BASE */
	CHECK(rd16(f + 96) > 100);  /* no C2 */
	CHECK(rd16(f + 98) > 1000); /* no C3 */
	CHECK_EQ(f[108], 0x32); /* CMOS century register */
	CHECK_EQ(rd16(f + 109), 0x7); /* legacy devices, 8042, no VGA */
	uint32_t flags = rd32(f + 112);
	CHECK(flags & (1u << 0));   /* WBINVD */
	CHECK(flags & (1u << 2));   /* PROC_C1 */
	CHECK(!(flags & (1u << 4))); /* fixed-feature power button */
	CHECK(flags & (1u << 5));   /* no sleep button */
	CHECK(flags & (1u << 8));   /* TMR_VAL_EXT: 32-bit PM timer */
	CHECK(flags & (1u << 10));  /* RESET_REG_SUP */
	CHECK(!(flags & (1u << 20))); /* not HW_REDUCED_ACPI */
	check_gas(f + 116, 8, PORT_ACPI_RESET);
	CHECK_EQ(f[128], ACPI_RESET_VALUE);
	check_gas(f + 148, 32, PORT_ACPI_PM1A_EVT);
	check_gas(f + 172, 16, PORT_ACPI_PM1A_CNT);
	check_gas(f + 208, 32, PORT_ACPI_PM_TMR);
	for (int off = 160; off < 172; off++)
		CHECK_EQ(f[off], 0); /* no PM1b event block */
	/* X_GPE0_BLK: I/O, 32 bits, byte access */
	CHECK_EQ(f[220], 1);
	CHECK_EQ(f[221], 32);
	CHECK_EQ(f[222], 0);
	CHECK_EQ(f[223], 1);
	CHECK_EQ(rd64(f + 224), PORT_ACPI_GPE0);
	for (int off = 232; off < 268; off++)
		CHECK_EQ(f[off], 0); /* no GPE1 block, no sleep registers */

	/* DSDT: 32- and 64-bit pointers agree */
	CHECK_EQ(rd32(f + 40), rd64(f + 140));
	check_header(table_at(&im, rd64(f + 140)), "DSDT");

	/* FACS: 32-bit pointer only (X_FIRMWARE_CTRL must be 0 then) */
	uint32_t facs_gpa = rd32(f + 36);
	CHECK_EQ(rd64(f + 132), 0);
	CHECK_EQ(facs_gpa % 64, 0);
	const uint8_t *facs = at(&im, facs_gpa, 64);
	CHECK(facs != NULL);
	if (facs) {
		CHECK(!memcmp(facs, "FACS", 4));
		CHECK_EQ(rd32(facs + 4), 64);
		CHECK_EQ(facs[32], 2);
		CHECK_EQ(rd32(facs + 16), 0); /* global lock free */
	}
}

static void check_madt(uint32_t ncpus)
{
	memset(&im, 0, sizeof(im));
	CHECK(build(&im, ncpus, NULL, 0) > 0);
	const uint8_t *m = find_table(&im, "APIC");
	check_header(m, "APIC");
	if (!m)
		return;
	CHECK_EQ(rd32(m + 36), GPA_LAPIC);
	CHECK_EQ(rd32(m + 40), 1); /* PCAT_COMPAT */
	uint32_t len = rd32(m + 4);
	uint8_t seen[256] = {0};
	uint32_t nlapic = 0, nioapic = 0, nnmi = 0;
	int iso0 = 0, iso9 = 0;
	int ioapic_id = -1;
	for (uint32_t off = 44; off < len;) {
		const uint8_t *e = m + off;
		CHECK(e[1] >= 2 && off + e[1] <= len);
		if (e[1] < 2 || off + e[1] > len)
			return;
		switch (e[0]) {
		case 0:
			CHECK_EQ(e[1], 8);
			CHECK_EQ(e[2], e[3]); /* UID == APIC ID */
			CHECK_EQ(e[3], nlapic); /* in order */
			CHECK_EQ(rd32(e + 4) & 1, 1);
			CHECK(!seen[e[3]]);
			seen[e[3]] = 1;
			nlapic++;
			break;
		case 1:
			CHECK_EQ(e[1], 12);
			CHECK_EQ(rd32(e + 4), GPA_IOAPIC);
			CHECK_EQ(rd32(e + 8), 0);
			ioapic_id = e[2];
			nioapic++;
			break;
		case 2:
			CHECK_EQ(e[1], 10);
			CHECK_EQ(e[2], 0);
			if (e[3] == 0) {
				CHECK_EQ(rd32(e + 4), 2);
				CHECK_EQ(rd16(e + 8), 0);
				iso0++;
			} else if (e[3] == 9) {
				CHECK_EQ(rd32(e + 4), 9);
				CHECK_EQ(rd16(e + 8), 0xd); /* level, active-high */
				iso9++;
			} else {
				CHECK_EQ(e[3], ~0ULL);
			}
			break;
		case 4:
			CHECK_EQ(e[1], 6);
			CHECK_EQ(e[2], 0xff);
			CHECK_EQ(e[5], 1); /* LINT1 */
			nnmi++;
			break;
		default:
			CHECK_EQ(e[0], ~0ULL);
		}
		off += e[1];
	}
	CHECK_EQ(nlapic, ncpus);
	for (uint32_t i = 0; i < ncpus; i++)
		CHECK(seen[i]);
	CHECK_EQ(nioapic, 1);
	CHECK(ioapic_id >= 0 && ioapic_id < 255 && !seen[ioapic_id]);
	CHECK_EQ(iso0, 1);
	CHECK_EQ(iso9, 1);
	CHECK_EQ(nnmi, 1);
}

TEST(madt_cpu_counts)
{
	check_madt(1);
	check_madt(2);
	check_madt(8);
	check_madt(64);
	check_madt(ACPI_MAX_CPUS);
}

static const uint8_t *dsdt_of(const struct image *i)
{
	const uint8_t *f = find_table(i, "FACP");
	return f ? table_at(i, rd64(f + 140)) : NULL;
}

static void check_device_crs(const struct dec *d, const char *dev, struct res *r)
{
	char path[64];
	snprintf(path, sizeof(path), "%s._CRS", dev);
	const struct obj *o = find(d, path);
	CHECK(o && o->kind == O_BUF);
	memset(r, 0, sizeof(*r));
	if (o && o->kind == O_BUF)
		CHECK(dec_res(o->data, o->dlen, r));
}

TEST(dsdt)
{
	memset(&im, 0, sizeof(im));
	CHECK(build(&im, 2, NULL, 0) > 0);
	const uint8_t *t = dsdt_of(&im);
	check_header(t, "DSDT");
	if (!t)
		return;
	CHECK_EQ(t[8], 2); /* 64-bit integers */
	uint32_t len = rd32(t + 4);
	static struct dec d;
	CHECK(dec_aml(&d, t + 36, len - 36));
	CHECK_EQ(d.bad_line, 0);

	/* \_S5 = { SLP_TYPa, SLP_TYPb, 0, 0 } at the root */
	const struct obj *o = find(&d, "\\_S5_");
	CHECK(o && o->kind == O_PKG);
	if (o) {
		CHECK_EQ(o->nelem, 4);
		CHECK_EQ(o->elem[0], ACPI_S5_SLP_TYP);
		CHECK_EQ(o->elem[1], ACPI_S5_SLP_TYP);
		CHECK_EQ(o->elem[2], 0);
		CHECK_EQ(o->elem[3], 0);
	}
	CHECK(find(&d, "\\_SB_") && find(&d, "\\_SB_")->kind == O_SCOPE);

	/* every device lives in \_SB */
	int ndev = 0;
	for (int i = 0; i < d.nobj; i++) {
		if (d.objs[i].kind != O_DEVICE)
			continue;
		ndev++;
		CHECK(!strncmp(d.objs[i].path, "\\_SB_.", 6));
	}
	CHECK_EQ(ndev, 5);

	/* COM1: EISAID("PNP0501") as a DWordConst, _UID 1, IO 0x3f8/8, IRQ 4 */
	static const uint8_t pnp0501[] = {0x0c, 0x41, 0xd0, 0x05, 0x01};
	CHECK(memmem(t, len, pnp0501, sizeof(pnp0501)) != NULL);
	o = find(&d, "\\_SB_.COM1._HID");
	CHECK(o && o->kind == O_INT && o->ival == 0x0105d041);
	o = find(&d, "\\_SB_.COM1._UID");
	CHECK(o && o->kind == O_INT && o->ival == 1);
	struct res r;
	check_device_crs(&d, "\\_SB_.COM1", &r);
	CHECK_EQ(r.nio, 1);
	CHECK_EQ(r.io_min[0], PORT_COM1);
	CHECK_EQ(r.io_max[0], PORT_COM1);
	CHECK_EQ(r.io_len[0], 8);
	CHECK_EQ(r.nirq, 1);
	CHECK_EQ(r.irq_mask, 1u << IRQ_COM1);

	/* RTC: PNP0B00, IO 0x70/2, IRQ 8 */
	o = find(&d, "\\_SB_.RTC_._HID");
	CHECK(o && o->kind == O_INT && o->ival == 0x000bd041);
	check_device_crs(&d, "\\_SB_.RTC_", &r);
	CHECK_EQ(r.nio, 1);
	CHECK_EQ(r.io_min[0], 0x70);
	CHECK_EQ(r.io_len[0], 2);
	CHECK_EQ(r.irq_mask, 1u << 8);

	/* PS/2 controller: PNP0303, IO 0x60 and 0x64, IRQ 1 */
	o = find(&d, "\\_SB_.KBD_._HID");
	CHECK(o && o->kind == O_INT && o->ival == 0x0303d041);
	check_device_crs(&d, "\\_SB_.KBD_", &r);
	CHECK_EQ(r.nio, 2);
	CHECK_EQ(r.io_min[0], 0x60);
	CHECK_EQ(r.io_len[0], 1);
	CHECK_EQ(r.io_min[1], 0x64);
	CHECK_EQ(r.io_len[1], 1);
	CHECK_EQ(r.irq_mask, 1u << 1);

	/* pvpanic: _HID "QEMU0001", IO PORT_PVPANIC/1, _STA returns 0xF */
	o = find(&d, "\\_SB_.PEVT._HID");
	CHECK(o && o->kind == O_STR && !strcmp(o->str, "QEMU0001"));
	check_device_crs(&d, "\\_SB_.PEVT", &r);
	CHECK_EQ(r.nio, 1);
	CHECK_EQ(r.io_min[0], PORT_PVPANIC);
	CHECK_EQ(r.io_len[0], 1);
	CHECK_EQ(r.nirq, 0);
	o = find(&d, "\\_SB_.PEVT._STA");
	CHECK(o && o->kind == O_METHOD);
	if (o) {
		CHECK_EQ(o->mflags, 0);
		CHECK_EQ(o->dlen, 3);
		CHECK(!memcmp(o->data, "\xa4\x0a\x0f", 3));
	}

	/* The VM generation ID: the IDs Linux's vmgenid driver matches, the
	 * specification's _CID and _DDN, ADDR returning the address split in
	 * two 32-bit halves */
	o = find(&d, "\\_SB_.VGEN._HID");
	CHECK(o && o->kind == O_STR && !strcmp(o->str, "VMGENCTR"));
	o = find(&d, "\\_SB_.VGEN._CID");
	CHECK(o && o->kind == O_STR && !strcmp(o->str, "VM_Gen_Counter"));
	o = find(&d, "\\_SB_.VGEN._DDN");
	CHECK(o && o->kind == O_STR && !strcmp(o->str, "VM_Gen_Counter"));
	o = find(&d, "\\_SB_.VGEN.ADDR");
	CHECK(o && o->kind == O_METHOD);
	if (o) {
		CHECK_EQ(o->mflags, 0); /* no arguments, NotSerialized */
		/* Return (Package (2) { DWord 0x000ef000, Zero }) */
		static const uint8_t body[] = {0xa4, 0x12, 0x08, 0x02, 0x0c, 0x00,
					       0xf0, 0x0e, 0x00, 0x00};
		CHECK_EQ(o->dlen, sizeof(body));
		CHECK(o->dlen == sizeof(body) && !memcmp(o->data, body, sizeof(body)));
		CHECK_EQ(GPA_VMGENID, 0xef000);
	}
	/* the whole device, as iasl compiles the ASL in acpi.c */
	static const uint8_t vgen[] = {
		0x5b, 0x82, 0x40, 0x05, 'V', 'G', 'E', 'N',
		0x08, '_', 'H', 'I', 'D', 0x0d, 'V', 'M', 'G', 'E', 'N', 'C', 'T', 'R', 0x00,
		0x08, '_', 'C', 'I', 'D', 0x0d, 'V', 'M', '_', 'G', 'e', 'n', '_', 'C', 'o', 'u',
		'n', 't', 'e', 'r', 0x00,
		0x08, '_', 'D', 'D', 'N', 0x0d, 'V', 'M', '_', 'G', 'e', 'n', '_', 'C', 'o', 'u',
		'n', 't', 'e', 'r', 0x00,
		0x14, 0x10, 'A', 'D', 'D', 'R', 0x00, 0xa4, 0x12, 0x08, 0x02, 0x0c, 0x00, 0xf0,
		0x0e, 0x00, 0x00};
	CHECK(memmem(t, len, vgen, sizeof(vgen)) != NULL);
	/* Scope (\_GPE) { Method (_E00) { Notify (\_SB.VGEN, 0x80) } }: an edge
	 * GPE, number ACPI_GPE_VMGENID */
	CHECK_EQ(ACPI_GPE_VMGENID, 0);
	static const uint8_t gpe[] = {0x10, 0x1a, '\\', '_', 'G', 'P', 'E', 0x14, 0x13, '_',
				      'E', '0', '0', 0x00, 0x86, '\\', 0x2e, '_', 'S', 'B',
				      '_', 'V', 'G', 'E', 'N', 0x0a, 0x80};
	CHECK(memmem(t, len, gpe, sizeof(gpe)) != NULL);
	o = find(&d, "\\_GPE");
	CHECK(o && o->kind == O_SCOPE);
	o = find(&d, "\\_GPE._E00");
	CHECK(o && o->kind == O_METHOD && o->mflags == 0);
	/* nothing of it without the device */
	struct acpi_config plain = {.ncpus = 1};
	static uint8_t buf2[8192];
	int n = acpi_build(buf2, sizeof(buf2), GPA_ACPI_TABLES, &plain, NULL);
	CHECK(n > 0);
	CHECK(n > 0 && memmem(buf2, (size_t)n, "VGEN", 4) == NULL);
	CHECK(n > 0 && memmem(buf2, (size_t)n, "_GPE", 4) == NULL);
}

TEST(dsdt_sb_extra_aml)
{
	uint8_t extra[256];
	struct aml a;
	aml_init(&a, extra, sizeof(extra));
	size_t dv = aml_device_begin(&a, "VR00");
	aml_name_string(&a, "_HID", "LNRO0005");
	aml_name_integer(&a, "_UID", 0);
	aml_name_decl(&a, "_CRS");
	size_t rt = aml_restemplate_begin(&a);
	aml_res_memory32_fixed(&a, 0xd0000000, 0x200, true);
	aml_res_interrupt(&a, AML_INT_CONSUMER | AML_INT_EDGE, 16);
	aml_restemplate_end(&a, rt);
	aml_device_end(&a, dv);
	CHECK_EQ(a.err, 0);

	memset(&im, 0, sizeof(im));
	CHECK(build(&im, 1, extra, a.len) > 0);
	const uint8_t *t = dsdt_of(&im);
	check_header(t, "DSDT");
	if (!t)
		return;
	CHECK(memmem(t, rd32(t + 4), extra, a.len) != NULL);
	static struct dec d;
	CHECK(dec_aml(&d, t + 36, rd32(t + 4) - 36));
	CHECK_EQ(d.bad_line, 0);
	const struct obj *o = find(&d, "\\_SB_.VR00._HID");
	CHECK(o && o->kind == O_STR && !strcmp(o->str, "LNRO0005"));
	struct res r;
	check_device_crs(&d, "\\_SB_.VR00", &r);
	CHECK_EQ(r.nmem32, 1);
	CHECK_EQ(r.mem32_base, 0xd0000000);
	CHECK_EQ(r.mem32_len, 0x200);
	CHECK_EQ(r.extirq, 16);

	/* a large blob pushes the \_SB scope to a 3-byte PkgLength */
	static uint8_t big[5000];
	memset(&a, 0, sizeof(a));
	aml_init(&a, big, sizeof(big));
	for (int i = 0; a.len < 4200; i++) {
		char name[16];
		snprintf(name, sizeof(name), "X%03d", i);
		aml_name_integer(&a, name, 0x12345678);
	}
	CHECK_EQ(a.err, 0);
	memset(&im, 0, sizeof(im));
	CHECK(build(&im, 1, big, a.len) > 0);
	t = dsdt_of(&im);
	check_header(t, "DSDT");
	if (t) {
		CHECK(dec_aml(&d, t + 36, rd32(t + 4) - 36));
		CHECK_EQ(d.bad_line, 0);
		CHECK(find(&d, "\\_SB_.X000") != NULL);
		CHECK(find(&d, "\\_SB_.COM1") != NULL);
	}
}

TEST(gpa_relocation)
{
	static struct image lo, hi;
	memset(&lo, 0, sizeof(lo));
	memset(&hi, 0, sizeof(hi));
	hi.gpa = 0x7ff00000;
	CHECK(build(&lo, 3, NULL, 0) > 0);
	CHECK(build(&hi, 3, NULL, 0) > 0);
	CHECK_EQ(lo.len, hi.len);
	CHECK(!memcmp(lo.buf + 0x40, hi.buf + 0x40, 64)); /* same FACS */
	CHECK_EQ(hi.rsdp, 0x7ff00000);
	const uint8_t *f = find_table(&hi, "FACP");
	CHECK(f != NULL);
	if (f) {
		CHECK(table_at(&hi, rd64(f + 140)) != NULL);
		CHECK(at(&hi, rd32(f + 36), 64) != NULL);
	}
	CHECK(find_table(&hi, "APIC") != NULL);

	/* only 16-byte aligned: the FACS still lands on a 64-byte boundary
	 * in guest-physical space, tables on 8-byte ones */
	static const uint64_t odd[] = {GPA_ACPI_TABLES + 0x10, GPA_ACPI_TABLES + 0x20,
				       GPA_ACPI_TABLES + 0x30};
	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		memset(&hi, 0, sizeof(hi));
		hi.gpa = odd[i];
		CHECK(build(&hi, 3, NULL, 0) > 0);
		CHECK_EQ(hi.rsdp, odd[i]);
		f = find_table(&hi, "FACP");
		check_header(f, "FACP");
		if (!f)
			continue;
		CHECK_EQ(rd32(f + 36) % 64, 0);
		const uint8_t *facs = at(&hi, rd32(f + 36), 64);
		CHECK(facs && !memcmp(facs, "FACS", 4));
		CHECK_EQ(rd64(f + 140) % 8, 0);
		check_header(table_at(&hi, rd64(f + 140)), "DSDT");
		const uint8_t *m = find_table(&hi, "APIC");
		check_header(m, "APIC");
	}
}

TEST(bad_config)
{
	static uint8_t buf[BIG];
	uint64_t r = 0x1234;
	struct acpi_config cfg = {.ncpus = 0};
	CHECK_EQ(acpi_build(buf, sizeof(buf), GPA_ACPI_TABLES, &cfg, &r), -EINVAL);
	cfg.ncpus = 255;
	CHECK_EQ(acpi_build(buf, sizeof(buf), GPA_ACPI_TABLES, &cfg, &r), -EINVAL);
	cfg.ncpus = 100000;
	CHECK_EQ(acpi_build(buf, sizeof(buf), GPA_ACPI_TABLES, &cfg, &r), -EINVAL);
	CHECK_EQ(acpi_build(buf, sizeof(buf), GPA_ACPI_TABLES, NULL, &r), -EINVAL);
	cfg.ncpus = 1;
	CHECK_EQ(acpi_build(buf, sizeof(buf), GPA_ACPI_TABLES + 8, &cfg, &r), -EINVAL);
	CHECK_EQ(acpi_build(buf, sizeof(buf), 0x100000000ULL, &cfg, &r), -EINVAL);
	CHECK_EQ(acpi_build(buf, sizeof(buf), 0x100000000ULL - 0x100, &cfg, &r), -EINVAL);
	CHECK_EQ(acpi_build(NULL, 16, GPA_ACPI_TABLES, &cfg, &r), -EINVAL);
	/* the generation ID must be 8-byte aligned (Microsoft's requirement) */
	for (uint64_t off = 1; off < 8; off++) {
		struct acpi_config c2 = {.ncpus = 1, .vmgenid_gpa = GPA_VMGENID + off};
		CHECK_EQ(acpi_build(buf, sizeof(buf), GPA_ACPI_TABLES, &c2, &r), -EINVAL);
	}
	cfg.sb_extra_aml_len = 4;
	CHECK_EQ(acpi_build(buf, sizeof(buf), GPA_ACPI_TABLES, &cfg, &r), -EINVAL);
	CHECK_EQ(r, 0x1234); /* untouched on failure */
	cfg.sb_extra_aml_len = 0;
	CHECK(acpi_build(buf, sizeof(buf), GPA_ACPI_TABLES, &cfg, NULL) > 0);
	cfg.ncpus = ACPI_MAX_CPUS;
	CHECK(acpi_build(buf, sizeof(buf), GPA_ACPI_TABLES, &cfg, &r) > 0);
}

static void check_enospc_every_size(uint32_t ncpus, const uint8_t *extra, size_t extra_len)
{
	memset(&im, 0, sizeof(im));
	int need = build(&im, ncpus, extra, extra_len);
	CHECK(need > 0);
	if (need <= 0)
		return;
	struct acpi_config cfg = {.ncpus = ncpus,
				  .sb_extra_aml = extra,
				  .sb_extra_aml_len = extra_len,
				  .vmgenid_gpa = GPA_VMGENID};
	for (int size = 0; size <= need; size++) {
		/* exactly size bytes: ASan flags any write past the end */
		uint8_t *buf = malloc((size_t)size ? (size_t)size : 1);
		uint64_t r = 0;
		int ret = acpi_build(buf, (size_t)size, GPA_ACPI_TABLES, &cfg, &r);
		if (size < need) {
			if (ret != -ENOSPC) {
				CHECK_EQ(ret, -ENOSPC);
				free(buf);
				break;
			}
		} else {
			CHECK_EQ(ret, need);
			CHECK(!memcmp(buf, im.buf, (size_t)need));
			CHECK_EQ(r, GPA_ACPI_TABLES);
		}
		free(buf);
	}
	/* the same with guard bytes, for builds without ASan */
	uint8_t *buf = malloc((size_t)need + 64);
	for (int size = 0; size < need; size++) {
		memset(buf, 0xa5, (size_t)need + 64);
		CHECK_EQ(acpi_build(buf, (size_t)size, GPA_ACPI_TABLES, &cfg, NULL), -ENOSPC);
		for (int i = size; i < need + 64; i++)
			if (buf[i] != 0xa5) {
				CHECK_EQ(i, -1);
				size = need;
				break;
			}
	}
	free(buf);
}

TEST(enospc_at_every_size)
{
	check_enospc_every_size(1, NULL, 0);
	static const uint8_t extra[] = {0x08, 'X', 'Y', 'Z', '_', 0x0a, 0x42}; /* Name(XYZ, 0x42) */
	check_enospc_every_size(ACPI_MAX_CPUS, extra, sizeof(extra));
}

TEST(max_cpus_fit_bios_area)
{
	memset(&im, 0, sizeof(im));
	int n = build(&im, ACPI_MAX_CPUS, NULL, 0);
	CHECK(n > 0);
	CHECK(n <= (int)ACPI_TABLES_MAX);
	/* the largest machine: every CPU, PCI, the VM generation ID and the
	 * most virtio-mmio AML the machine keeps (2 KiB) still end before
	 * the generation ID's page */
	static uint8_t extra[2048];
	struct aml a;
	aml_init(&a, extra, sizeof(extra));
	for (int i = 0; a.len + 8 <= sizeof(extra); i++) {
		char name[16];
		snprintf(name, sizeof(name), "Y%03d", i);
		aml_name_integer(&a, name, 0x12);
	}
	CHECK_EQ(a.err, 0);
	struct acpi_config cfg = {.ncpus = ACPI_MAX_CPUS,
				  .pci = true,
				  .sb_extra_aml = extra,
				  .sb_extra_aml_len = a.len,
				  .vmgenid_gpa = GPA_VMGENID};
	n = acpi_build(im.buf, ACPI_TABLES_MAX, GPA_ACPI_TABLES, &cfg, NULL);
	CHECK(n > 0);
	CHECK(GPA_ACPI_TABLES + ACPI_TABLES_MAX <= GPA_VMGENID);
}

TEST_MAIN()
