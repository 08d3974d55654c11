/* SPDX-License-Identifier: MIT */
/*
 * rtc.h - MC146818 CMOS real-time clock and 128 bytes of CMOS RAM at
 * PORT_RTC (0x70 index, 0x71 data), IRQ_RTC.
 *
 * Port 0x70 (write-only; reads return 0xff): bits 6:0 select a CMOS byte,
 * bit 7 set disables NMI (recorded in nmi_disabled; visor has no NMI source
 * to gate).  Port 0x71 reads/writes the selected byte.  A 16-bit access at
 * 0x70 acts as a byte access to 0x70 then to 0x71 (as the ISA bus splits
 * it); bytes outside the 2-port window read 0xff and ignore writes.
 *
 * CMOS map (MC146818A datasheet, "address map"; century per the PC/ACPI
 * convention, FADT.CENTURY):
 *   0x00 sec  0x01 alarm sec  0x02 min  0x03 alarm min  0x04 hour
 *   0x05 alarm hour  0x06 weekday (1 = Sunday)  0x07 day  0x08 month
 *   0x09 year (mod 100)  0x0a A  0x0b B  0x0c C  0x0d D  0x32 century
 *   everything else: battery-backed RAM (plain bytes, initially 0)
 *
 * Model:
 *  - The time registers are computed on each read from the host's UTC
 *    clock plus a guest offset, in BCD or binary (B.DM) and 24 h or 12 h
 *    with bit 7 = PM (B.24/12), in whichever mode B selects at the time of
 *    the read.
 *  - Writes to a time register move the guest offset so that register
 *    takes the written value (the weekday is derived from the date and its
 *    writes are ignored).  While B.SET is 1 the time registers are frozen
 *    bytes the guest may rewrite freely; clearing SET loads them as the new
 *    time (decoded in the mode in force while they were written).  Setting
 *    SET also clears B.UIE (datasheet).  This is what `hwclock -w` / Linux's
 *    mc146818_set_time do.
 *  - A.UIP reads 1 only in the last 244 us before each second boundary
 *    (the datasheet's tBUC), and never while SET is 1 or the divider is held
 *    in reset (A.DV = 11x); the update itself is instantaneous, so a reader
 *    polling UIP never waits longer than that.
 *  - C holds IRQF/PF/AF/UF, evaluated lazily from the clock whenever the
 *    device is accessed or rtc_tick() runs: UF after each second boundary,
 *    AF when an update lands on the alarm time (0xc0-0xff = don't care), PF
 *    at the A.RS rate.  Reading C returns and clears them.  IRQ_RTC is held
 *    high while C.IRQF is set (a flag whose enable bit in B is set); since
 *    nothing drives the clock by itself, those interrupts only arrive on
 *    time if the event loop calls rtc_tick() when it asks to be called.
 *  - D reads 0x80 (VRT: battery good); writes to C and D are ignored.
 *
 * Locking: all state is under rtc->lock; the irq line is driven with it
 * held.
 */
#ifndef VISOR_DEVICES_RTC_H
#define VISOR_DEVICES_RTC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "../snapshot/format.h"
#include "bus.h"
#include "irq.h"

#define RTC_NREGS 2 /* window size: PORT_RTC_LEN */
#define RTC_CMOS_SIZE 128

/* CMOS indices */
#define RTC_SECONDS 0x00
#define RTC_SECONDS_ALARM 0x01
#define RTC_MINUTES 0x02
#define RTC_MINUTES_ALARM 0x03
#define RTC_HOURS 0x04
#define RTC_HOURS_ALARM 0x05
#define RTC_WEEKDAY 0x06
#define RTC_DAY 0x07
#define RTC_MONTH 0x08
#define RTC_YEAR 0x09
#define RTC_REG_A 0x0a
#define RTC_REG_B 0x0b
#define RTC_REG_C 0x0c
#define RTC_REG_D 0x0d
#define RTC_CENTURY 0x32

/* Register A */
#define RTC_A_UIP 0x80
#define RTC_A_DV_MASK 0x70
#define RTC_A_RS_MASK 0x0f
/* Register B */
#define RTC_B_SET 0x80
#define RTC_B_PIE 0x40
#define RTC_B_AIE 0x20
#define RTC_B_UIE 0x10
#define RTC_B_SQWE 0x08
#define RTC_B_DM_BINARY 0x04
#define RTC_B_24H 0x02
#define RTC_B_DSE 0x01
/* Register C */
#define RTC_C_IRQF 0x80
#define RTC_C_PF 0x40
#define RTC_C_AF 0x20
#define RTC_C_UF 0x10
/* Register D */
#define RTC_D_VRT 0x80

/* UIP is reported this long before each second boundary (datasheet tBUC
 * for the 32.768 kHz time base). */
#define RTC_UIP_NS 244000L

struct rtc {
	struct bus_dev bus; /* register at PORT_RTC, PORT_RTC_LEN */
	pthread_mutex_t lock;
	struct irq_line irq;
	/* Host UTC clock; defaults to clock_gettime(CLOCK_REALTIME).  Tests may
	 * replace it after rtc_init (before the device is used). */
	struct timespec (*now)(void);

	uint8_t index;     /* selected CMOS byte, 0-127 */
	bool nmi_disabled; /* bit 7 of the last index write */
	uint8_t cmos[RTC_CMOS_SIZE]; /* RAM, A, B; time bytes only while SET */
	uint8_t reg_c;
	int64_t offset;    /* guest time - host time, seconds */
	int64_t last_sec;  /* host second at the last flag evaluation */
	uint64_t last_pf;  /* periodic-interrupt tick count at that time */
	uint64_t last_pf_hz; /* ... at this rate (0: periodic off) */
	bool irq_level;
};

/* Initialise @rtc: A = 0x26 (32.768 kHz, 1024 Hz rate), B = 0x02 (24 h,
 * BCD), C = 0, D = 0x80, time = host UTC, RAM zeroed.  @irq is copied and
 * may be NULL.  Returns 0 or -errno. */
int rtc_init(struct rtc *rtc, const struct irq_line *irq);

/* Release what rtc_init acquired. */
void rtc_destroy(struct rtc *rtc);

/* Evaluate the interrupt flags against the clock (raising IRQ_RTC if an
 * enabled one became set) and return how many nanoseconds until the next
 * event that could raise it: the next periodic tick (with B.PIE, at least
 * 1 ms) or second boundary (with B.UIE or B.AIE); UINT64_MAX when no
 * interrupt is enabled.  For the event loop; never needed for polling
 * guests. */
uint64_t rtc_tick(struct rtc *rtc);

/*
 * Snapshot state (the pattern of serial.h): the CMOS bytes, index, C and
 * the guest's offset from host UTC.  The time of day is saved as that
 * offset, so a restored guest's RTC reads the host's time plus the same
 * offset (wall time moves on while a snapshot sits on disk; the guest's
 * monotonic clock, kvmclock, does not).  Flag bookkeeping restarts at the
 * restore; rtc_state_get brings C up to date first.
 */
#define RTC_STATE_VERSION 1
/* |offset| limit: the furthest date the registers can name (binary mode,
 * century and year 255, month and day out of range: about year 25800) is
 * within 760 billion seconds of now; a guest can set any of them */
#define RTC_STATE_OFFSET_MAX 1000000000000LL
struct rtc_state {
	uint8_t index;        /* 0-127 */
	uint8_t nmi_disabled; /* 0 or 1 */
	uint8_t reg_c;        /* bits 3:0 zero */
	uint8_t cmos[RTC_CMOS_SIZE];
	int64_t offset;       /* guest time - host time, seconds */
};
void rtc_state_get(struct rtc *rtc, struct rtc_state *st);
void rtc_state_encode(const struct rtc_state *st, struct snap_writer *w);
int rtc_state_decode(const uint8_t *p, size_t len, uint32_t version, struct rtc_state *st,
		     char *err, size_t errlen);
/* The caller re-arms its timer from rtc_tick() afterwards. */
void rtc_state_put(struct rtc *rtc, const struct rtc_state *st);

#endif
