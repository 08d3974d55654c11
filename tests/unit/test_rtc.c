/* SPDX-License-Identifier: MIT */
#include "../../src/devices/rtc.h"

#include "dev_fake.h"
#include "test.h"

/* 2024-02-29 23:59:58 UTC, a Thursday */
#define T0 1709251198LL

static struct timespec fake_time;
static struct timespec fake_now(void)
{
	return fake_time;
}

struct rig {
	struct rtc rtc;
	struct fake_irq irq;
	struct irq_line line;
};

static void rig_init(struct rig *r)
{
	memset(r, 0, sizeof(*r));
	r->line = (struct irq_line){.set_level = fake_set_level, .ctx = &r->irq, .gsi = 8};
	fake_time = (struct timespec){.tv_sec = T0, .tv_nsec = 0};
	CHECK_EQ(rtc_init(&r->rtc, &r->line), 0);
	r->rtc.now = fake_now;
	r->rtc.last_sec = T0;
	r->rtc.last_pf = 0;
	r->rtc.last_pf_hz = 0;
}

static uint8_t cmos_rd(struct rig *r, uint8_t idx)
{
	uint8_t v = 0;
	r->rtc.bus.ops->write(&r->rtc.bus, 0, &idx, 1);
	r->rtc.bus.ops->read(&r->rtc.bus, 1, &v, 1);
	return v;
}

static void cmos_wr(struct rig *r, uint8_t idx, uint8_t v)
{
	r->rtc.bus.ops->write(&r->rtc.bus, 0, &idx, 1);
	r->rtc.bus.ops->write(&r->rtc.bus, 1, &v, 1);
}

TEST(defaults_bcd_24h)
{
	struct rig r;
	rig_init(&r);
	CHECK_EQ(cmos_rd(&r, RTC_REG_A), 0x26);
	CHECK_EQ(cmos_rd(&r, RTC_REG_B), 0x02);
	CHECK_EQ(cmos_rd(&r, RTC_REG_D), 0x80);
	CHECK_EQ(cmos_rd(&r, RTC_SECONDS), 0x58);
	CHECK_EQ(cmos_rd(&r, RTC_MINUTES), 0x59);
	CHECK_EQ(cmos_rd(&r, RTC_HOURS), 0x23);
	CHECK_EQ(cmos_rd(&r, RTC_WEEKDAY), 0x05); /* Thursday, Sunday = 1 */
	CHECK_EQ(cmos_rd(&r, RTC_DAY), 0x29);
	CHECK_EQ(cmos_rd(&r, RTC_MONTH), 0x02);
	CHECK_EQ(cmos_rd(&r, RTC_YEAR), 0x24);
	CHECK_EQ(cmos_rd(&r, RTC_CENTURY), 0x20);
	/* the clock follows the host */
	fake_time.tv_sec += 3;
	CHECK_EQ(cmos_rd(&r, RTC_SECONDS), 0x01);
	CHECK_EQ(cmos_rd(&r, RTC_DAY), 0x01);
	CHECK_EQ(cmos_rd(&r, RTC_MONTH), 0x03);
	rtc_destroy(&r.rtc);
}

TEST(binary_and_12h)
{
	struct rig r;
	rig_init(&r);
	cmos_wr(&r, RTC_REG_B, RTC_B_DM_BINARY | RTC_B_24H);
	CHECK_EQ(cmos_rd(&r, RTC_SECONDS), 58);
	CHECK_EQ(cmos_rd(&r, RTC_HOURS), 23);
	CHECK_EQ(cmos_rd(&r, RTC_YEAR), 24);
	CHECK_EQ(cmos_rd(&r, RTC_CENTURY), 20);
	/* 12 h binary: 23h = 11 PM */
	cmos_wr(&r, RTC_REG_B, RTC_B_DM_BINARY);
	CHECK_EQ(cmos_rd(&r, RTC_HOURS), 0x80 | 11);
	/* 12 h BCD */
	cmos_wr(&r, RTC_REG_B, 0);
	CHECK_EQ(cmos_rd(&r, RTC_HOURS), 0x91);
	/* midnight is 12 AM, noon is 12 PM */
	fake_time.tv_sec = T0 + 2; /* 00:00:00 */
	CHECK_EQ(cmos_rd(&r, RTC_HOURS), 0x12);
	fake_time.tv_sec = T0 + 2 + 12 * 3600;
	CHECK_EQ(cmos_rd(&r, RTC_HOURS), 0x92);
	rtc_destroy(&r.rtc);
}

TEST(set_time_with_set_bit)
{
	/* what Linux's mc146818_set_time does: SET, write all, clear SET */
	struct rig r;
	rig_init(&r);
	cmos_wr(&r, RTC_REG_B, RTC_B_SET | RTC_B_24H | RTC_B_UIE);
	CHECK_EQ(cmos_rd(&r, RTC_REG_B) & RTC_B_UIE, 0); /* SET clears UIE */
	CHECK_EQ(cmos_rd(&r, RTC_SECONDS), 0x58);       /* frozen snapshot */
	fake_time.tv_sec += 5;
	CHECK_EQ(cmos_rd(&r, RTC_SECONDS), 0x58); /* no updates under SET */
	cmos_wr(&r, RTC_SECONDS, 0x30);
	cmos_wr(&r, RTC_MINUTES, 0x15);
	cmos_wr(&r, RTC_HOURS, 0x10);
	cmos_wr(&r, RTC_DAY, 0x04);
	cmos_wr(&r, RTC_MONTH, 0x07);
	cmos_wr(&r, RTC_YEAR, 0x99);
	cmos_wr(&r, RTC_CENTURY, 0x19);
	CHECK_EQ(cmos_rd(&r, RTC_MINUTES), 0x15);
	cmos_wr(&r, RTC_REG_B, RTC_B_24H);
	/* 1999-07-04 10:15:30, a Sunday, now running */
	CHECK_EQ(cmos_rd(&r, RTC_SECONDS), 0x30);
	CHECK_EQ(cmos_rd(&r, RTC_YEAR), 0x99);
	CHECK_EQ(cmos_rd(&r, RTC_CENTURY), 0x19);
	CHECK_EQ(cmos_rd(&r, RTC_WEEKDAY), 0x01);
	fake_time.tv_sec += 10;
	CHECK_EQ(cmos_rd(&r, RTC_SECONDS), 0x40);
	CHECK_EQ(cmos_rd(&r, RTC_HOURS), 0x10);
	CHECK_EQ(r.rtc.offset, 931083330LL - (T0 + 5));
	rtc_destroy(&r.rtc);
}

TEST(set_time_without_set_bit)
{
	struct rig r;
	rig_init(&r);
	cmos_wr(&r, RTC_HOURS, 0x05);
	CHECK_EQ(cmos_rd(&r, RTC_HOURS), 0x05);
	CHECK_EQ(cmos_rd(&r, RTC_MINUTES), 0x59);
	CHECK_EQ(cmos_rd(&r, RTC_DAY), 0x29);
	/* weekday writes are ignored: it follows the date */
	cmos_wr(&r, RTC_WEEKDAY, 0x03);
	CHECK_EQ(cmos_rd(&r, RTC_WEEKDAY), 0x05);
	/* 12 h write: 7 PM */
	cmos_wr(&r, RTC_REG_B, 0);
	cmos_wr(&r, RTC_HOURS, 0x87);
	cmos_wr(&r, RTC_REG_B, RTC_B_24H);
	CHECK_EQ(cmos_rd(&r, RTC_HOURS), 0x19);
	/* garbage never crashes and stays bounded */
	for (int v = 0; v < 256; v++) {
		cmos_wr(&r, RTC_YEAR, (uint8_t)v);
		cmos_wr(&r, RTC_CENTURY, (uint8_t)v);
		cmos_wr(&r, RTC_MONTH, (uint8_t)v);
		cmos_wr(&r, RTC_DAY, (uint8_t)v);
		cmos_wr(&r, RTC_HOURS, (uint8_t)v);
	}
	cmos_wr(&r, RTC_REG_B, RTC_B_DM_BINARY);
	for (int v = 0; v < 256; v++) {
		cmos_wr(&r, RTC_CENTURY, (uint8_t)v);
		cmos_wr(&r, RTC_HOURS, (uint8_t)v);
		(void)cmos_rd(&r, RTC_YEAR);
	}
	rtc_destroy(&r.rtc);
}

TEST(reg_c_flags_clear_and_irq)
{
	struct rig r;
	rig_init(&r);
	/* PF would follow the default 1024 Hz rate, AF the 00:00:00 alarm */
	cmos_wr(&r, RTC_REG_A, 0x20);
	cmos_wr(&r, RTC_HOURS_ALARM, 0x12);
	CHECK_EQ(cmos_rd(&r, RTC_REG_C), 0);
	fake_time.tv_sec++;
	CHECK_EQ(cmos_rd(&r, RTC_REG_C), RTC_C_UF); /* no UIE: no IRQF */
	CHECK_EQ(cmos_rd(&r, RTC_REG_C), 0);         /* read cleared it */
	CHECK_EQ(r.irq.level, 0);
	cmos_wr(&r, RTC_REG_B, RTC_B_24H | RTC_B_UIE);
	fake_time.tv_sec++;
	CHECK(rtc_tick(&r.rtc) <= 1000001000ULL);
	CHECK_EQ(r.irq.level, 1);
	CHECK_EQ(cmos_rd(&r, RTC_REG_C), RTC_C_IRQF | RTC_C_UF);
	CHECK_EQ(r.irq.level, 0);
	CHECK_EQ(cmos_rd(&r, RTC_REG_C), 0);
	/* alarm at 00:00:05 (BCD), hours don't care */
	cmos_wr(&r, RTC_REG_B, RTC_B_24H | RTC_B_AIE);
	cmos_wr(&r, RTC_SECONDS_ALARM, 0x05);
	cmos_wr(&r, RTC_MINUTES_ALARM, 0x00);
	cmos_wr(&r, RTC_HOURS_ALARM, 0xc0);
	(void)cmos_rd(&r, RTC_REG_C);
	fake_time.tv_sec = T0 + 2 + 4; /* 00:00:04 */
	CHECK_EQ(cmos_rd(&r, RTC_REG_C), RTC_C_UF);
	fake_time.tv_sec++;
	rtc_tick(&r.rtc);
	CHECK_EQ(r.irq.level, 1);
	CHECK_EQ(cmos_rd(&r, RTC_REG_C), RTC_C_IRQF | RTC_C_AF | RTC_C_UF);
	CHECK_EQ(r.irq.level, 0);
	/* periodic flag at the A.RS rate (RS=15: 2 Hz) */
	cmos_wr(&r, RTC_REG_A, 0x2f);
	cmos_wr(&r, RTC_REG_B, RTC_B_24H | RTC_B_PIE);
	(void)cmos_rd(&r, RTC_REG_C);
	fake_time.tv_nsec = 600000000;
	CHECK(rtc_tick(&r.rtc) <= 500000000ULL);
	CHECK_EQ(r.irq.level, 1);
	CHECK_EQ(cmos_rd(&r, RTC_REG_C), RTC_C_IRQF | RTC_C_PF);
	/* nothing enabled: no need to be called */
	cmos_wr(&r, RTC_REG_B, RTC_B_24H);
	CHECK_EQ(rtc_tick(&r.rtc), UINT64_MAX);
	/* C and D are read-only */
	cmos_wr(&r, RTC_REG_D, 0);
	CHECK_EQ(cmos_rd(&r, RTC_REG_D), 0x80);
	rtc_destroy(&r.rtc);
}

TEST(uip_is_brief)
{
	struct rig r;
	rig_init(&r);
	fake_time.tv_nsec = 500000000;
	CHECK_EQ(cmos_rd(&r, RTC_REG_A) & RTC_A_UIP, 0);
	fake_time.tv_nsec = 999900000;
	CHECK_EQ(cmos_rd(&r, RTC_REG_A) & RTC_A_UIP, RTC_A_UIP);
	/* not while SET or with the divider in reset */
	cmos_wr(&r, RTC_REG_B, RTC_B_SET | RTC_B_24H);
	CHECK_EQ(cmos_rd(&r, RTC_REG_A) & RTC_A_UIP, 0);
	cmos_wr(&r, RTC_REG_B, RTC_B_24H);
	cmos_wr(&r, RTC_REG_A, 0x76);
	CHECK_EQ(cmos_rd(&r, RTC_REG_A), 0x76);
	/* UIP is read-only */
	cmos_wr(&r, RTC_REG_A, 0xa6);
	fake_time.tv_nsec = 0;
	CHECK_EQ(cmos_rd(&r, RTC_REG_A), 0x26);
	/* a reader polling UIP with a real clock finishes promptly */
	rtc_destroy(&r.rtc);
	struct rtc real;
	CHECK_EQ(rtc_init(&real, NULL), 0);
	uint8_t a = RTC_REG_A, v = 0xff;
	real.bus.ops->write(&real.bus, 0, &a, 1);
	long spins = 0;
	do {
		real.bus.ops->read(&real.bus, 1, &v, 1);
	} while ((v & RTC_A_UIP) && ++spins < 100000000L);
	CHECK_EQ(v & RTC_A_UIP, 0);
	rtc_destroy(&real);
}

TEST(index_nmi_bit_masked_and_ram)
{
	struct rig r;
	rig_init(&r);
	uint8_t idx = 0x80 | RTC_REG_D, v = 0;
	r.rtc.bus.ops->write(&r.rtc.bus, 0, &idx, 1);
	CHECK(r.rtc.nmi_disabled);
	CHECK_EQ(r.rtc.index, RTC_REG_D);
	r.rtc.bus.ops->read(&r.rtc.bus, 1, &v, 1);
	CHECK_EQ(v, 0x80);
	cmos_wr(&r, 0x8e | 0x80, 0x5a); /* NMI bit does not reach the index */
	CHECK(r.rtc.nmi_disabled);
	CHECK_EQ(cmos_rd(&r, 0x0e), 0x5a);
	for (int i = 0x0e; i < RTC_CMOS_SIZE; i++)
		if (i != RTC_CENTURY)
			cmos_wr(&r, (uint8_t)i, (uint8_t)(i ^ 0xa5));
	for (int i = 0x0e; i < RTC_CMOS_SIZE; i++)
		if (i != RTC_CENTURY)
			CHECK_EQ(cmos_rd(&r, (uint8_t)i), i ^ 0xa5);
	/* the index port is write-only */
	r.rtc.bus.ops->read(&r.rtc.bus, 0, &v, 1);
	CHECK_EQ(v, 0xff);
	/* a 16-bit write at 0x70 is index then data */
	uint16_t w = (uint16_t)(0x42 << 8 | 0x20);
	r.rtc.bus.ops->write(&r.rtc.bus, 0, &w, 2);
	CHECK_EQ(cmos_rd(&r, 0x20), 0x42);
	rtc_destroy(&r.rtc);
}

TEST(all_widths_offsets_defined)
{
	struct rig r;
	rig_init(&r);
	for (int idx = 0; idx < RTC_CMOS_SIZE; idx++) {
		for (uint32_t w = 1; w <= 8; w *= 2) {
			for (uint64_t off = 0; off < RTC_NREGS; off++) {
				uint8_t a[8];
				uint8_t ix = (uint8_t)idx;
				r.rtc.bus.ops->write(&r.rtc.bus, 0, &ix, 1);
				CHECK(read_is_defined(&r.rtc.bus, off, w, a));
			}
		}
	}
	rtc_destroy(&r.rtc);
}

TEST_MAIN()
