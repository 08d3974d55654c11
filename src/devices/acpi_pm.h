/* SPDX-License-Identifier: MIT */
/*
 * acpi_pm.h - ACPI fixed hardware in I/O space (ACPI spec 6.x, chapter 4.8
 * "ACPI Hardware Features", fixed hardware registers):
 *
 *   evt_bus   PM1a_EVT_BLK at PORT_ACPI_PM1A_EVT, 4 bytes:
 *             +0 PM1_STS (16 bits, write 1 to clear)  +2 PM1_EN (16 bits)
 *   cnt_bus   PM1a_CNT_BLK at PORT_ACPI_PM1A_CNT, 2 bytes: PM1_CNT
 *   tmr_bus   PM_TMR_BLK at PORT_ACPI_PM_TMR, 4 bytes: PM_TMR (read-only)
 *   gpe_bus   GPE0_BLK at PORT_ACPI_GPE0, 4 bytes (ACPI 6.4 §4.8.4.1):
 *             +0 GPE0_STS (16 bits, write 1 to clear)  +2 GPE0_EN (16 bits)
 *   reset_bus FADT RESET_REG at PORT_ACPI_RESET, 1 byte
 *
 * PM1_STS bits kept: TMR_STS(0) BM_STS(4) GBL_STS(5) PWRBTN_STS(8)
 * SLPBTN_STS(9) RTC_STS(10) PCIEXP_WAKE_STS(14) WAK_STS(15); all others read
 * 0.  Only TMR_STS and PWRBTN_STS are ever set by this device.
 * PM1_EN bits kept: TMR_EN(0) GBL_EN(5) PWRBTN_EN(8) SLPBTN_EN(9) RTC_EN(10)
 * PCIEXP_WAKE_DIS(14).
 * SCI (level, IRQ_ACPI_SCI) is asserted while PM1_STS & PM1_EN != 0 or
 * GPE0_STS & GPE0_EN != 0.
 *
 * GPE0: the block has room for GPEs 0-15; the implemented ones
 * (ACPI_GPE0_MASK: ACPI_GPE_VMGENID) keep their status and enable bits,
 * every other bit reads 0.  A status bit is set only by the host
 * (acpi_pm_raise_gpe) and latches until the guest writes 1 to it, so the
 * events are edge events in ACPI's sense: the DSDT has \_GPE._Exx methods,
 * and OSPM clears the status before it runs the method.
 *
 * PM1_CNT: SCI_EN (bit 0) always reads 1 - there is no SMI_CMD, the machine
 * is always in ACPI mode; BM_RLD (1) and SLP_TYP (12:10) read back;
 * GBL_RLS (2) and SLP_EN (13) are write-only and read 0.  A write with
 * SLP_EN set and SLP_TYP == ACPI_S5_SLP_TYP calls the poweroff callback
 * (the first such write; see acpi_pm_init); other sleep types are logged (rate limited) and
 * ignored - the guest simply continues, as if it woke at once.
 *
 * PM_TMR: 32-bit counter (so the FADT must set TMR_VAL_EXT) at 3.579545 MHz
 * from CLOCK_MONOTONIC, counting from acpi_pm_init; it wraps at 2^32
 * (about 20 minutes).  TMR_STS is set when bit 31 of the counter changes;
 * that is noticed when the guest touches any of these registers (there is
 * no timer behind it), so a TMR_EN-driven SCI is not delivered on time.
 * Linux does not use it.
 *
 * Reset register: writing ACPI_RESET_VALUE (0x06) or 0x0e (full reset)
 * calls the reset callback; other values are ignored (reads return 0).
 * PORT_ACPI_RESET (0xcf9) sits inside the PCI configuration-mechanism-1
 * range 0xcf8-0xcff: if a PCI host bridge later claims that range it must
 * forward byte writes at 0xcf9 to acpi_pm_reset_write() instead of
 * registering reset_bus.
 *
 * Accesses of any width act as byte accesses at offset, offset+1, ... over
 * the register file of each window (a 16-bit PM1_CNT value is assembled
 * before it is acted on); bytes outside a window read 0xff and their
 * writes are ignored.
 *
 * Locking: all state is under pm->lock; the SCI line is driven with it
 * held; poweroff and reset callbacks are called with it NOT held.
 */
#ifndef VISOR_DEVICES_ACPI_PM_H
#define VISOR_DEVICES_ACPI_PM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../arch/x86/layout.h"
#include "../snapshot/format.h"
#include "../util/log.h"
#include "bus.h"
#include "irq.h"

#define ACPI_PM_TIMER_HZ 3579545ULL

/* PM1_STS / PM1_EN */
#define ACPI_PM1_TMR_STS (1u << 0)
#define ACPI_PM1_BM_STS (1u << 4)
#define ACPI_PM1_GBL_STS (1u << 5)
#define ACPI_PM1_PWRBTN_STS (1u << 8)
#define ACPI_PM1_SLPBTN_STS (1u << 9)
#define ACPI_PM1_RTC_STS (1u << 10)
#define ACPI_PM1_PCIEXP_WAKE_STS (1u << 14)
#define ACPI_PM1_WAK_STS (1u << 15)
#define ACPI_PM1_STS_MASK 0xc731u
#define ACPI_PM1_TMR_EN (1u << 0)
#define ACPI_PM1_GBL_EN (1u << 5)
#define ACPI_PM1_PWRBTN_EN (1u << 8)
#define ACPI_PM1_SLPBTN_EN (1u << 9)
#define ACPI_PM1_RTC_EN (1u << 10)
#define ACPI_PM1_PCIEXP_WAKE_DIS (1u << 14)
#define ACPI_PM1_EN_MASK 0x4721u

/* GPE0_STS / GPE0_EN: the general-purpose events the machine implements */
#define ACPI_GPE0_MASK (1u << ACPI_GPE_VMGENID)

/* PM1_CNT */
#define ACPI_PM1_SCI_EN (1u << 0)
#define ACPI_PM1_BM_RLD (1u << 1)
#define ACPI_PM1_GBL_RLS (1u << 2)
#define ACPI_PM1_SLP_TYP_SHIFT 10
#define ACPI_PM1_SLP_TYP_MASK (7u << ACPI_PM1_SLP_TYP_SHIFT)
#define ACPI_PM1_SLP_EN (1u << 13)

/* Reset register: 0x0e is the "full reset" value some guests write. */
#define ACPI_RESET_VALUE_FULL 0x0e

struct acpi_pm {
	struct bus_dev evt_bus;   /* PORT_ACPI_PM1A_EVT, PORT_ACPI_PM1A_EVT_LEN */
	struct bus_dev cnt_bus;   /* PORT_ACPI_PM1A_CNT, PORT_ACPI_PM1A_CNT_LEN */
	struct bus_dev tmr_bus;   /* PORT_ACPI_PM_TMR, PORT_ACPI_PM_TMR_LEN */
	struct bus_dev reset_bus; /* PORT_ACPI_RESET, 1 */
	struct bus_dev gpe_bus;   /* PORT_ACPI_GPE0, PORT_ACPI_GPE0_LEN */
	pthread_mutex_t lock;
	struct irq_line sci;
	void (*poweroff)(void *ctx);
	void (*reset)(void *ctx);
	void *ctx;
	/* Monotonic clock in ns (default now_ns()) and the reading the timer
	 * counts from (taken at init).  Tests may replace both after
	 * acpi_pm_init, before the device is used. */
	uint64_t (*clock_ns)(void);
	uint64_t base_ns;
	uint64_t bias_ns; /* added to the time since base_ns (a restored timer) */
	bool frozen;      /* VM paused: the timer reads bias_ns and does not move */

	uint16_t sts, en, cnt;
	uint16_t gpe_sts, gpe_en;
	uint64_t tmr_half; /* counter >> 31 at the last TMR_STS evaluation */
	bool sci_level;
	uint64_t poweroffs, resets; /* requests seen */
	bool poweroff_sent, reset_sent; /* callbacks already ran */
	struct ratelimit rl;
};

/* Initialise @pm: STS = EN = 0, CNT = SCI_EN, timer at 0.  @sci (copied,
 * may be NULL) is IRQ_ACPI_SCI.  @poweroff (S5 entered) and @reset (reset
 * register written) may be NULL; they get @ctx, run with the lock not held,
 * and each runs at most once per acpi_pm_init - both end the machine, and
 * a guest repeating the write in a loop must not flood it (later requests
 * are only counted).  Returns 0 or -errno. */
int acpi_pm_init(struct acpi_pm *pm, const struct irq_line *sci, void (*poweroff)(void *ctx),
		 void (*reset)(void *ctx), void *ctx);

/* Release what acpi_pm_init acquired. */
void acpi_pm_destroy(struct acpi_pm *pm);

/* Host side (any thread): press the fixed-hardware power button - sets
 * PWRBTN_STS, raising the SCI if the guest enabled PWRBTN_EN, so an ACPI
 * guest shuts down gracefully.  The FADT must not set PWR_BUTTON (bit 4). */
void acpi_pm_press_power_button(struct acpi_pm *pm);

/* Host side (any thread): signal general-purpose event @gpe (one of
 * ACPI_GPE0_MASK; others are ignored): sets its GPE0_STS bit, raising the
 * SCI if the guest enabled it.  The bit stays set until the guest writes 1
 * to it; an event raised before the guest enabled the GPE raises the SCI
 * when it does (unless the OS clears the status first, as ACPICA does when
 * it enables a GPE; Linux's vmgenid driver reads the ID when it probes). */
void acpi_pm_raise_gpe(struct acpi_pm *pm, unsigned gpe);

/* Act on a byte written to the reset register (as reset_bus does): 0x06 or
 * 0x0e call the reset callback (first time only), anything else is
 * ignored. */
void acpi_pm_reset_write(struct acpi_pm *pm, uint8_t val);

/* The current PM_TMR value (what a 32-bit read of PM_TMR returns). */
uint32_t acpi_pm_timer(struct acpi_pm *pm);

/*
 * Snapshot state (the pattern of serial.h): PM1 status, enable and control,
 * the PM timer as the time it has counted (so a restored timer goes on
 * from its saved value, like the guest's kvmclock, whatever the host's
 * monotonic clock reads), and (version 2) GPE0 status and enable.  Version
 * 1, written before the GPE0 block existed, is read with both 0.  Not
 * saved: statistics, the rate limiter, and whether a power-off or reset
 * was already requested.
 */
#define ACPI_PM_STATE_VERSION 2
struct acpi_pm_state {
	uint16_t sts, en, cnt;	  /* within ACPI_PM1_STS_MASK, _EN_MASK, BM_RLD|SLP_TYP */
	uint64_t timer_ns;	  /* time counted since power-on, ns */
	uint16_t gpe_sts, gpe_en; /* within ACPI_GPE0_MASK */
};
/* The VM pauses / resumes (registry ops, loop thread): the PM timer stops
 * while the vCPUs are parked, like the guest's kvmclock, so a guest timing
 * with it sees no jump across a pause, a snapshot or a restore (a restored
 * timer is put while paused and counts on from the resume). */
void acpi_pm_pause(struct acpi_pm *pm);
void acpi_pm_resume(struct acpi_pm *pm);

void acpi_pm_state_get(struct acpi_pm *pm, struct acpi_pm_state *st);
void acpi_pm_state_encode(const struct acpi_pm_state *st, struct snap_writer *w);
int acpi_pm_state_decode(const uint8_t *p, size_t len, uint32_t version, struct acpi_pm_state *st,
			 char *err, size_t errlen);
void acpi_pm_state_put(struct acpi_pm *pm, const struct acpi_pm_state *st);

#endif
