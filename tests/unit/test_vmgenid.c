/* SPDX-License-Identifier: MIT */
/*
 * The VM generation ID device: the ID written into guest memory at boot,
 * a new one (never the saved one) on every restore with exactly one
 * notification after it, the state through a state file and every refusal
 * of its decoder.
 */
#include <errno.h>
#include <stdlib.h>

#include "../../src/arch/x86/layout.h"
#include "../../src/devices/acpi_pm.h"
#include "../../src/devices/vmgenid.h"
#include "../../src/snapshot/format.h"
#include "dev_fake.h"
#include "test.h"

static char err[256];

/* guest memory: a page, the ID somewhere inside, guard bytes around it */
static uint8_t mem[4096];
#define AT 256

static int notified;
static void on_notify(void *ctx)
{
	(*(int *)ctx)++;
}

/* a random source the test controls: a counter, or a fixed pattern, or a
 * failure */
static uint8_t next_byte;
static int fake_mode; /* 0 counting, 1 always the same 16 bytes, 2 fail */
static int fake_calls;
static int fake_random(void *buf, size_t len)
{
	fake_calls++;
	if (fake_mode == 2)
		return -ENOSYS;
	uint8_t *b = buf;
	for (size_t i = 0; i < len; i++)
		b[i] = fake_mode == 1 ? 0x42 : next_byte++;
	return 0;
}

static void rig(struct vmgenid *g)
{
	memset(mem, 0xcc, sizeof(mem));
	notified = 0;
	fake_mode = 0;
	fake_calls = 0;
	CHECK_EQ(vmgenid_init(g, mem + AT, GPA_VMGENID, on_notify, &notified), 0);
}

static bool guards_intact(void)
{
	for (size_t i = 0; i < sizeof(mem); i++)
		if ((i < AT || i >= AT + VMGENID_ID_LEN) && mem[i] != 0xcc)
			return false;
	return true;
}

TEST(init_checks_its_arguments)
{
	struct vmgenid g;
	CHECK_EQ(vmgenid_init(&g, NULL, GPA_VMGENID, NULL, NULL), -EINVAL);
	for (uint64_t off = 1; off < 8; off++)
		CHECK_EQ(vmgenid_init(&g, mem, GPA_VMGENID + off, NULL, NULL), -EINVAL);
	CHECK_EQ(vmgenid_init(&g, mem, GPA_VMGENID + 8, NULL, NULL), 0);
	/* the machine's address is 8-byte aligned, in the BIOS area, after
	 * the ACPI tables */
	CHECK_EQ(GPA_VMGENID % 8, 0);
	CHECK(GPA_VMGENID >= GPA_ACPI_TABLES + ACPI_TABLES_MAX);
	CHECK(GPA_VMGENID + VMGENID_LEN <= GPA_BIOS_AREA_END);
	CHECK_EQ(VMGENID_LEN, VMGENID_ID_LEN);
	/* init writes nothing */
	rig(&g);
	CHECK(guards_intact());
	CHECK_EQ(mem[AT], 0xcc);
}

TEST(boot_id_from_the_host_generator)
{
	struct vmgenid g;
	rig(&g);
	/* the default source is getrandom: two machines get different IDs */
	CHECK_EQ(vmgenid_new_id(&g), 0);
	uint8_t first[VMGENID_ID_LEN];
	memcpy(first, mem + AT, sizeof(first));
	CHECK(!memcmp(first, g.id, sizeof(first)));
	CHECK(guards_intact());
	struct vmgenid h;
	static uint8_t other[64];
	CHECK_EQ(vmgenid_init(&h, other, GPA_VMGENID, NULL, NULL), 0);
	CHECK_EQ(vmgenid_new_id(&h), 0);
	CHECK(memcmp(other, first, VMGENID_ID_LEN) != 0);
	CHECK_EQ(notified, 0); /* a boot ID is not announced */
	CHECK_EQ(g.generations, 1);
}

TEST(new_id_always_differs)
{
	struct vmgenid g;
	rig(&g);
	g.random = fake_random;
	next_byte = 0;
	CHECK_EQ(vmgenid_new_id(&g), 0);
	for (int i = 0; i < VMGENID_ID_LEN; i++)
		CHECK_EQ(mem[AT + i], i);
	/* a source that repeats the current ID is asked again */
	memset(g.id, 0x42, sizeof(g.id));
	memset(mem + AT, 0x42, VMGENID_ID_LEN);
	fake_mode = 1;
	fake_calls = 0;
	CHECK_EQ(vmgenid_new_id(&g), -EIO);
	CHECK_EQ(fake_calls, 4);
	/* nothing written then */
	for (int i = 0; i < VMGENID_ID_LEN; i++)
		CHECK_EQ(mem[AT + i], 0x42);
	/* a failing source: its error, nothing written */
	fake_mode = 2;
	CHECK_EQ(vmgenid_new_id(&g), -ENOSYS);
	CHECK_EQ(mem[AT], 0x42);
	CHECK(guards_intact());
	CHECK_EQ(notified, 0);
}

/* Through a state file: the saved ID and address; the restored device
 * writes a new ID, notifies exactly once, and only when asked. */
TEST(restore_writes_a_new_id_and_notifies_once)
{
	struct vmgenid a, b;
	rig(&a);
	CHECK_EQ(vmgenid_new_id(&a), 0);
	uint8_t saved[VMGENID_ID_LEN];
	memcpy(saved, mem + AT, sizeof(saved));
	struct vmgenid_state st, st2;
	vmgenid_state_get(&a, &st);
	CHECK_EQ(st.gpa, GPA_VMGENID);
	CHECK(!memcmp(st.id, saved, sizeof(saved)));

	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "x", VMGENID_STATE_VERSION);
	vmgenid_state_encode(&st, &w);
	snap_writer_section_end(&w);
	uint8_t *buf;
	size_t len;
	CHECK_EQ(snap_writer_finish(&w, &buf, &len), 0);
	struct snap_reader rd;
	CHECK_EQ(snap_reader_open(buf, len, &rd, err, sizeof(err)), 0);
	const uint8_t *p;
	size_t plen;
	uint32_t version;
	CHECK_EQ(snap_reader_find(&rd, "x", &version, &p, &plen), 0);
	CHECK_EQ(plen, 24);
	CHECK_EQ(vmgenid_state_decode(p, plen, version, GPA_VMGENID, &st2, err, sizeof(err)), 0);
	CHECK(!memcmp(&st, &st2, sizeof(st)));

	/* the restored machine's memory holds the snapshot's bytes */
	static uint8_t mem2[64];
	memcpy(mem2 + 8, saved, sizeof(saved));
	int n2 = 0;
	CHECK_EQ(vmgenid_init(&b, mem2 + 8, GPA_VMGENID, on_notify, &n2), 0);
	CHECK(!vmgenid_notify_restored(&b)); /* nothing restored yet */
	CHECK_EQ(vmgenid_state_put(&b, &st2), 0);
	CHECK(memcmp(mem2 + 8, saved, sizeof(saved)) != 0);
	CHECK(!memcmp(mem2 + 8, b.id, sizeof(saved)));
	CHECK_EQ(n2, 0); /* not before the machine says so */
	CHECK(vmgenid_notify_restored(&b));
	CHECK_EQ(n2, 1);
	CHECK(!vmgenid_notify_restored(&b));
	CHECK_EQ(n2, 1);

	/* a second clone of the same state gets yet another ID */
	static uint8_t mem3[64];
	memcpy(mem3 + 8, saved, sizeof(saved));
	struct vmgenid c;
	int n3 = 0;
	CHECK_EQ(vmgenid_init(&c, mem3 + 8, GPA_VMGENID, on_notify, &n3), 0);
	CHECK_EQ(vmgenid_state_put(&c, &st2), 0);
	CHECK(memcmp(mem3 + 8, saved, sizeof(saved)) != 0);
	CHECK(memcmp(mem3 + 8, mem2 + 8, sizeof(saved)) != 0);

	/* a generator that only repeats the saved ID fails the restore */
	struct vmgenid d;
	CHECK_EQ(vmgenid_init(&d, mem3 + 8, GPA_VMGENID, on_notify, &n3), 0);
	d.random = fake_random;
	fake_mode = 1;
	memset(st2.id, 0x42, sizeof(st2.id));
	CHECK_EQ(vmgenid_state_put(&d, &st2), -EIO);
	CHECK(!vmgenid_notify_restored(&d));
	CHECK_EQ(n3, 0);
	free(buf);
}

/* The decoder refuses what this machine cannot hold: another address,
 * another version, a payload too short or too long. */
TEST(decode_refusals)
{
	struct vmgenid_state st = {.gpa = GPA_VMGENID}, out;
	for (int i = 0; i < VMGENID_ID_LEN; i++)
		st.id[i] = (uint8_t)(0xf0 + i);
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "x", VMGENID_STATE_VERSION);
	vmgenid_state_encode(&st, &w);
	snap_writer_section_end(&w);
	uint8_t *buf;
	size_t len;
	CHECK_EQ(snap_writer_finish(&w, &buf, &len), 0);
	struct snap_reader rd;
	CHECK_EQ(snap_reader_open(buf, len, &rd, err, sizeof(err)), 0);
	const uint8_t *p;
	size_t plen;
	uint32_t version;
	CHECK_EQ(snap_reader_find(&rd, "x", &version, &p, &plen), 0);
	/* any ID is one the guest may have had */
	CHECK_EQ(vmgenid_state_decode(p, plen, version, GPA_VMGENID, &out, err, sizeof(err)), 0);
	/* another machine's address */
	err[0] = 0;
	CHECK_EQ(vmgenid_state_decode(p, plen, version, GPA_VMGENID + 0x1000, &out, err, sizeof(err)),
		 -EINVAL);
	CHECK(strstr(err, "0xef000") != NULL);
	uint8_t *bad = malloc(plen + 1);
	memcpy(bad, p, plen);
	bad[7] = 0x80; /* the address's top byte */
	CHECK_EQ(vmgenid_state_decode(bad, plen, version, GPA_VMGENID, &out, err, sizeof(err)),
		 -EINVAL);
	/* every proper prefix, one byte more */
	for (size_t n = 0; n < plen; n++) {
		err[0] = 0;
		CHECK_EQ(vmgenid_state_decode(p, n, version, GPA_VMGENID, &out, err, sizeof(err)),
			 -EINVAL);
		CHECK(err[0] != 0);
	}
	memcpy(bad, p, plen);
	bad[plen] = 0;
	CHECK_EQ(vmgenid_state_decode(bad, plen + 1, version, GPA_VMGENID, &out, err, sizeof(err)),
		 -EINVAL);
	/* other versions */
	for (uint32_t v = 0; v < 4; v++) {
		if (v == VMGENID_STATE_VERSION)
			continue;
		err[0] = 0;
		CHECK_EQ(vmgenid_state_decode(p, plen, v, GPA_VMGENID, &out, err, sizeof(err)),
			 -EINVAL);
		CHECK(strstr(err, "version") != NULL);
	}
	free(bad);
	free(buf);
}

/* What the machine wires: the device's notification raises the ACPI PM
 * device's GPE, which the DSDT's _E00 turns into Notify (VGEN, 0x80). */
static void raise_gpe(void *ctx)
{
	acpi_pm_raise_gpe(ctx, ACPI_GPE_VMGENID);
}

TEST(notification_raises_the_gpe)
{
	struct acpi_pm pm;
	struct fake_irq sci = {0};
	struct irq_line line = {fake_set_level, &sci, IRQ_ACPI_SCI};
	CHECK_EQ(acpi_pm_init(&pm, &line, NULL, NULL, NULL), 0);
	uint32_t en = 1u << ACPI_GPE_VMGENID;
	pm.gpe_bus.ops->write(&pm.gpe_bus, 2, &en, 2);
	struct vmgenid g;
	static uint8_t m[16];
	CHECK_EQ(vmgenid_init(&g, m, GPA_VMGENID, raise_gpe, &pm), 0);
	struct vmgenid_state st = {.gpa = GPA_VMGENID};
	CHECK_EQ(vmgenid_state_put(&g, &st), 0);
	CHECK_EQ(sci.level, 0);
	CHECK(vmgenid_notify_restored(&g));
	CHECK_EQ(sci.level, 1);
	uint32_t sts = 0;
	pm.gpe_bus.ops->read(&pm.gpe_bus, 0, &sts, 2);
	CHECK_EQ(sts, 1u << ACPI_GPE_VMGENID);
	acpi_pm_destroy(&pm);
}

TEST_MAIN()
