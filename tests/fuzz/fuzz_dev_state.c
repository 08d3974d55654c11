/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the legacy devices' snapshot state loaders (serial,
 * rtc, i8042, acpi-pm in its versions 2 and 1, vmgenid: X_state_decode) and
 * the registry's device list, all of which read a snapshot file the user
 * names.
 *
 * The first byte picks the loader, the rest is the section payload.  Beyond
 * crashes and sanitizer reports, these must hold:
 *   - a refusal is -EINVAL with a one-line message;
 *   - an accepted payload has one encoding: encoding the decoded state
 *     gives the payload back byte for byte;
 *   - a device given an accepted state works: it is put into a fresh
 *     device, every register is read and written, and the state taken out
 *     again decodes.
 * For the device list, the payload is the "devices" section of a file
 * checked against a fixed registry: refused with a message or accepted,
 * never a crash, and never a device changed when refused.
 * Selector 5: the "config" section (snapshot/config_section.c): refused
 * with a message, or accepted and then written and read back to the same
 * configuration.  Selector 6: acpi-pm version 1 (no GPE0 block), which
 * decodes to the state a version 2 file with GPE0 0 gives.  Selector 7:
 * vmgenid, put into a device (which must then write a new ID and notify
 * once).
 * Selector 8: the "memory" section (snapshot/mem_section.c: Full, Diff or
 * Merging, the identities): refused with a message, or accepted with one
 * encoding (written again it is the same bytes), and put into a state
 * file in place of another memory section (snap_mem_rewrite) it reads
 * back the same.
 * Seeds: tests/fuzz/corpus-dev_state (one valid payload per loader).
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/arch/x86/layout.h"
#include "../../src/devices/acpi_pm.h"
#include "../../src/devices/i8042.h"
#include "../../src/devices/registry.h"
#include "../../src/devices/rtc.h"
#include "../../src/devices/serial.h"
#include "../../src/devices/vmgenid.h"
#include "../../src/snapshot/config_section.h"
#include "../../src/snapshot/format.h"
#include "../../src/snapshot/mem_section.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void no_level(void *ctx, uint32_t gsi, int level)
{
	(void)ctx;
	(void)gsi;
	(void)level;
}

static void no_tx(void *ctx, const uint8_t *buf, size_t len)
{
	(void)ctx;
	(void)buf;
	(void)len;
}

static void no_cb(void *ctx)
{
	(void)ctx;
}

static const struct irq_line line = {.set_level = no_level};

/* Touch every register of @dev (offsets 0..n-1) with reads and writes of
 * the payload's own bytes. */
static void poke(struct bus_dev *dev, uint64_t n, const uint8_t *p, size_t len)
{
	for (uint64_t off = 0; off < n; off++) {
		uint8_t v = 0;
		dev->ops->read(dev, off, &v, 1);
		v = len ? p[off % len] : 0;
		dev->ops->write(dev, off, &v, 1);
		dev->ops->read(dev, off, &v, 1);
	}
}

static void refused(int rc, const char *err)
{
	if (rc != -EINVAL || !err[0] || strchr(err, '\n'))
		__builtin_trap();
}

/* Encode @st with @enc and compare with p[0..len). */
#define SAME_BYTES(enc, st, p, len)                                                           \
	do {                                                                                  \
		struct snap_writer w_;                                                        \
		snap_writer_init(&w_);                                                        \
		snap_writer_section_begin(&w_, "x", 1);                                       \
		enc((st), &w_);                                                               \
		size_t got_ = w_.len - SNAP_HEADER_LEN - SNAP_SECTION_HEADER_LEN;             \
		if (w_.err || got_ != (len) ||                                                \
		    memcmp(w_.buf + SNAP_HEADER_LEN + SNAP_SECTION_HEADER_LEN, (p), (len)))   \
			__builtin_trap();                                                     \
		snap_writer_free(&w_);                                                        \
	} while (0)

static void fuzz_serial(const uint8_t *p, size_t len)
{
	struct serial_state st, again;
	char err[256] = "";
	int rc = serial_state_decode(p, len, SERIAL_STATE_VERSION, &st, err, sizeof(err));
	if (rc) {
		refused(rc, err);
		return;
	}
	SAME_BYTES(serial_state_encode, &st, p, len);
	struct serial s;
	if (serial_init(&s, &line, no_tx, NULL))
		return;
	serial_set_rx_ready_cb(&s, no_cb, NULL);
	serial_state_put(&s, &st);
	poke(&s.bus, SERIAL_NREGS + 1, p, len);
	(void)serial_input(&s, p, len);
	serial_state_get(&s, &st);
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "x", 1);
	serial_state_encode(&st, &w);
	if (serial_state_decode(w.buf + SNAP_HEADER_LEN + SNAP_SECTION_HEADER_LEN,
				w.len - SNAP_HEADER_LEN - SNAP_SECTION_HEADER_LEN, SERIAL_STATE_VERSION,
				&again, err, sizeof(err)))
		__builtin_trap();
	snap_writer_free(&w);
	serial_destroy(&s);
}

static void fuzz_rtc(const uint8_t *p, size_t len)
{
	struct rtc_state st, again;
	char err[256] = "";
	int rc = rtc_state_decode(p, len, RTC_STATE_VERSION, &st, err, sizeof(err));
	if (rc) {
		refused(rc, err);
		return;
	}
	SAME_BYTES(rtc_state_encode, &st, p, len);
	struct rtc rtc;
	if (rtc_init(&rtc, &line))
		return;
	rtc_state_put(&rtc, &st);
	/* every CMOS index read and written through the ports */
	for (unsigned i = 0; i < 128; i++) {
		uint8_t ix = (uint8_t)i, v = 0;
		rtc.bus.ops->write(&rtc.bus, 0, &ix, 1);
		rtc.bus.ops->read(&rtc.bus, 1, &v, 1);
		if (i != RTC_REG_B && i != RTC_REG_A)
			rtc.bus.ops->write(&rtc.bus, 1, &v, 1);
	}
	(void)rtc_tick(&rtc);
	rtc_state_get(&rtc, &st);
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "x", 1);
	rtc_state_encode(&st, &w);
	if (rtc_state_decode(w.buf + SNAP_HEADER_LEN + SNAP_SECTION_HEADER_LEN,
			     w.len - SNAP_HEADER_LEN - SNAP_SECTION_HEADER_LEN, RTC_STATE_VERSION,
			     &again, err, sizeof(err))) {
		fprintf(stderr, "rtc: re-decode: %s\n", err);
		__builtin_trap();
	}
	snap_writer_free(&w);
	rtc_destroy(&rtc);
}

static void fuzz_i8042(const uint8_t *p, size_t len)
{
	struct i8042_state st, again;
	char err[256] = "";
	int rc = i8042_state_decode(p, len, I8042_STATE_VERSION, &st, err, sizeof(err));
	if (rc) {
		refused(rc, err);
		return;
	}
	SAME_BYTES(i8042_state_encode, &st, p, len);
	struct i8042 k;
	if (i8042_init(&k, NULL, NULL))
		return;
	i8042_set_irqs(&k, &line, &line);
	i8042_state_put(&k, &st);
	for (size_t i = 0; i < 8; i++) {
		uint8_t v = 0;
		k.cmd_bus.ops->read(&k.cmd_bus, 0, &v, 1);
		k.data_bus.ops->read(&k.data_bus, 0, &v, 1);
		v = len ? p[i % len] : 0;
		/* no reset pulses (0xf0-0xff): the reset callback is NULL anyway */
		if (i & 1)
			k.data_bus.ops->write(&k.data_bus, 0, &v, 1);
	}
	i8042_send_ctrl_alt_del(&k);
	i8042_state_get(&k, &st);
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "x", 1);
	i8042_state_encode(&st, &w);
	if (i8042_state_decode(w.buf + SNAP_HEADER_LEN + SNAP_SECTION_HEADER_LEN,
			       w.len - SNAP_HEADER_LEN - SNAP_SECTION_HEADER_LEN, I8042_STATE_VERSION,
			       &again, err, sizeof(err)))
		__builtin_trap();
	snap_writer_free(&w);
	i8042_destroy(&k);
}

static void fuzz_acpi_pm(const uint8_t *p, size_t len)
{
	struct acpi_pm_state st, again;
	char err[256] = "";
	int rc = acpi_pm_state_decode(p, len, ACPI_PM_STATE_VERSION, &st, err, sizeof(err));
	if (rc) {
		refused(rc, err);
		return;
	}
	SAME_BYTES(acpi_pm_state_encode, &st, p, len);
	struct acpi_pm pm;
	if (acpi_pm_init(&pm, &line, NULL, NULL, NULL))
		return;
	acpi_pm_state_put(&pm, &st);
	poke(&pm.evt_bus, 4, p, len);
	acpi_pm_raise_gpe(&pm, len ? p[0] : 0);
	poke(&pm.gpe_bus, PORT_ACPI_GPE0_LEN + 1, p, len);
	uint32_t t = 0;
	pm.tmr_bus.ops->read(&pm.tmr_bus, 0, &t, 4);
	acpi_pm_state_get(&pm, &st);
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "x", 1);
	acpi_pm_state_encode(&st, &w);
	if (acpi_pm_state_decode(w.buf + SNAP_HEADER_LEN + SNAP_SECTION_HEADER_LEN,
				 w.len - SNAP_HEADER_LEN - SNAP_SECTION_HEADER_LEN,
				 ACPI_PM_STATE_VERSION, &again, err, sizeof(err)))
		__builtin_trap();
	snap_writer_free(&w);
	acpi_pm_destroy(&pm);
}

/* acpi-pm version 1: what it accepts is version 2's state without GPE0 */
static void fuzz_acpi_pm_v1(const uint8_t *p, size_t len)
{
	struct acpi_pm_state st, again;
	char err[256] = "";
	int rc = acpi_pm_state_decode(p, len, 1, &st, err, sizeof(err));
	if (rc) {
		refused(rc, err);
		return;
	}
	if (len != 16 || st.gpe_sts || st.gpe_en)
		__builtin_trap();
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "x", ACPI_PM_STATE_VERSION);
	acpi_pm_state_encode(&st, &w);
	if (acpi_pm_state_decode(w.buf + SNAP_HEADER_LEN + SNAP_SECTION_HEADER_LEN,
				 w.len - SNAP_HEADER_LEN - SNAP_SECTION_HEADER_LEN,
				 ACPI_PM_STATE_VERSION, &again, err, sizeof(err)) ||
	    memcmp(&st, &again, sizeof(st)) ||
	    memcmp(w.buf + SNAP_HEADER_LEN + SNAP_SECTION_HEADER_LEN, p, 16))
		__builtin_trap();
	snap_writer_free(&w);
}

static int notifications;
static void count_notify(void *ctx)
{
	(void)ctx;
	notifications++;
}

static void fuzz_vmgenid(const uint8_t *p, size_t len)
{
	struct vmgenid_state st, again;
	char err[256] = "";
	int rc = vmgenid_state_decode(p, len, VMGENID_STATE_VERSION, GPA_VMGENID, &st, err,
				      sizeof(err));
	if (rc) {
		refused(rc, err);
		return;
	}
	SAME_BYTES(vmgenid_state_encode, &st, p, len);
	uint8_t mem[VMGENID_ID_LEN];
	memcpy(mem, st.id, sizeof(mem));
	struct vmgenid g;
	if (vmgenid_init(&g, mem, GPA_VMGENID, count_notify, NULL))
		__builtin_trap();
	notifications = 0;
	if (vmgenid_state_put(&g, &st))
		return; /* no random bytes on this host: nothing written */
	/* a new ID, announced once */
	if (!memcmp(mem, st.id, sizeof(mem)) || !vmgenid_notify_restored(&g) ||
	    vmgenid_notify_restored(&g) || notifications != 1)
		__builtin_trap();
	vmgenid_state_get(&g, &again);
	if (again.gpa != st.gpa || memcmp(again.id, mem, sizeof(mem)))
		__builtin_trap();
}

/* The device list against a registry of a serial port and a stateless
 * device; the payload is the list, and "dev.0" holds a valid serial state. */
static int applied;
static int fake_save(struct dev_record *r, struct snap_writer *w)
{
	(void)r;
	struct serial_state st = {.dll = 12};
	serial_state_encode(&st, w);
	return 0;
}
static int fake_load(struct dev_record *r, const uint8_t *p, size_t len, uint32_t v, void *state,
		     char *e, size_t elen)
{
	(void)r;
	return serial_state_decode(p, len, v, state, e, elen);
}
static int fake_apply(struct dev_record *r, const void *state, char *e, size_t elen)
{
	(void)r;
	(void)state;
	(void)e;
	(void)elen;
	applied++;
	return 0;
}
static const struct dev_ops fake_ops = {.state_version = SERIAL_STATE_VERSION,
					.state_size = sizeof(struct serial_state),
					.save = fake_save,
					.load = fake_load,
					.apply = fake_apply};

static void fuzz_registry(const uint8_t *p, size_t len)
{
	struct dev_registry reg;
	memset(&reg, 0, sizeof(reg));
	struct dev_record rec;
	memset(&rec, 0, sizeof(rec));
	strcpy(rec.id, "com1");
	rec.type = "serial";
	rec.ops = &fake_ops;
	registry_add(&reg, &rec);
	strcpy(rec.id, "pvpanic");
	rec.type = "pvpanic";
	rec.ops = NULL;
	registry_add(&reg, &rec);

	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, REGISTRY_MANIFEST_ID, REGISTRY_MANIFEST_VERSION);
	snap_put_bytes(&w, p, len);
	snap_writer_section_end(&w);
	snap_writer_section_begin(&w, "dev.0", SERIAL_STATE_VERSION);
	fake_save(&reg.r[0], &w);
	snap_writer_section_end(&w);
	uint8_t *buf;
	size_t blen;
	if (snap_writer_finish(&w, &buf, &blen))
		return;
	struct snap_reader rd;
	char err[256] = "";
	if (snap_reader_open(buf, blen, &rd, err, sizeof(err)))
		__builtin_trap();
	applied = 0;
	int rc = registry_restore_all(&reg, &rd, err, sizeof(err));
	if (rc) {
		if (!err[0] || strchr(err, '\n') || applied)
			__builtin_trap();
	} else if (applied != 1) {
		__builtin_trap();
	}
	free(buf);
}

/* The "config" section: refused with a message, or a configuration that
 * saves and loads again to the same thing. */
static void fuzz_config(const uint8_t *p, size_t len)
{
	static struct vm_config c, again;
	char err[256] = "";
	config_init(&c);
	int rc = snap_config_read(p, len, SNAP_CONFIG_VERSION, &c, err, sizeof(err));
	if (rc) {
		refused(rc, err);
		return;
	}
	struct snap_writer w;
	snap_writer_init(&w);
	snap_config_write(&c, &w);
	uint8_t *buf;
	size_t blen;
	if (snap_writer_finish(&w, &buf, &blen))
		__builtin_trap();
	struct snap_reader rd;
	const uint8_t *q;
	size_t qlen;
	uint32_t ver;
	if (snap_reader_open(buf, blen, &rd, err, sizeof(err)) ||
	    snap_reader_find(&rd, SNAP_CONFIG_ID, &ver, &q, &qlen))
		__builtin_trap();
	config_init(&again);
	if (snap_config_read(q, qlen, ver, &again, err, sizeof(err)) || memcmp(&c, &again, sizeof(c)))
		__builtin_trap();
	free(buf);
}

/* The "memory" section. */
static void fuzz_memory(const uint8_t *p, size_t len)
{
	char err[256] = "";
	struct snap_mem_info m, again;
	int rc = snap_mem_decode(p, len, SNAP_MEMORY_VERSION, &m, err, sizeof(err));
	if (rc) {
		refused(rc, err);
		return;
	}
	if (len != SNAP_MEMORY_LEN || m.kind > SNAP_MEM_MERGING || snap_mem_id_zero(m.id))
		__builtin_trap();
	/* one encoding, and a rewrite of a state file that had another */
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "config", 1);
	snap_writer_section_end(&w);
	struct snap_mem_info other = {.kind = SNAP_MEM_FULL, .size = 4096, .id = {1}};
	snap_mem_write(&other, &w);
	uint8_t *buf, *nbuf;
	size_t blen, nlen;
	if (snap_writer_finish(&w, &buf, &blen))
		__builtin_trap();
	snap_writer_free(&w);
	struct snap_reader rd, nrd;
	const uint8_t *q;
	size_t qlen;
	uint32_t ver;
	if (snap_reader_open(buf, blen, &rd, err, sizeof(err)) ||
	    snap_mem_rewrite(&rd, &m, &nbuf, &nlen, err, sizeof(err)) ||
	    snap_reader_open(nbuf, nlen, &nrd, err, sizeof(err)) ||
	    snap_reader_find(&nrd, SNAP_MEMORY_ID, &ver, &q, &qlen) || qlen != len ||
	    memcmp(q, p, len) || snap_mem_find(&nrd, &again, NULL, err, sizeof(err)) ||
	    again.kind != m.kind || again.size != m.size || memcmp(again.id, m.id, 16) ||
	    memcmp(again.base, m.base, 16))
		__builtin_trap();
	free(buf);
	free(nbuf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const uint8_t *p = data + 1;
	size_t len = size - 1;
	switch (data[0] % 9) {
	case 0: fuzz_serial(p, len); break;
	case 1: fuzz_rtc(p, len); break;
	case 2: fuzz_i8042(p, len); break;
	case 3: fuzz_acpi_pm(p, len); break;
	case 4: fuzz_registry(p, len); break;
	case 5: fuzz_config(p, len); break;
	case 6: fuzz_acpi_pm_v1(p, len); break;
	case 7: fuzz_vmgenid(p, len); break;
	default: fuzz_memory(p, len); break;
	}
	return 0;
}
