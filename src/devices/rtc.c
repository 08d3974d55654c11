/* SPDX-License-Identifier: MIT */
/*
 * rtc.c - MC146818 RTC + CMOS RAM.  Register semantics follow the Motorola
 * MC146818A datasheet; see rtc.h for the model.
 */
#include "rtc.h"

#include <errno.h>
#include <string.h>

#include "../util/str.h"

#define NS_PER_SEC 1000000000L

static struct timespec rtc_host_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}

static bool rtc_is_time_reg(uint8_t idx)
{
	switch (idx) {
	case RTC_SECONDS:
	case RTC_MINUTES:
	case RTC_HOURS:
	case RTC_WEEKDAY:
	case RTC_DAY:
	case RTC_MONTH:
	case RTC_YEAR:
	case RTC_CENTURY:
		return true;
	default:
		return false;
	}
}

/* ---- BCD / binary, 12 / 24 h ---------------------------------------------- */

static uint8_t rtc_enc(uint8_t b, int v)
{
	if (b & RTC_B_DM_BINARY)
		return (uint8_t)v;
	v %= 100;
	if (v < 0)
		v += 100;
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

/* Garbage BCD digits (a-f) decode to out-of-range numbers; timegm()
 * normalises whatever results, so nothing here can fail. */
static int rtc_dec(uint8_t b, uint8_t v)
{
	if (b & RTC_B_DM_BINARY)
		return v;
	return (v >> 4) * 10 + (v & 0x0f);
}

/* 12 h mode: 1-12 with bit 7 = PM (datasheet "hours" register). */
static uint8_t rtc_enc_hour(uint8_t b, int h)
{
	if (b & RTC_B_24H)
		return rtc_enc(b, h);
	int h12 = h % 12 == 0 ? 12 : h % 12;
	return (uint8_t)(rtc_enc(b, h12) | (h >= 12 ? 0x80 : 0));
}

static int rtc_dec_hour(uint8_t b, uint8_t v)
{
	if (b & RTC_B_24H)
		return rtc_dec(b, v);
	return rtc_dec(b, v & 0x7f) % 12 + ((v & 0x80) ? 12 : 0);
}

/* Fill the time registers of @regs (indexed like the CMOS) with @t in
 * register-B mode @b. */
static void rtc_encode(uint8_t b, int64_t t, uint8_t regs[RTC_CMOS_SIZE])
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (!gmtime_r(&tt, &tm)) {
		tt = 0;
		gmtime_r(&tt, &tm);
	}
	int year = tm.tm_year + 1900;
	regs[RTC_SECONDS] = rtc_enc(b, tm.tm_sec);
	regs[RTC_MINUTES] = rtc_enc(b, tm.tm_min);
	regs[RTC_HOURS] = rtc_enc_hour(b, tm.tm_hour);
	regs[RTC_WEEKDAY] = rtc_enc(b, tm.tm_wday + 1);
	regs[RTC_DAY] = rtc_enc(b, tm.tm_mday);
	regs[RTC_MONTH] = rtc_enc(b, tm.tm_mon + 1);
	regs[RTC_YEAR] = rtc_enc(b, year % 100);
	regs[RTC_CENTURY] = rtc_enc(b, year / 100);
}

/* The time the registers of @regs describe in mode @b (weekday ignored). */
static int64_t rtc_decode(uint8_t b, const uint8_t regs[RTC_CMOS_SIZE])
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	tm.tm_sec = rtc_dec(b, regs[RTC_SECONDS]);
	tm.tm_min = rtc_dec(b, regs[RTC_MINUTES]);
	tm.tm_hour = rtc_dec_hour(b, regs[RTC_HOURS]);
	tm.tm_mday = rtc_dec(b, regs[RTC_DAY]);
	tm.tm_mon = rtc_dec(b, regs[RTC_MONTH]) - 1;
	tm.tm_year = rtc_dec(b, regs[RTC_CENTURY]) * 100 + rtc_dec(b, regs[RTC_YEAR]) - 1900;
	return (int64_t)timegm(&tm);
}

/* ---- clock state ---------------------------------------------------------- */

static bool rtc_set_mode(const struct rtc *rtc)
{
	return rtc->cmos[RTC_REG_B] & RTC_B_SET;
}

/* Divider chain running (A.DV not 11x = reset). */
static bool rtc_divider_running(const struct rtc *rtc)
{
	return (rtc->cmos[RTC_REG_A] & 0x60) != 0x60;
}

static bool rtc_updating(const struct rtc *rtc)
{
	return !rtc_set_mode(rtc) && rtc_divider_running(rtc);
}

/* Periodic interrupt rate for A.RS (datasheet table "periodic interrupt
 * rate", 32.768 kHz time base): 1 -> 256 Hz, 2 -> 128 Hz, n>=3 -> 65536>>n. */
static uint64_t rtc_pf_hz(unsigned rs)
{
	if (rs == 0)
		return 0;
	if (rs == 1)
		return 256;
	if (rs == 2)
		return 128;
	return 65536u >> rs;
}

static uint64_t rtc_pf_ticks(const struct timespec *now, uint64_t hz)
{
	uint64_t sec = now->tv_sec > 0 ? (uint64_t)now->tv_sec : 0;
	return sec * hz + (uint64_t)now->tv_nsec * hz / NS_PER_SEC;
}

static void rtc_update_irq(struct rtc *rtc)
{
	bool level = rtc->reg_c & RTC_C_IRQF;
	if (level != rtc->irq_level) {
		rtc->irq_level = level;
		irq_line_set(&rtc->irq, level);
	}
}

static bool rtc_alarm_match(const struct rtc *rtc, const uint8_t regs[RTC_CMOS_SIZE])
{
	static const uint8_t pairs[3][2] = {
		{RTC_SECONDS_ALARM, RTC_SECONDS},
		{RTC_MINUTES_ALARM, RTC_MINUTES},
		{RTC_HOURS_ALARM, RTC_HOURS},
	};
	for (int i = 0; i < 3; i++) {
		uint8_t alarm = rtc->cmos[pairs[i][0]];
		if ((alarm & 0xc0) == 0xc0) /* "don't care" code */
			continue;
		if (alarm != regs[pairs[i][1]])
			return false;
	}
	return true;
}

/* Bring C up to date with the clock (lazy update cycles and periodic
 * ticks) and drive the irq line. */
static void rtc_eval(struct rtc *rtc, const struct timespec *now)
{
	if (now->tv_sec != rtc->last_sec) {
		if (rtc_updating(rtc)) {
			rtc->reg_c |= RTC_C_UF;
			uint8_t regs[RTC_CMOS_SIZE];
			rtc_encode(rtc->cmos[RTC_REG_B], (int64_t)now->tv_sec + rtc->offset, regs);
			if (rtc_alarm_match(rtc, regs))
				rtc->reg_c |= RTC_C_AF;
		}
		rtc->last_sec = now->tv_sec;
	}
	uint64_t hz = rtc_pf_hz(rtc->cmos[RTC_REG_A] & RTC_A_RS_MASK);
	if (!rtc_divider_running(rtc))
		hz = 0;
	uint64_t t = rtc_pf_ticks(now, hz);
	/* A rate change restarts the count rather than faking a tick. */
	if (hz && hz == rtc->last_pf_hz && t != rtc->last_pf)
		rtc->reg_c |= RTC_C_PF;
	rtc->last_pf = t;
	rtc->last_pf_hz = hz;
	/* IRQF = PF.PIE + AF.AIE + UF.UIE (flag and enable share bit positions) */
	if (rtc->reg_c & rtc->cmos[RTC_REG_B] & (RTC_C_PF | RTC_C_AF | RTC_C_UF))
		rtc->reg_c |= RTC_C_IRQF;
	rtc_update_irq(rtc);
}

/* ---- registers ------------------------------------------------------------ */

static uint8_t rtc_read_cmos(struct rtc *rtc, const struct timespec *now)
{
	uint8_t idx = rtc->index;
	uint8_t b = rtc->cmos[RTC_REG_B];
	if (rtc_is_time_reg(idx)) {
		if (rtc_set_mode(rtc))
			return rtc->cmos[idx];
		uint8_t regs[RTC_CMOS_SIZE];
		rtc_encode(b, (int64_t)now->tv_sec + rtc->offset, regs);
		return regs[idx];
	}
	switch (idx) {
	case RTC_REG_A: {
		uint8_t a = rtc->cmos[RTC_REG_A];
		if (rtc_updating(rtc) && now->tv_nsec >= NS_PER_SEC - RTC_UIP_NS)
			a |= RTC_A_UIP;
		return a;
	}
	case RTC_REG_C: {
		uint8_t c = rtc->reg_c;
		rtc->reg_c = 0;
		rtc_update_irq(rtc);
		return c;
	}
	case RTC_REG_D:
		return RTC_D_VRT;
	default:
		return rtc->cmos[idx];
	}
}

static void rtc_write_b(struct rtc *rtc, uint8_t v, const struct timespec *now)
{
	uint8_t old = rtc->cmos[RTC_REG_B];
	if (!(old & RTC_B_SET) && (v & RTC_B_SET)) {
		/* Freeze the time registers; SET clears UIE (datasheet). */
		v &= (uint8_t)~RTC_B_UIE;
		uint8_t regs[RTC_CMOS_SIZE];
		rtc_encode(v, (int64_t)now->tv_sec + rtc->offset, regs);
		for (uint8_t i = 0; i < RTC_CMOS_SIZE; i++)
			if (rtc_is_time_reg(i))
				rtc->cmos[i] = regs[i];
	} else if ((old & RTC_B_SET) && !(v & RTC_B_SET)) {
		/* The registers were written in the mode in force under SET. */
		rtc->offset = rtc_decode(old, rtc->cmos) - (int64_t)now->tv_sec;
	}
	rtc->cmos[RTC_REG_B] = v;
}

static void rtc_write_cmos(struct rtc *rtc, uint8_t v, const struct timespec *now)
{
	uint8_t idx = rtc->index;
	if (rtc_is_time_reg(idx)) {
		if (rtc_set_mode(rtc)) {
			rtc->cmos[idx] = v;
		} else if (idx != RTC_WEEKDAY) {
			/* Running clock: make this register read @v from now on. */
			uint8_t b = rtc->cmos[RTC_REG_B];
			uint8_t regs[RTC_CMOS_SIZE];
			rtc_encode(b, (int64_t)now->tv_sec + rtc->offset, regs);
			regs[idx] = v;
			rtc->offset = rtc_decode(b, regs) - (int64_t)now->tv_sec;
		}
		return;
	}
	switch (idx) {
	case RTC_REG_A:
		rtc->cmos[RTC_REG_A] = v & (uint8_t)~RTC_A_UIP; /* UIP is read-only */
		break;
	case RTC_REG_B:
		rtc_write_b(rtc, v, now);
		break;
	case RTC_REG_C:
	case RTC_REG_D:
		break; /* read-only */
	default:
		rtc->cmos[idx] = v;
		break;
	}
}

static void rtc_bus_read(struct bus_dev *dev, uint64_t offset, void *data, uint32_t len)
{
	struct rtc *rtc = container_of(dev, struct rtc, bus);
	uint8_t *out = data;
	pthread_mutex_lock(&rtc->lock);
	struct timespec now = rtc->now();
	rtc_eval(rtc, &now);
	for (uint32_t i = 0; i < len; i++) {
		uint64_t off = offset + i;
		if (off == 1)
			out[i] = rtc_read_cmos(rtc, &now);
		else
			out[i] = 0xff; /* index port is write-only; outside the window */
	}
	pthread_mutex_unlock(&rtc->lock);
}

static void rtc_bus_write(struct bus_dev *dev, uint64_t offset, const void *data, uint32_t len)
{
	struct rtc *rtc = container_of(dev, struct rtc, bus);
	const uint8_t *in = data;
	pthread_mutex_lock(&rtc->lock);
	struct timespec now = rtc->now();
	rtc_eval(rtc, &now);
	for (uint32_t i = 0; i < len; i++) {
		uint64_t off = offset + i;
		if (off == 0) {
			rtc->index = in[i] & 0x7f;
			rtc->nmi_disabled = in[i] & 0x80;
		} else if (off == 1) {
			rtc_write_cmos(rtc, in[i], &now);
		}
	}
	/* A B write may have enabled a flag that is already set. */
	rtc_eval(rtc, &now);
	pthread_mutex_unlock(&rtc->lock);
}

static const struct bus_dev_ops rtc_ops = {
	.read = rtc_bus_read,
	.write = rtc_bus_write,
};

int rtc_init(struct rtc *rtc, const struct irq_line *irq)
{
	memset(rtc, 0, sizeof(*rtc));
	int rc = pthread_mutex_init(&rtc->lock, NULL);
	if (rc)
		return -rc;
	rtc->bus.ops = &rtc_ops;
	rtc->bus.name = "rtc";
	if (irq)
		rtc->irq = *irq;
	rtc->now = rtc_host_now;
	rtc->cmos[RTC_REG_A] = 0x26; /* DV = 010 (32.768 kHz), RS = 0110 (1024 Hz) */
	rtc->cmos[RTC_REG_B] = RTC_B_24H;
	rtc->cmos[RTC_REG_D] = RTC_D_VRT;
	struct timespec now = rtc->now();
	rtc->last_sec = now.tv_sec;
	rtc->last_pf_hz = rtc_pf_hz(rtc->cmos[RTC_REG_A] & RTC_A_RS_MASK);
	rtc->last_pf = rtc_pf_ticks(&now, rtc->last_pf_hz);
	return 0;
}

void rtc_destroy(struct rtc *rtc)
{
	pthread_mutex_destroy(&rtc->lock);
}

uint64_t rtc_tick(struct rtc *rtc)
{
	pthread_mutex_lock(&rtc->lock);
	struct timespec now = rtc->now();
	rtc_eval(rtc, &now);
	uint8_t b = rtc->cmos[RTC_REG_B];
	uint64_t next = UINT64_MAX;
	if ((b & (RTC_B_UIE | RTC_B_AIE)) && rtc_updating(rtc))
		next = (uint64_t)(NS_PER_SEC - now.tv_nsec) + 1000; /* just past the boundary */
	uint64_t hz = rtc_pf_hz(rtc->cmos[RTC_REG_A] & RTC_A_RS_MASK);
	if ((b & RTC_B_PIE) && hz && rtc_divider_running(rtc)) {
		uint64_t period = (uint64_t)NS_PER_SEC / hz;
		uint64_t left = period - (uint64_t)now.tv_nsec % period;
		if (left < 1000000)
			left = 1000000; /* coalesce: PF is one flag anyway */
		if (left < next)
			next = left;
	}
	pthread_mutex_unlock(&rtc->lock);
	return next;
}

/* ---- snapshot state ------------------------------------------------------ */

void rtc_state_get(struct rtc *rtc, struct rtc_state *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&rtc->lock);
	struct timespec now = rtc->now();
	rtc_eval(rtc, &now); /* C as the guest would read it now */
	st->index = rtc->index;
	st->nmi_disabled = rtc->nmi_disabled;
	st->reg_c = rtc->reg_c;
	memcpy(st->cmos, rtc->cmos, sizeof(st->cmos));
	st->offset = rtc->offset;
	pthread_mutex_unlock(&rtc->lock);
}

void rtc_state_encode(const struct rtc_state *st, struct snap_writer *w)
{
	snap_put_u8(w, st->index);
	snap_put_u8(w, st->nmi_disabled);
	snap_put_u8(w, st->reg_c);
	snap_put_bytes(w, st->cmos, sizeof(st->cmos));
	snap_put_u64(w, (uint64_t)st->offset);
}

int rtc_state_decode(const uint8_t *p, size_t len, uint32_t version, struct rtc_state *st,
		     char *err, size_t errlen)
{
	memset(st, 0, sizeof(*st));
	if (version != RTC_STATE_VERSION)
		return err_set(err, errlen, -EINVAL, "rtc: state version %u (this visor reads %u)",
			       version, RTC_STATE_VERSION);
	struct snap_cursor c;
	snap_cursor_init(&c, p, len);
	st->index = snap_get_u8(&c);
	st->nmi_disabled = snap_get_u8(&c);
	st->reg_c = snap_get_u8(&c);
	snap_get_bytes(&c, st->cmos, sizeof(st->cmos));
	st->offset = (int64_t)snap_get_u64(&c);
	int rc = snap_cursor_done(&c, "rtc", err, errlen);
	if (rc)
		return rc;
	if (st->index >= RTC_CMOS_SIZE)
		return err_set(err, errlen, -EINVAL, "rtc: index %u out of range", st->index);
	if (st->nmi_disabled > 1)
		return err_set(err, errlen, -EINVAL, "rtc: NMI-disable %u is not 0 or 1",
			       st->nmi_disabled);
	if (st->reg_c & 0x0f)
		return err_set(err, errlen, -EINVAL, "rtc: register C %#x has reserved bits set",
			       st->reg_c);
	if (st->cmos[RTC_REG_A] & RTC_A_UIP)
		return err_set(err, errlen, -EINVAL, "rtc: register A %#x has UIP stored",
			       st->cmos[RTC_REG_A]);
	if (st->offset > RTC_STATE_OFFSET_MAX || st->offset < -RTC_STATE_OFFSET_MAX)
		return err_set(err, errlen, -EINVAL, "rtc: time offset %lld s out of range",
			       (long long)st->offset);
	return 0;
}

void rtc_state_put(struct rtc *rtc, const struct rtc_state *st)
{
	pthread_mutex_lock(&rtc->lock);
	rtc->index = st->index;
	rtc->nmi_disabled = st->nmi_disabled;
	rtc->reg_c = st->reg_c;
	memcpy(rtc->cmos, st->cmos, sizeof(rtc->cmos));
	rtc->offset = st->offset;
	struct timespec now = rtc->now();
	rtc->last_sec = now.tv_sec;
	rtc->last_pf_hz = rtc_pf_hz(rtc->cmos[RTC_REG_A] & RTC_A_RS_MASK);
	if (!rtc_divider_running(rtc))
		rtc->last_pf_hz = 0;
	rtc->last_pf = rtc_pf_ticks(&now, rtc->last_pf_hz);
	rtc->irq_level = rtc->reg_c & RTC_C_IRQF;
	irq_line_set(&rtc->irq, rtc->irq_level);
	pthread_mutex_unlock(&rtc->lock);
}
