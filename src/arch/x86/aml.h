/* SPDX-License-Identifier: MIT */
/*
 * aml.h - a small ACPI Machine Language (AML) encoder (ACPI 6.4 chapter 20)
 * for visor's DSDT and the device descriptions other modules add to it.
 *
 * Usage: the builder appends encoded bytes to a caller buffer.  Objects that
 * carry a PkgLength (Scope, Device, Method, Package, Buffer) are opened with a
 * *_begin() call that returns a mark and closed with the matching *_end(mark);
 * the end call measures what was emitted since the mark, encodes the
 * PkgLength in its shortest form and moves the body up to make room for it.
 * Blocks nest freely:
 *
 *	struct aml a;
 *	aml_init(&a, buf, sizeof(buf));
 *	size_t sb = aml_scope_begin(&a, "\\_SB");
 *	size_t dev = aml_device_begin(&a, "COM1");
 *	aml_name_eisaid(&a, "_HID", "PNP0501");
 *	aml_name_decl(&a, "_CRS");
 *	size_t rt = aml_restemplate_begin(&a);
 *	aml_res_io(&a, 0x3f8, 0x3f8, 1, 8);
 *	aml_res_irq_noflags(&a, 4);
 *	aml_restemplate_end(&a, rt);
 *	aml_device_end(&a, dev);
 *	aml_scope_end(&a, sb);
 *	if (a.err) ... else a.len bytes are valid
 *
 * Errors are sticky: the first failure is kept in a.err (-ENOSPC when the
 * buffer is full, -EINVAL for a malformed name/ID/value, -E2BIG for an object
 * too large for its encoding) and every call returns a.err, so a caller can
 * check once at the end.  Once an error is set nothing more is written, but
 * a.len keeps counting: after -ENOSPC it is the size the output would need
 * (aml_init(&a, NULL, 0) therefore measures).  Nothing is ever written at or
 * past buf + cap.
 *
 * Not thread-safe; one struct aml per builder.
 */
#ifndef VISOR_ARCH_X86_AML_H
#define VISOR_ARCH_X86_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* AML opcodes (ACPI 6.4 §20.2.5 / §20.3 table) that the builder emits. */
#define AML_ZERO_OP 0x00
#define AML_ONE_OP 0x01
#define AML_NAME_OP 0x08
#define AML_BYTE_PREFIX 0x0a
#define AML_WORD_PREFIX 0x0b
#define AML_DWORD_PREFIX 0x0c
#define AML_STRING_PREFIX 0x0d
#define AML_QWORD_PREFIX 0x0e
#define AML_SCOPE_OP 0x10
#define AML_BUFFER_OP 0x11
#define AML_PACKAGE_OP 0x12
#define AML_METHOD_OP 0x14
#define AML_DUAL_NAME_PREFIX 0x2e
#define AML_MULTI_NAME_PREFIX 0x2f
#define AML_EXT_OP_PREFIX 0x5b
#define AML_DEVICE_OP 0x82 /* after AML_EXT_OP_PREFIX */
#define AML_NOTIFY_OP 0x86
#define AML_ROOT_CHAR 0x5c /* '\\' */
#define AML_PARENT_PREFIX 0x5e /* '^' */
#define AML_RETURN_OP 0xa4

/* Largest value a PkgLength can encode (28 bits, §20.2.4). */
#define AML_PKGLENGTH_MAX 0x0fffffffu

struct aml {
	uint8_t *buf; /* output, may be NULL when cap == 0 */
	size_t cap;   /* bytes available at buf */
	size_t len;   /* bytes emitted; keeps counting after an error */
	int err;      /* first error (0, -ENOSPC, -EINVAL, -E2BIG) */
};

/* Start an empty builder writing into buf[0..cap).  buf may be NULL if cap
 * is 0, which only measures. */
void aml_init(struct aml *a, uint8_t *buf, size_t cap);

/*
 * Encode a PkgLength (§20.2.4) for a package whose body (everything after
 * the PkgLength bytes) is body_len bytes.  The encoded value counts the
 * PkgLength bytes themselves.  Writes 1..4 bytes to out and returns how many,
 * or -E2BIG if the total exceeds AML_PKGLENGTH_MAX.
 *
 *   1 byte  (total <= 0x3f):     [7:6]=0  [5:0]=len
 *   2..4    (total <= 0xfff, 0xfffff, 0xfffffff):
 *           byte0: [7:6]=n-1 following bytes, [5:4]=0, [3:0]=len[3:0]
 *           byte1..: len[11:4], len[19:12], len[27:20]
 */
int aml_pkglength_encode(size_t body_len, uint8_t out[4]);

/* Append raw bytes (pre-encoded AML, e.g. another module's objects). */
int aml_raw(struct aml *a, const void *data, size_t len);

/* Append one raw byte. */
int aml_byte(struct aml *a, uint8_t b);

/*
 * Append a NameString (§20.2.2) parsed from ASL-like text: an optional root
 * prefix "\\" or any number of "^" parent prefixes, then zero or more
 * dot-separated segments of 1-4 characters ([A-Z_][A-Z0-9_]*), padded to 4
 * with '_'.  One segment is a NameSeg, two a DualNamePath, 3-255 a
 * MultiNamePath, none a NullName.  -EINVAL for anything else.
 */
int aml_namestring(struct aml *a, const char *path);

/* Append an integer with the shortest encoding (§20.2.3): ZeroOp, OneOp,
 * BytePrefix, WordPrefix, DWordPrefix or QWordPrefix.  (OnesOp is never used:
 * its value depends on the definition block revision.) */
int aml_integer(struct aml *a, uint64_t v);

/* Append an integer with a fixed-width prefix, whatever its value. */
int aml_byte_const(struct aml *a, uint8_t v);
int aml_word_const(struct aml *a, uint16_t v);
int aml_dword_const(struct aml *a, uint32_t v);
int aml_qword_const(struct aml *a, uint64_t v);

/* Append a String (§20.2.3: StringPrefix AsciiCharList NullChar).  Bytes
 * must be 0x01-0x7f; -EINVAL otherwise. */
int aml_string(struct aml *a, const char *s);

/*
 * Compress a 7-character EISA ID ("PNP0501": 3 letters A-Z, 4 hex digits)
 * into the 32-bit value ASL's EISAID() macro produces (§19.6, EISAID):
 *
 *   byte 0: 0 | c1[4:0] | c2[4:3]       (cN = letter - 0x40)
 *   byte 1: c2[2:0] | c3[4:0]
 *   byte 2: hex digit 1 | hex digit 2
 *   byte 3: hex digit 3 | hex digit 4
 *
 * The bytes are in memory order, so the value is little-endian:
 * "PNP0501" -> 0x0105d041.  Returns 0 or -EINVAL.
 */
int aml_eisaid_value(const char *id, uint32_t *out);

/* Append EisaId(id) as a DWordConst. */
int aml_eisaid(struct aml *a, const char *id);

/* Name(path, ...): append NameOp and the name; the caller appends exactly
 * one data object next (integer, string, package, buffer...). */
int aml_name_decl(struct aml *a, const char *path);
/* Name(path, integer) */
int aml_name_integer(struct aml *a, const char *path, uint64_t v);
/* Name(path, "string") */
int aml_name_string(struct aml *a, const char *path, const char *s);
/* Name(path, EisaId("id")) */
int aml_name_eisaid(struct aml *a, const char *path, const char *id);

/* Scope(path) { ... }: returns the mark to pass to aml_scope_end. */
size_t aml_scope_begin(struct aml *a, const char *path);
int aml_scope_end(struct aml *a, size_t mark);

/* Device(path) { ... } */
size_t aml_device_begin(struct aml *a, const char *path);
int aml_device_end(struct aml *a, size_t mark);

/* Method(path, nargs, Serialized/NotSerialized) { ... }, sync level 0.
 * nargs 0..7 (-EINVAL otherwise). */
size_t aml_method_begin(struct aml *a, const char *path, unsigned nargs, bool serialized);
int aml_method_end(struct aml *a, size_t mark);

/* Return(...): appends ReturnOp; the caller appends the returned term. */
int aml_return(struct aml *a);

/* Method(path, 0, NotSerialized) { Return(v) } */
int aml_method_return_integer(struct aml *a, const char *path, uint64_t v);

/* Notify(path, value) (§19.6.92; DefNotify := NotifyOp NotifyObject
 * NotifyValue, §20.2.5.3): NotifyOp, the object's NameString, the value as
 * an integer (aml_integer). */
int aml_notify(struct aml *a, const char *path, uint64_t value);

/* Package() { ... }: the caller appends nelem data objects, then ends the
 * package with their count (0..255; -E2BIG above). */
size_t aml_package_begin(struct aml *a);
int aml_package_end(struct aml *a, size_t mark, unsigned nelem);

/* Buffer() { bytes }: the caller appends raw bytes (aml_raw/aml_byte); the
 * end call prefixes BufferSize with their count. */
size_t aml_buffer_begin(struct aml *a);
int aml_buffer_end(struct aml *a, size_t mark);

/* Buffer() { data[0..len) } in one call. */
int aml_buffer(struct aml *a, const void *data, size_t len);

/*
 * ResourceTemplate() { ... }: a Buffer of resource descriptors (ACPI 6.4
 * §6.4).  Append descriptors with the aml_res_* calls; the end call appends
 * the End Tag (§6.4.2.9) with a checksum that makes the whole template,
 * End Tag included, sum to zero, then closes the Buffer.
 */
size_t aml_restemplate_begin(struct aml *a);
int aml_restemplate_end(struct aml *a, size_t mark);

/* IO(Decode16, min, max, align, len) — I/O Port Descriptor, §6.4.2.5:
 *   0x47 | info (bit0 = 16-bit decode) | min lo,hi | max lo,hi | align | len */
int aml_res_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len);

/* IRQNoFlags() {irq} — IRQ Descriptor without the info byte, §6.4.2.1:
 *   0x22 | mask lo | mask hi     (edge, active-high, exclusive)
 * irq 0..15, -EINVAL otherwise. */
int aml_res_irq_noflags(struct aml *a, unsigned irq);

/* Memory32Fixed(ReadWrite/ReadOnly, base, len) — §6.4.3.4:
 *   0x86 | len=9 (2 bytes) | info (bit0 = RW) | base (4) | length (4) */
int aml_res_memory32_fixed(struct aml *a, uint32_t base, uint32_t len, bool writable);

/* Extended Interrupt Descriptor flags, §6.4.3.6 */
#define AML_INT_CONSUMER (1u << 0)
#define AML_INT_EDGE (1u << 1)       /* 0 = level */
#define AML_INT_ACTIVE_LOW (1u << 2) /* 0 = active-high */
#define AML_INT_SHARED (1u << 3)
#define AML_INT_WAKE (1u << 4)

/* Interrupt(..) {gsi} — Extended Interrupt Descriptor with one interrupt:
 *   0x89 | len=6 (2) | flags | count=1 | gsi (4) */
int aml_res_interrupt(struct aml *a, uint8_t flags, uint32_t gsi);

/* Address space descriptors (QWord §6.4.3.5.1, DWord §6.4.3.5.2, Word
 * §6.4.3.5.3):
 *
 *   tag | length (2) | resource type | general flags | type flags |
 *   granularity | min | max | translation offset | length
 *
 * with the last five fields 8, 4 or 2 bytes each.
 */
#define AML_RES_TYPE_MEMORY 0
#define AML_RES_TYPE_IO 1
#define AML_RES_TYPE_BUS 2

/* General flags */
#define AML_ADDR_CONSUMER (1u << 0)  /* 0 = ResourceProducer (bridge windows) */
#define AML_ADDR_SUB_DECODE (1u << 1) /* 0 = PosDecode */
#define AML_ADDR_MIN_FIXED (1u << 2)
#define AML_ADDR_MAX_FIXED (1u << 3)

/* Memory type-specific flags, §6.4.3.5.5: bit0 _RW, bits 2:1 _MEM */
#define AML_MEM_RW (1u << 0)
#define AML_MEM_NONCACHEABLE (0u << 1)
#define AML_MEM_CACHEABLE (1u << 1)
#define AML_MEM_WRITE_COMBINING (2u << 1)
#define AML_MEM_PREFETCHABLE (3u << 1)

/* I/O type-specific flags, §6.4.3.5.5: bits 1:0 _RNG */
#define AML_IO_ENTIRE_RANGE 3u

struct aml_addr_space {
	uint8_t type;       /* AML_RES_TYPE_* */
	uint8_t gen_flags;  /* AML_ADDR_* */
	uint8_t type_flags; /* AML_MEM_* / AML_IO_* / 0 for bus numbers */
	uint64_t granularity;
	uint64_t min;
	uint64_t max;
	uint64_t translation;
	uint64_t length;
};

/* Append a Word/DWord/QWord Address Space Descriptor.  -EINVAL if a field
 * does not fit the descriptor's width. */
int aml_res_word_addr(struct aml *a, const struct aml_addr_space *s);
int aml_res_dword_addr(struct aml *a, const struct aml_addr_space *s);
int aml_res_qword_addr(struct aml *a, const struct aml_addr_space *s);

/*
 * Shorthands for host-bridge windows: ResourceProducer, PosDecode,
 * MinFixed, MaxFixed, granularity 0, no translation, length max-min+1.
 * -EINVAL if max < min.
 */
/* WordBusNumber(..., min, max) */
int aml_res_word_bus_number(struct aml *a, uint16_t min, uint16_t max);
/* DWordIO(..., EntireRange, min, max) */
int aml_res_dword_io(struct aml *a, uint32_t min, uint32_t max);
/* DWordMemory(..., cache, ReadWrite, min, max); cache = AML_MEM_* cache type */
int aml_res_dword_memory(struct aml *a, uint8_t cache, uint32_t min, uint32_t max);
/* QWordMemory(..., cache, ReadWrite, min, max) */
int aml_res_qword_memory(struct aml *a, uint8_t cache, uint64_t min, uint64_t max);

#endif
