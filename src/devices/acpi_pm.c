/* SPDX-License-Identifier: MIT */
/*
 * acpi_pm.c - ACPI PM1a event/control blocks, PM timer and reset register;
 * see acpi_pm.h for the model and the ACPI spec sections it follows.
 */
#include "acpi_pm.h"

#include <errno.h>
#include <string.h>

#include "../arch/x86/layout.h"
#include "../util/str.h"

/* Counter value at @ns since init: floor(ns * 3.579545 MHz / 1e9), split
 * so the product cannot overflow. */
static uint64_t acpi_pm_ticks(uint64_t ns)
{
	uint64_t sec = ns / 1000000000ULL, rem = ns % 1000000000ULL;
	return sec * ACPI_PM_TIMER_HZ + rem * ACPI_PM_TIMER_HZ / 1000000000ULL;
}

static uint64_t acpi_pm_now_ns(struct acpi_pm *pm)
{
	if (pm->frozen)
		return pm->bias_ns;
	uint64_t now = pm->clock_ns();
	return (now > pm->base_ns ? now - pm->base_ns : 0) + pm->bias_ns;
}

static uint64_t acpi_pm_now_ticks(struct acpi_pm *pm)
{
	return acpi_pm_ticks(acpi_pm_now_ns(pm));
}

static void acpi_pm_update_sci(struct acpi_pm *pm)
{
	bool level = (pm->sts & pm->en) != 0 || (pm->gpe_sts & pm->gpe_en) != 0;
	if (level != pm->sci_level) {
		pm->sci_level = level;
		irq_line_set(&pm->sci, level);
	}
}

/* TMR_STS: set whenever the counter's bit 31 changed since last looked at
 * (ACPI "PM timer": the status bit is set on each MSB transition). */
static void acpi_pm_eval_timer(struct acpi_pm *pm, uint64_t ticks)
{
	uint64_t half = ticks >> 31;
	if (half != pm->tmr_half) {
		pm->tmr_half = half;
		pm->sts |= ACPI_PM1_TMR_STS;
	}
}

static void acpi_pm_fill(uint8_t *out, uint64_t offset, uint32_t len, uint64_t regs, uint64_t size)
{
	for (uint32_t i = 0; i < len; i++) {
		uint64_t off = offset + i;
		out[i] = off < size ? (uint8_t)(regs >> (8 * off)) : 0xff;
	}
}

/* Merge the bytes of a write into a register file value of @size bytes;
 * returns a mask of the bytes written. */
static uint64_t acpi_pm_merge(uint64_t *regs, uint64_t offset, const uint8_t *in, uint32_t len,
			      uint64_t size)
{
	uint64_t written = 0;
	for (uint32_t i = 0; i < len; i++) {
		uint64_t off = offset + i;
		if (off >= size)
			continue;
		*regs = (*regs & ~(0xffULL << (8 * off))) | ((uint64_t)in[i] << (8 * off));
		written |= 0xffULL << (8 * off);
	}
	return written;
}

/* ---- PM1a_EVT_BLK ---------------------------------------------------------- */

static void acpi_pm_evt_read(struct bus_dev *dev, uint64_t offset, void *data, uint32_t len)
{
	struct acpi_pm *pm = container_of(dev, struct acpi_pm, evt_bus);
	pthread_mutex_lock(&pm->lock);
	acpi_pm_eval_timer(pm, acpi_pm_now_ticks(pm));
	acpi_pm_update_sci(pm);
	uint64_t regs = (uint64_t)pm->sts | ((uint64_t)pm->en << 16);
	pthread_mutex_unlock(&pm->lock);
	acpi_pm_fill(data, offset, len, regs, PORT_ACPI_PM1A_EVT_LEN);
}

static void acpi_pm_evt_write(struct bus_dev *dev, uint64_t offset, const void *data, uint32_t len)
{
	struct acpi_pm *pm = container_of(dev, struct acpi_pm, evt_bus);
	uint64_t regs = 0;
	uint64_t written = acpi_pm_merge(&regs, offset, data, len, PORT_ACPI_PM1A_EVT_LEN);
	pthread_mutex_lock(&pm->lock);
	acpi_pm_eval_timer(pm, acpi_pm_now_ticks(pm));
	/* PM1_STS: write 1 to clear, only for the bytes actually written */
	uint16_t clear = (uint16_t)(regs & written & 0xffff);
	pm->sts &= (uint16_t)~clear;
	/* PM1_EN: plain read/write, byte by byte */
	uint16_t en_mask = (uint16_t)((written >> 16) & 0xffff);
	uint16_t en_new = (uint16_t)((regs >> 16) & 0xffff);
	pm->en = (uint16_t)(((pm->en & ~en_mask) | (en_new & en_mask)) & ACPI_PM1_EN_MASK);
	acpi_pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

/* ---- PM1a_CNT_BLK ---------------------------------------------------------- */

static void acpi_pm_cnt_read(struct bus_dev *dev, uint64_t offset, void *data, uint32_t len)
{
	struct acpi_pm *pm = container_of(dev, struct acpi_pm, cnt_bus);
	pthread_mutex_lock(&pm->lock);
	uint64_t regs = pm->cnt | ACPI_PM1_SCI_EN;
	pthread_mutex_unlock(&pm->lock);
	acpi_pm_fill(data, offset, len, regs, PORT_ACPI_PM1A_CNT_LEN);
}

static void acpi_pm_cnt_write(struct bus_dev *dev, uint64_t offset, const void *data, uint32_t len)
{
	struct acpi_pm *pm = container_of(dev, struct acpi_pm, cnt_bus);
	bool poweroff = false;
	pthread_mutex_lock(&pm->lock);
	uint64_t regs = pm->cnt;
	if (acpi_pm_merge(&regs, offset, data, len, PORT_ACPI_PM1A_CNT_LEN)) {
		uint16_t v = (uint16_t)regs;
		/* keep the read/write bits; SCI_EN reads 1 regardless */
		pm->cnt = (uint16_t)(v & (ACPI_PM1_BM_RLD | ACPI_PM1_SLP_TYP_MASK));
		if (v & ACPI_PM1_SLP_EN) {
			unsigned typ = (v & ACPI_PM1_SLP_TYP_MASK) >> ACPI_PM1_SLP_TYP_SHIFT;
			if (typ == ACPI_S5_SLP_TYP) {
				poweroff = !pm->poweroff_sent;
				pm->poweroff_sent = true;
				pm->poweroffs++;
			} else {
				log_ratelimited(&pm->rl, LOG_WARN,
						"acpi: guest asked for sleep type %u; only S5 (%u) is "
						"supported, ignoring",
						typ, ACPI_S5_SLP_TYP);
			}
		}
	}
	pthread_mutex_unlock(&pm->lock);
	if (poweroff && pm->poweroff)
		pm->poweroff(pm->ctx);
}

/* ---- PM_TMR ---------------------------------------------------------------- */

static void acpi_pm_tmr_read(struct bus_dev *dev, uint64_t offset, void *data, uint32_t len)
{
	struct acpi_pm *pm = container_of(dev, struct acpi_pm, tmr_bus);
	pthread_mutex_lock(&pm->lock);
	uint64_t ticks = acpi_pm_now_ticks(pm);
	acpi_pm_eval_timer(pm, ticks);
	acpi_pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
	acpi_pm_fill(data, offset, len, (uint32_t)ticks, PORT_ACPI_PM_TMR_LEN);
}

static void acpi_pm_tmr_write(struct bus_dev *dev, uint64_t offset, const void *data, uint32_t len)
{
	/* PM_TMR is read-only. */
}

/* ---- GPE0_BLK -------------------------------------------------------------- */

static void acpi_pm_gpe_read(struct bus_dev *dev, uint64_t offset, void *data, uint32_t len)
{
	struct acpi_pm *pm = container_of(dev, struct acpi_pm, gpe_bus);
	pthread_mutex_lock(&pm->lock);
	uint64_t regs = (uint64_t)pm->gpe_sts | ((uint64_t)pm->gpe_en << 16);
	pthread_mutex_unlock(&pm->lock);
	acpi_pm_fill(data, offset, len, regs, PORT_ACPI_GPE0_LEN);
}

static void acpi_pm_gpe_write(struct bus_dev *dev, uint64_t offset, const void *data, uint32_t len)
{
	struct acpi_pm *pm = container_of(dev, struct acpi_pm, gpe_bus);
	uint64_t regs = 0;
	uint64_t written = acpi_pm_merge(&regs, offset, data, len, PORT_ACPI_GPE0_LEN);
	pthread_mutex_lock(&pm->lock);
	/* GPE0_STS: write 1 to clear, only for the bytes written */
	pm->gpe_sts &= (uint16_t)~(regs & written & 0xffff);
	/* GPE0_EN: read/write byte by byte, implemented bits only */
	uint16_t en_mask = (uint16_t)((written >> 16) & 0xffff);
	uint16_t en_new = (uint16_t)((regs >> 16) & 0xffff);
	pm->gpe_en = (uint16_t)(((pm->gpe_en & ~en_mask) | (en_new & en_mask)) & ACPI_GPE0_MASK);
	acpi_pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

void acpi_pm_raise_gpe(struct acpi_pm *pm, unsigned gpe)
{
	if (gpe >= 16 || !(ACPI_GPE0_MASK & (1u << gpe)))
		return;
	pthread_mutex_lock(&pm->lock);
	pm->gpe_sts |= (uint16_t)(1u << gpe);
	acpi_pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

/* ---- reset register -------------------------------------------------------- */

static void acpi_pm_reset_read(struct bus_dev *dev, uint64_t offset, void *data, uint32_t len)
{
	acpi_pm_fill(data, offset, len, 0, 1);
}

static void acpi_pm_reset_bus_write(struct bus_dev *dev, uint64_t offset, const void *data,
				    uint32_t len)
{
	struct acpi_pm *pm = container_of(dev, struct acpi_pm, reset_bus);
	if (offset == 0 && len)
		acpi_pm_reset_write(pm, ((const uint8_t *)data)[0]);
}

void acpi_pm_reset_write(struct acpi_pm *pm, uint8_t val)
{
	if (val != ACPI_RESET_VALUE && val != ACPI_RESET_VALUE_FULL)
		return;
	pthread_mutex_lock(&pm->lock);
	pm->resets++;
	bool first = !pm->reset_sent;
	pm->reset_sent = true;
	pthread_mutex_unlock(&pm->lock);
	if (first && pm->reset)
		pm->reset(pm->ctx);
}

static const struct bus_dev_ops acpi_pm_evt_ops = {
	.read = acpi_pm_evt_read,
	.write = acpi_pm_evt_write,
};
static const struct bus_dev_ops acpi_pm_cnt_ops = {
	.read = acpi_pm_cnt_read,
	.write = acpi_pm_cnt_write,
};
static const struct bus_dev_ops acpi_pm_tmr_ops = {
	.read = acpi_pm_tmr_read,
	.write = acpi_pm_tmr_write,
};
static const struct bus_dev_ops acpi_pm_gpe_ops = {
	.read = acpi_pm_gpe_read,
	.write = acpi_pm_gpe_write,
};
static const struct bus_dev_ops acpi_pm_reset_ops = {
	.read = acpi_pm_reset_read,
	.write = acpi_pm_reset_bus_write,
};

int acpi_pm_init(struct acpi_pm *pm, const struct irq_line *sci, void (*poweroff)(void *ctx),
		 void (*reset)(void *ctx), void *ctx)
{
	memset(pm, 0, sizeof(*pm));
	int rc = pthread_mutex_init(&pm->lock, NULL);
	if (rc)
		return -rc;
	pm->evt_bus = (struct bus_dev){.ops = &acpi_pm_evt_ops, .name = "acpi-pm1a-evt"};
	pm->cnt_bus = (struct bus_dev){.ops = &acpi_pm_cnt_ops, .name = "acpi-pm1a-cnt"};
	pm->tmr_bus = (struct bus_dev){.ops = &acpi_pm_tmr_ops, .name = "acpi-pm-tmr"};
	pm->reset_bus = (struct bus_dev){.ops = &acpi_pm_reset_ops, .name = "acpi-reset"};
	pm->gpe_bus = (struct bus_dev){.ops = &acpi_pm_gpe_ops, .name = "acpi-gpe0"};
	if (sci)
		pm->sci = *sci;
	pm->poweroff = poweroff;
	pm->reset = reset;
	pm->ctx = ctx;
	pm->clock_ns = now_ns;
	pm->base_ns = now_ns();
	return 0;
}

void acpi_pm_destroy(struct acpi_pm *pm)
{
	pthread_mutex_destroy(&pm->lock);
}

void acpi_pm_press_power_button(struct acpi_pm *pm)
{
	pthread_mutex_lock(&pm->lock);
	pm->sts |= ACPI_PM1_PWRBTN_STS;
	acpi_pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

uint32_t acpi_pm_timer(struct acpi_pm *pm)
{
	pthread_mutex_lock(&pm->lock);
	uint64_t ticks = acpi_pm_now_ticks(pm);
	pthread_mutex_unlock(&pm->lock);
	return (uint32_t)ticks;
}

/* ---- snapshot state ------------------------------------------------------ */

/* a century of counting: far beyond any real uptime, small enough that
 * acpi_pm_ticks() cannot overflow */
#define ACPI_PM_STATE_TIMER_MAX (100ULL * 365 * 24 * 3600 * 1000000000ULL)

void acpi_pm_state_get(struct acpi_pm *pm, struct acpi_pm_state *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&pm->lock);
	uint64_t ns = acpi_pm_now_ns(pm);
	acpi_pm_eval_timer(pm, acpi_pm_ticks(ns));
	st->sts = pm->sts;
	st->en = pm->en;
	st->cnt = pm->cnt;
	st->timer_ns = ns;
	st->gpe_sts = pm->gpe_sts;
	st->gpe_en = pm->gpe_en;
	pthread_mutex_unlock(&pm->lock);
}

void acpi_pm_state_encode(const struct acpi_pm_state *st, struct snap_writer *w)
{
	snap_put_u16(w, st->sts);
	snap_put_u16(w, st->en);
	snap_put_u16(w, st->cnt);
	snap_put_u16(w, 0); /* reserved */
	snap_put_u64(w, st->timer_ns);
	snap_put_u16(w, st->gpe_sts);
	snap_put_u16(w, st->gpe_en);
	snap_put_u32(w, 0); /* reserved */
}

int acpi_pm_state_decode(const uint8_t *p, size_t len, uint32_t version, struct acpi_pm_state *st,
			 char *err, size_t errlen)
{
	memset(st, 0, sizeof(*st));
	if (version != 1 && version != ACPI_PM_STATE_VERSION)
		return err_set(err, errlen, -EINVAL,
			       "acpi-pm: state version %u (this visor reads 1 and %u)", version,
			       ACPI_PM_STATE_VERSION);
	struct snap_cursor c;
	snap_cursor_init(&c, p, len);
	st->sts = snap_get_u16(&c);
	st->en = snap_get_u16(&c);
	st->cnt = snap_get_u16(&c);
	uint16_t reserved = snap_get_u16(&c);
	st->timer_ns = snap_get_u64(&c);
	uint32_t reserved2 = 0;
	if (version >= 2) {
		/* version 1 had no GPE0 block: both registers 0 */
		st->gpe_sts = snap_get_u16(&c);
		st->gpe_en = snap_get_u16(&c);
		reserved2 = snap_get_u32(&c);
	}
	int rc = snap_cursor_done(&c, "acpi-pm", err, errlen);
	if (rc)
		return rc;
	if (reserved || reserved2)
		return err_set(err, errlen, -EINVAL, "acpi-pm: reserved field is %#x, not 0",
			       reserved ? reserved : reserved2);
	if (st->sts & ~ACPI_PM1_STS_MASK)
		return err_set(err, errlen, -EINVAL, "acpi-pm: PM1_STS %#x has undefined bits set",
			       st->sts);
	if (st->en & ~ACPI_PM1_EN_MASK)
		return err_set(err, errlen, -EINVAL, "acpi-pm: PM1_EN %#x has undefined bits set",
			       st->en);
	if (st->cnt & ~(ACPI_PM1_BM_RLD | ACPI_PM1_SLP_TYP_MASK))
		return err_set(err, errlen, -EINVAL, "acpi-pm: PM1_CNT %#x is not a value it holds",
			       st->cnt);
	if (st->gpe_sts & ~ACPI_GPE0_MASK)
		return err_set(err, errlen, -EINVAL,
			       "acpi-pm: GPE0_STS %#x has bits of unimplemented events set",
			       st->gpe_sts);
	if (st->gpe_en & ~ACPI_GPE0_MASK)
		return err_set(err, errlen, -EINVAL,
			       "acpi-pm: GPE0_EN %#x enables unimplemented events", st->gpe_en);
	if (st->timer_ns > ACPI_PM_STATE_TIMER_MAX)
		return err_set(err, errlen, -EINVAL, "acpi-pm: timer at %llu ns is over a century",
			       (unsigned long long)st->timer_ns);
	return 0;
}

void acpi_pm_pause(struct acpi_pm *pm)
{
	pthread_mutex_lock(&pm->lock);
	if (!pm->frozen) {
		pm->bias_ns = acpi_pm_now_ns(pm);
		pm->frozen = true;
	}
	pthread_mutex_unlock(&pm->lock);
}

void acpi_pm_resume(struct acpi_pm *pm)
{
	pthread_mutex_lock(&pm->lock);
	if (pm->frozen) {
		pm->base_ns = pm->clock_ns();
		pm->frozen = false;
	}
	pthread_mutex_unlock(&pm->lock);
}

void acpi_pm_state_put(struct acpi_pm *pm, const struct acpi_pm_state *st)
{
	pthread_mutex_lock(&pm->lock);
	pm->sts = st->sts;
	pm->en = st->en;
	pm->cnt = st->cnt;
	pm->gpe_sts = st->gpe_sts;
	pm->gpe_en = st->gpe_en;
	pm->base_ns = pm->clock_ns();
	pm->bias_ns = st->timer_ns;
	pm->tmr_half = acpi_pm_ticks(st->timer_ns) >> 31;
	pm->poweroff_sent = pm->reset_sent = false;
	pm->sci_level = (pm->sts & pm->en) != 0 || (pm->gpe_sts & pm->gpe_en) != 0;
	irq_line_set(&pm->sci, pm->sci_level);
	pthread_mutex_unlock(&pm->lock);
}
