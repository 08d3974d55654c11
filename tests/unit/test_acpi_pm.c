/* SPDX-License-Identifier: MIT */
#include "../../src/devices/acpi_pm.h"

#include "../../src/arch/x86/layout.h"
#include "dev_fake.h"
#include "test.h"

static int poweroffs, resets;
static void fake_poweroff(void *ctx)
{
	(void)ctx;
	poweroffs++;
}
static void fake_reset(void *ctx)
{
	(void)ctx;
	resets++;
}

static uint64_t fake_ns;
static uint64_t fake_clock(void)
{
	return fake_ns;
}

struct rig {
	struct acpi_pm pm;
	struct fake_irq sci;
	struct irq_line line;
};

static void rig_init(struct rig *r)
{
	memset(r, 0, sizeof(*r));
	poweroffs = resets = 0;
	r->line = (struct irq_line){fake_set_level, &r->sci, IRQ_ACPI_SCI};
	CHECK_EQ(acpi_pm_init(&r->pm, &r->line, fake_poweroff, fake_reset, NULL), 0);
	fake_ns = 1000;
	r->pm.clock_ns = fake_clock;
	r->pm.base_ns = 1000;
}

static uint32_t rd(struct bus_dev *d, uint64_t off, uint32_t len)
{
	uint32_t v = 0;
	d->ops->read(d, off, &v, len);
	return v;
}

static void wr(struct bus_dev *d, uint64_t off, uint32_t v, uint32_t len)
{
	d->ops->write(d, off, &v, len);
}

static uint16_t slp(unsigned typ)
{
	return (uint16_t)(typ << ACPI_PM1_SLP_TYP_SHIFT);
}

TEST(sci_en_always_set)
{
	struct rig r;
	rig_init(&r);
	CHECK_EQ(rd(&r.pm.cnt_bus, 0, 2), ACPI_PM1_SCI_EN);
	wr(&r.pm.cnt_bus, 0, 0, 2);
	CHECK_EQ(rd(&r.pm.cnt_bus, 0, 2), ACPI_PM1_SCI_EN);
	wr(&r.pm.cnt_bus, 0, slp(3) | ACPI_PM1_BM_RLD | ACPI_PM1_GBL_RLS, 2);
	CHECK_EQ(rd(&r.pm.cnt_bus, 0, 2), slp(3) | ACPI_PM1_BM_RLD | ACPI_PM1_SCI_EN);
	CHECK_EQ(rd(&r.pm.cnt_bus, 1, 1), slp(3) >> 8);
	acpi_pm_destroy(&r.pm);
}

TEST(s5_powers_off_once)
{
	struct rig r;
	rig_init(&r);
	/* ACPICA: SLP_TYP first, then SLP_TYP | SLP_EN */
	wr(&r.pm.cnt_bus, 0, slp(ACPI_S5_SLP_TYP), 2);
	CHECK_EQ(poweroffs, 0);
	wr(&r.pm.cnt_bus, 0, slp(ACPI_S5_SLP_TYP) | ACPI_PM1_SLP_EN, 2);
	CHECK_EQ(poweroffs, 1);
	/* SLP_EN is write-only */
	CHECK_EQ(rd(&r.pm.cnt_bus, 0, 2) & ACPI_PM1_SLP_EN, 0);
	/* repeats are counted, not delivered */
	for (int i = 0; i < 1000; i++)
		wr(&r.pm.cnt_bus, 0, slp(ACPI_S5_SLP_TYP) | ACPI_PM1_SLP_EN, 2);
	CHECK_EQ(poweroffs, 1);
	CHECK_EQ(r.pm.poweroffs, 1001);
	CHECK_EQ(resets, 0);
	acpi_pm_destroy(&r.pm);

	/* a byte write to the high half with SLP_EN uses the stored SLP_TYP */
	rig_init(&r);
	wr(&r.pm.cnt_bus, 0, slp(ACPI_S5_SLP_TYP), 2);
	wr(&r.pm.cnt_bus, 1, (slp(ACPI_S5_SLP_TYP) | ACPI_PM1_SLP_EN) >> 8, 1);
	CHECK_EQ(poweroffs, 1);
	acpi_pm_destroy(&r.pm);
}

TEST(other_sleep_types_ignored)
{
	struct rig r;
	rig_init(&r);
	for (unsigned t = 0; t < 8; t++) {
		if (t == ACPI_S5_SLP_TYP)
			continue;
		for (int i = 0; i < 100; i++) /* logs are rate limited */
			wr(&r.pm.cnt_bus, 0, slp(t) | ACPI_PM1_SLP_EN, 2);
	}
	CHECK_EQ(poweroffs, 0);
	CHECK_EQ(resets, 0);
	acpi_pm_destroy(&r.pm);
}

TEST(pm_timer_monotonic_32bit)
{
	struct rig r;
	rig_init(&r);
	CHECK_EQ(rd(&r.pm.tmr_bus, 0, 4), 0);
	fake_ns += 1000000000ULL; /* one second */
	CHECK_EQ(rd(&r.pm.tmr_bus, 0, 4), 3579545);
	uint32_t prev = 0;
	int backwards = 0;
	for (int i = 0; i < 100000; i++) {
		fake_ns += 977;
		uint32_t v = rd(&r.pm.tmr_bus, 0, 4);
		if (v < prev)
			backwards++;
		prev = v;
	}
	CHECK_EQ(backwards, 0);
	/* byte reads see the same counter */
	uint32_t v = rd(&r.pm.tmr_bus, 0, 4);
	CHECK_EQ(rd(&r.pm.tmr_bus, 1, 1), (v >> 8) & 0xff);
	CHECK_EQ(rd(&r.pm.tmr_bus, 3, 1), v >> 24);
	/* writes are ignored */
	wr(&r.pm.tmr_bus, 0, 0, 4);
	CHECK_EQ(rd(&r.pm.tmr_bus, 0, 4), v);
	/* 32 bits wide: past 2^31 ticks (10 min) the top bit is set, and
	 * TMR_STS reports the bit-31 transition */
	CHECK_EQ(rd(&r.pm.evt_bus, 0, 2) & ACPI_PM1_TMR_STS, 0);
	fake_ns = 1000 + 600ULL * 1000000000ULL + 1000000000ULL;
	CHECK(rd(&r.pm.tmr_bus, 0, 4) & 0x80000000u);
	CHECK(rd(&r.pm.evt_bus, 0, 2) & ACPI_PM1_TMR_STS);
	wr(&r.pm.evt_bus, 0, ACPI_PM1_TMR_STS, 2);
	CHECK_EQ(rd(&r.pm.evt_bus, 0, 2) & ACPI_PM1_TMR_STS, 0);
	/* a real clock goes forward too */
	struct acpi_pm real;
	CHECK_EQ(acpi_pm_init(&real, NULL, NULL, NULL, NULL), 0);
	uint32_t a = acpi_pm_timer(&real);
	uint32_t b = rd(&real.tmr_bus, 0, 4);
	CHECK(b >= a);
	acpi_pm_destroy(&real);
	acpi_pm_destroy(&r.pm);
}

/* The PM timer stops while the VM is paused and counts on from the same
 * value after the resume; a timer put (restored) while paused stays at the
 * saved value until the resume. */
TEST(pm_timer_stops_while_paused)
{
	struct rig r;
	rig_init(&r);
	fake_ns += 1000000000ULL;
	CHECK_EQ(rd(&r.pm.tmr_bus, 0, 4), 3579545);
	acpi_pm_pause(&r.pm);
	fake_ns += 5000000000ULL; /* five seconds paused */
	CHECK_EQ(rd(&r.pm.tmr_bus, 0, 4), 3579545);
	struct acpi_pm_state st;
	acpi_pm_state_get(&r.pm, &st);
	CHECK_EQ(st.timer_ns, 1000000000ULL);
	acpi_pm_pause(&r.pm); /* twice: no change */
	acpi_pm_resume(&r.pm);
	CHECK_EQ(rd(&r.pm.tmr_bus, 0, 4), 3579545);
	fake_ns += 1000000000ULL;
	CHECK_EQ(rd(&r.pm.tmr_bus, 0, 4), 2 * 3579545);
	acpi_pm_resume(&r.pm); /* not paused: no change */
	CHECK_EQ(rd(&r.pm.tmr_bus, 0, 4), 2 * 3579545);
	/* restore: paused, state put, time passes, then the resume */
	acpi_pm_pause(&r.pm);
	st.timer_ns = 7000000000ULL;
	acpi_pm_state_put(&r.pm, &st);
	fake_ns += 9000000000ULL;
	acpi_pm_state_get(&r.pm, &st);
	CHECK_EQ(st.timer_ns, 7000000000ULL);
	acpi_pm_resume(&r.pm);
	fake_ns += 1000000000ULL;
	CHECK_EQ(rd(&r.pm.tmr_bus, 0, 4), 8 * 3579545);
	acpi_pm_destroy(&r.pm);
}

TEST(power_button_sci)
{
	struct rig r;
	rig_init(&r);
	acpi_pm_press_power_button(&r.pm);
	CHECK_EQ(rd(&r.pm.evt_bus, 0, 2), ACPI_PM1_PWRBTN_STS);
	CHECK_EQ(r.sci.level, 0); /* not enabled */
	wr(&r.pm.evt_bus, 2, ACPI_PM1_PWRBTN_EN, 2);
	CHECK_EQ(rd(&r.pm.evt_bus, 2, 2), ACPI_PM1_PWRBTN_EN);
	CHECK_EQ(r.sci.level, 1);
	CHECK_EQ(rd(&r.pm.evt_bus, 0, 4), ACPI_PM1_PWRBTN_STS | (ACPI_PM1_PWRBTN_EN << 16));
	/* writing 0 clears nothing; writing 1 clears */
	wr(&r.pm.evt_bus, 0, 0, 2);
	CHECK_EQ(r.sci.level, 1);
	/* a 32-bit write clears STS and rewrites EN in one go */
	wr(&r.pm.evt_bus, 0, ACPI_PM1_PWRBTN_STS | (ACPI_PM1_PWRBTN_EN << 16), 4);
	CHECK_EQ(r.sci.level, 0);
	CHECK_EQ(rd(&r.pm.evt_bus, 0, 4), ACPI_PM1_PWRBTN_EN << 16);
	/* unimplemented EN bits do not stick */
	wr(&r.pm.evt_bus, 2, 0xffff, 2);
	CHECK_EQ(rd(&r.pm.evt_bus, 2, 2), ACPI_PM1_EN_MASK);
	acpi_pm_destroy(&r.pm);
}

/* GPE0_BLK: status latched by the host, write 1 to clear (only the bytes
 * written), enable read/write for implemented GPEs only, SCI while any
 * enabled status is set, shared with PM1. */
TEST(gpe0_block)
{
	struct rig r;
	rig_init(&r);
	const uint32_t bit = 1u << ACPI_GPE_VMGENID;
	CHECK_EQ(rd(&r.pm.gpe_bus, 0, 4), 0);
	/* an event before the guest enabled it stays latched, no SCI */
	acpi_pm_raise_gpe(&r.pm, ACPI_GPE_VMGENID);
	CHECK_EQ(rd(&r.pm.gpe_bus, 0, 2), bit);
	CHECK_EQ(r.sci.level, 0);
	/* enabling it raises the SCI; unimplemented enable bits read 0 */
	wr(&r.pm.gpe_bus, 2, 0xffff, 2);
	CHECK_EQ(rd(&r.pm.gpe_bus, 2, 2), ACPI_GPE0_MASK);
	CHECK_EQ(ACPI_GPE0_MASK, bit);
	CHECK_EQ(r.sci.level, 1);
	CHECK_EQ(r.sci.raises, 1);
	/* writing 0, or 1 to other bits or bytes, clears nothing */
	wr(&r.pm.gpe_bus, 0, 0, 2);
	wr(&r.pm.gpe_bus, 0, (uint32_t)~bit & 0xffff, 2);
	wr(&r.pm.gpe_bus, 1, 0xff, 1);
	CHECK_EQ(rd(&r.pm.gpe_bus, 0, 2), bit);
	CHECK_EQ(r.sci.level, 1);
	/* disabling drops the SCI, the status stays */
	wr(&r.pm.gpe_bus, 2, 0, 1);
	CHECK_EQ(r.sci.level, 0);
	CHECK_EQ(rd(&r.pm.gpe_bus, 0, 4), bit);
	wr(&r.pm.gpe_bus, 2, bit, 1);
	CHECK_EQ(r.sci.level, 1);
	/* a byte write of 1 to the bit clears it (ACPICA's access width) */
	wr(&r.pm.gpe_bus, 0, bit, 1);
	CHECK_EQ(rd(&r.pm.gpe_bus, 0, 2), 0);
	CHECK_EQ(r.sci.level, 0);
	/* a 32-bit write clears STS and rewrites EN in one go */
	acpi_pm_raise_gpe(&r.pm, ACPI_GPE_VMGENID);
	CHECK_EQ(r.sci.level, 1);
	wr(&r.pm.gpe_bus, 0, bit | (bit << 16), 4);
	CHECK_EQ(r.sci.level, 0);
	CHECK_EQ(rd(&r.pm.gpe_bus, 0, 4), bit << 16);
	/* events that do not exist are ignored */
	for (unsigned gpe = 0; gpe < 64; gpe++)
		if (gpe != ACPI_GPE_VMGENID)
			acpi_pm_raise_gpe(&r.pm, gpe);
	CHECK_EQ(rd(&r.pm.gpe_bus, 0, 2), 0);
	CHECK_EQ(r.sci.level, 0);
	/* one SCI for PM1 and GPE0: it stays up until both are cleared */
	acpi_pm_raise_gpe(&r.pm, ACPI_GPE_VMGENID);
	wr(&r.pm.evt_bus, 2, ACPI_PM1_PWRBTN_EN, 2);
	acpi_pm_press_power_button(&r.pm);
	CHECK_EQ(r.sci.level, 1);
	wr(&r.pm.gpe_bus, 0, bit, 2);
	CHECK_EQ(r.sci.level, 1);
	wr(&r.pm.evt_bus, 0, ACPI_PM1_PWRBTN_STS, 2);
	CHECK_EQ(r.sci.level, 0);
	acpi_pm_raise_gpe(&r.pm, ACPI_GPE_VMGENID);
	CHECK_EQ(r.sci.level, 1);
	wr(&r.pm.gpe_bus, 0, bit, 2);
	CHECK_EQ(r.sci.level, 0);
	/* PM1 writes do not touch GPE0 and vice versa */
	CHECK_EQ(rd(&r.pm.evt_bus, 2, 2), ACPI_PM1_PWRBTN_EN);
	CHECK_EQ(rd(&r.pm.gpe_bus, 2, 2), bit);
	acpi_pm_destroy(&r.pm);
}

TEST(reset_register)
{
	struct rig r;
	rig_init(&r);
	for (int v = 0; v < 256; v++)
		if (v != ACPI_RESET_VALUE && v != 0x0e)
			wr(&r.pm.reset_bus, 0, (uint32_t)v, 1);
	CHECK_EQ(resets, 0);
	wr(&r.pm.reset_bus, 0, ACPI_RESET_VALUE, 1);
	CHECK_EQ(resets, 1);
	wr(&r.pm.reset_bus, 0, 0x0e, 1);
	acpi_pm_reset_write(&r.pm, ACPI_RESET_VALUE);
	CHECK_EQ(resets, 1); /* once per init */
	CHECK_EQ(r.pm.resets, 3);
	CHECK_EQ(rd(&r.pm.reset_bus, 0, 1), 0);
	CHECK_EQ(poweroffs, 0);
	acpi_pm_destroy(&r.pm);
	/* the full-reset value works on its own, and via the forwarding hook */
	rig_init(&r);
	wr(&r.pm.reset_bus, 0, 0x0e, 1);
	CHECK_EQ(resets, 1);
	acpi_pm_destroy(&r.pm);
	rig_init(&r);
	acpi_pm_reset_write(&r.pm, ACPI_RESET_VALUE);
	CHECK_EQ(resets, 1);
	acpi_pm_destroy(&r.pm);
}

TEST(all_widths_offsets_defined)
{
	struct rig r;
	rig_init(&r);
	struct {
		struct bus_dev *dev;
		uint64_t len;
	} win[] = {
		{&r.pm.evt_bus, PORT_ACPI_PM1A_EVT_LEN},
		{&r.pm.cnt_bus, PORT_ACPI_PM1A_CNT_LEN},
		{&r.pm.tmr_bus, PORT_ACPI_PM_TMR_LEN},
		{&r.pm.reset_bus, 1},
		{&r.pm.gpe_bus, PORT_ACPI_GPE0_LEN},
	};
	for (size_t d = 0; d < sizeof(win) / sizeof(win[0]); d++) {
		for (uint32_t w = 1; w <= 8; w *= 2) {
			for (uint64_t off = 0; off < win[d].len; off++) {
				uint8_t a[8];
				CHECK(read_is_defined(win[d].dev, off, w, a));
				for (uint32_t i = 0; i < w; i++)
					if (off + i >= win[d].len)
						CHECK_EQ(a[i], 0xff);
			}
		}
	}
	acpi_pm_destroy(&r.pm);
}

TEST_MAIN()
