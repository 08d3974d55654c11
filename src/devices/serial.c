/* SPDX-License-Identifier: MIT */
/*
 * serial.c - 16550A UART.  Register semantics follow the National PC16550D
 * datasheet; see serial.h for the model and its simplifications.
 */
#include "serial.h"

#include <errno.h>
#include <string.h>

#include "../util/str.h"

/* What a single guest access left to do once the lock is dropped. */
struct serial_after {
	bool have_tx;
	uint8_t tx_byte;
	bool rx_ready;
};

static bool serial_fifo_enabled(const struct serial *s)
{
	return s->fcr & SERIAL_FCR_ENABLE;
}

static uint32_t serial_rx_capacity(const struct serial *s)
{
	/* 16450 mode (FIFOs off) has a single receive holding register. */
	return serial_fifo_enabled(s) ? SERIAL_RX_FIFO_SIZE : 1;
}

static bool serial_loopback(const struct serial *s)
{
	return s->mcr & SERIAL_MCR_LOOP;
}

/* Space for host input: none in loopback, where SIN is disconnected. */
static uint32_t serial_host_space(const struct serial *s)
{
	if (serial_loopback(s))
		return 0;
	return serial_rx_capacity(s) - s->rx_count;
}

static void serial_rx_clear(struct serial *s)
{
	s->rx_head = 0;
	s->rx_count = 0;
}

/* Put one received byte in the FIFO; a full FIFO loses it and sets OE
 * (datasheet: the character in the shift register is overwritten, the FIFO
 * is not). */
static void serial_rx_push(struct serial *s, uint8_t b)
{
	if (s->rx_count >= serial_rx_capacity(s)) {
		s->lsr_err |= SERIAL_LSR_OE;
		s->rx_overruns++;
		return;
	}
	s->rx_fifo[(s->rx_head + s->rx_count) % SERIAL_RX_FIFO_SIZE] = b;
	s->rx_count++;
}

static uint8_t serial_rx_pop(struct serial *s)
{
	if (s->rx_count == 0)
		return 0;
	uint8_t b = s->rx_fifo[s->rx_head];
	s->rx_head = (s->rx_head + 1) % SERIAL_RX_FIFO_SIZE;
	s->rx_count--;
	return b;
}

/* Modem status inputs (MSR bits 7:4).  In loopback they are wired to the
 * MCR outputs (datasheet, "loopback mode"): RTS->CTS, DTR->DSR, OUT1->RI,
 * OUT2->DCD.  Otherwise a ready terminal: CTS, DSR and DCD asserted. */
static uint8_t serial_modem_inputs(const struct serial *s)
{
	if (!serial_loopback(s))
		return SERIAL_MSR_CTS | SERIAL_MSR_DSR | SERIAL_MSR_DCD;
	uint8_t m = 0;
	if (s->mcr & SERIAL_MCR_RTS)
		m |= SERIAL_MSR_CTS;
	if (s->mcr & SERIAL_MCR_DTR)
		m |= SERIAL_MSR_DSR;
	if (s->mcr & SERIAL_MCR_OUT1)
		m |= SERIAL_MSR_RI;
	if (s->mcr & SERIAL_MCR_OUT2)
		m |= SERIAL_MSR_DCD;
	return m;
}

/* Highest-priority pending, enabled interrupt as an IIR id (bits 3:0). */
static uint8_t serial_iir_id(const struct serial *s)
{
	if ((s->ier & SERIAL_IER_ELSI) && s->lsr_err)
		return SERIAL_IIR_LSR;
	if ((s->ier & SERIAL_IER_ERBFI) && s->rx_count)
		return SERIAL_IIR_RDA;
	if ((s->ier & SERIAL_IER_ETBEI) && s->thre_pending)
		return SERIAL_IIR_THRE;
	if ((s->ier & SERIAL_IER_EDSSI) && s->msr_delta)
		return SERIAL_IIR_MSR;
	return SERIAL_IIR_NONE;
}

/* Drive the irq line to match IIR.  Called with the lock held so that
 * level changes from different threads reach the line in order. */
static void serial_update_irq(struct serial *s)
{
	bool level = serial_iir_id(s) != SERIAL_IIR_NONE;
	if (level != s->irq_level) {
		s->irq_level = level;
		irq_line_set(&s->irq, level);
	}
}

/* If the host was refused input and there is room now, disarm and report
 * that the rx-ready callback is due. */
static bool serial_rx_ready_due(struct serial *s)
{
	if (s->rx_blocked && serial_host_space(s) > 0) {
		s->rx_blocked = false;
		return true;
	}
	return false;
}

static uint8_t serial_read_reg(struct serial *s, uint64_t off, struct serial_after *after)
{
	bool dlab = s->lcr & SERIAL_LCR_DLAB;
	switch (off) {
	case SERIAL_RBR:
		if (dlab)
			return s->dll;
		{
			uint8_t b = serial_rx_pop(s);
			after->rx_ready |= serial_rx_ready_due(s);
			return b;
		}
	case SERIAL_IER:
		return dlab ? s->dlm : s->ier;
	case SERIAL_IIR: {
		uint8_t id = serial_iir_id(s);
		/* Reading IIR while it reports THRE clears that source. */
		if (id == SERIAL_IIR_THRE)
			s->thre_pending = false;
		return (uint8_t)(id | (serial_fifo_enabled(s) ? SERIAL_IIR_FIFO : 0));
	}
	case SERIAL_LCR:
		return s->lcr;
	case SERIAL_MCR:
		return s->mcr;
	case SERIAL_LSR: {
		uint8_t v = SERIAL_LSR_THRE | SERIAL_LSR_TEMT | s->lsr_err;
		if (s->rx_count)
			v |= SERIAL_LSR_DR;
		s->lsr_err = 0; /* error bits clear on read */
		return v;
	}
	case SERIAL_MSR: {
		uint8_t v = serial_modem_inputs(s) | s->msr_delta;
		s->msr_delta = 0; /* delta bits clear on read */
		return v;
	}
	case SERIAL_SCR:
		return s->scr;
	default:
		return 0xff; /* outside the window */
	}
}

static void serial_write_fcr(struct serial *s, uint8_t v, struct serial_after *after)
{
	bool was_on = serial_fifo_enabled(s);
	bool on = v & SERIAL_FCR_ENABLE;
	/* Changing FCR0 clears both FIFOs; the other bits only take effect
	 * with FCR0 set (datasheet, FCR description). */
	if (was_on != on || (on && (v & SERIAL_FCR_CLEAR_RX)))
		serial_rx_clear(s);
	s->fcr = on ? (uint8_t)(v & ~(SERIAL_FCR_CLEAR_RX | SERIAL_FCR_CLEAR_TX)) : 0;
	after->rx_ready |= serial_rx_ready_due(s);
}

static void serial_write_mcr(struct serial *s, uint8_t v, struct serial_after *after)
{
	uint8_t before = serial_modem_inputs(s);
	s->mcr = v & 0x1f; /* bits 7:5 are always 0 on the 16550A */
	uint8_t now = serial_modem_inputs(s);
	uint8_t changed = before ^ now;
	if (changed & SERIAL_MSR_CTS)
		s->msr_delta |= SERIAL_MSR_DCTS;
	if (changed & SERIAL_MSR_DSR)
		s->msr_delta |= SERIAL_MSR_DDSR;
	if ((before & SERIAL_MSR_RI) && !(now & SERIAL_MSR_RI))
		s->msr_delta |= SERIAL_MSR_TERI; /* trailing edge only */
	if (changed & SERIAL_MSR_DCD)
		s->msr_delta |= SERIAL_MSR_DDCD;
	after->rx_ready |= serial_rx_ready_due(s);
}

static void serial_write_reg(struct serial *s, uint64_t off, uint8_t v, struct serial_after *after)
{
	bool dlab = s->lcr & SERIAL_LCR_DLAB;
	switch (off) {
	case SERIAL_THR:
		if (dlab) {
			s->dll = v;
			break;
		}
		if (serial_loopback(s)) {
			serial_rx_push(s, v);
		} else {
			after->have_tx = true;
			after->tx_byte = v;
			s->tx_bytes++;
		}
		/* The byte leaves at once: THR is empty again. */
		s->thre_pending = true;
		break;
	case SERIAL_IER:
		if (dlab) {
			s->dlm = v;
			break;
		}
		s->ier = v & 0x0f; /* bits 7:4 are always 0 on the 16550A */
		if (s->ier & SERIAL_IER_ETBEI)
			s->thre_pending = true;
		break;
	case SERIAL_FCR:
		serial_write_fcr(s, v, after);
		break;
	case SERIAL_LCR:
		s->lcr = v;
		break;
	case SERIAL_MCR:
		serial_write_mcr(s, v, after);
		break;
	case SERIAL_SCR:
		s->scr = v;
		break;
	default:
		/* LSR/MSR are read-only (factory test writes ignored);
		 * bytes outside the window are dropped. */
		break;
	}
}

static void serial_run_after(struct serial *s, const struct serial_after *after)
{
	if (after->have_tx && s->tx)
		s->tx(s->tx_ctx, &after->tx_byte, 1);
	if (after->rx_ready) {
		pthread_mutex_lock(&s->lock);
		void (*cb)(void *) = s->rx_ready;
		void *ctx = s->rx_ready_ctx;
		pthread_mutex_unlock(&s->lock);
		if (cb)
			cb(ctx);
	}
}

static void serial_bus_read(struct bus_dev *dev, uint64_t offset, void *data, uint32_t len)
{
	struct serial *s = container_of(dev, struct serial, bus);
	struct serial_after after = {0};
	uint8_t *out = data;
	pthread_mutex_lock(&s->lock);
	for (uint32_t i = 0; i < len; i++) {
		uint64_t off = offset + i;
		out[i] = off < SERIAL_NREGS ? serial_read_reg(s, off, &after) : 0xff;
	}
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	serial_run_after(s, &after);
}

static void serial_bus_write(struct bus_dev *dev, uint64_t offset, const void *data, uint32_t len)
{
	struct serial *s = container_of(dev, struct serial, bus);
	struct serial_after after = {0};
	const uint8_t *in = data;
	pthread_mutex_lock(&s->lock);
	/* Each offset appears at most once per access, so at most one THR
	 * byte is produced per access. */
	for (uint32_t i = 0; i < len; i++) {
		uint64_t off = offset + i;
		if (off < SERIAL_NREGS)
			serial_write_reg(s, off, in[i], &after);
	}
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	serial_run_after(s, &after);
}

static const struct bus_dev_ops serial_ops = {
	.read = serial_bus_read,
	.write = serial_bus_write,
};

int serial_init(struct serial *s, const struct irq_line *irq,
		void (*tx)(void *ctx, const uint8_t *buf, size_t len), void *tx_ctx)
{
	memset(s, 0, sizeof(*s));
	int rc = pthread_mutex_init(&s->lock, NULL);
	if (rc)
		return -rc;
	s->bus.ops = &serial_ops;
	s->bus.name = "serial";
	if (irq)
		s->irq = *irq;
	s->tx = tx;
	s->tx_ctx = tx_ctx;
	s->dll = 12; /* 9600 baud with the PC's 1.8432 MHz clock */
	return 0;
}

void serial_destroy(struct serial *s)
{
	pthread_mutex_destroy(&s->lock);
}

size_t serial_input(struct serial *s, const uint8_t *buf, size_t len)
{
	pthread_mutex_lock(&s->lock);
	size_t space = serial_host_space(s);
	size_t n = len < space ? len : space;
	for (size_t i = 0; i < n; i++)
		serial_rx_push(s, buf[i]);
	if (n < len)
		s->rx_blocked = true;
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

size_t serial_rx_space(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	size_t space = serial_host_space(s);
	if (space == 0)
		s->rx_blocked = true;
	pthread_mutex_unlock(&s->lock);
	return space;
}

void serial_set_rx_ready_cb(struct serial *s, void (*cb)(void *ctx), void *ctx)
{
	pthread_mutex_lock(&s->lock);
	s->rx_ready = cb;
	s->rx_ready_ctx = ctx;
	pthread_mutex_unlock(&s->lock);
}

/* ---- snapshot state ------------------------------------------------------ */

void serial_state_get(struct serial *s, struct serial_state *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&s->lock);
	st->ier = s->ier;
	st->lcr = s->lcr;
	st->mcr = s->mcr;
	st->scr = s->scr;
	st->dll = s->dll;
	st->dlm = s->dlm;
	st->fcr = s->fcr;
	st->lsr_err = s->lsr_err;
	st->msr_delta = s->msr_delta;
	st->thre_pending = s->thre_pending;
	memcpy(st->rx_fifo, s->rx_fifo, sizeof(st->rx_fifo));
	st->rx_head = s->rx_head;
	st->rx_count = s->rx_count;
	pthread_mutex_unlock(&s->lock);
}

void serial_state_encode(const struct serial_state *st, struct snap_writer *w)
{
	const uint8_t regs[] = {st->ier,     st->lcr,     st->mcr,      st->scr,
				st->dll,     st->dlm,     st->fcr,      st->lsr_err,
				st->msr_delta, st->thre_pending};
	snap_put_bytes(w, regs, sizeof(regs));
	snap_put_bytes(w, st->rx_fifo, sizeof(st->rx_fifo));
	snap_put_u32(w, st->rx_head);
	snap_put_u32(w, st->rx_count);
}

int serial_state_decode(const uint8_t *p, size_t len, uint32_t version, struct serial_state *st,
			char *err, size_t errlen)
{
	memset(st, 0, sizeof(*st));
	if (version != SERIAL_STATE_VERSION)
		return err_set(err, errlen, -EINVAL, "serial: state version %u (this visor reads %u)", version,
				 SERIAL_STATE_VERSION);
	struct snap_cursor c;
	snap_cursor_init(&c, p, len);
	uint8_t regs[10];
	snap_get_bytes(&c, regs, sizeof(regs));
	st->ier = regs[0];
	st->lcr = regs[1];
	st->mcr = regs[2];
	st->scr = regs[3];
	st->dll = regs[4];
	st->dlm = regs[5];
	st->fcr = regs[6];
	st->lsr_err = regs[7];
	st->msr_delta = regs[8];
	st->thre_pending = regs[9];
	snap_get_bytes(&c, st->rx_fifo, sizeof(st->rx_fifo));
	st->rx_head = snap_get_u32(&c);
	st->rx_count = snap_get_u32(&c);
	int rc = snap_cursor_done(&c, "serial", err, errlen);
	if (rc)
		return rc;
	/* only values the register writes above can produce */
	if (st->ier & 0xf0)
		return err_set(err, errlen, -EINVAL, "serial: IER %#x has reserved bits set", st->ier);
	if (st->mcr & 0xe0)
		return err_set(err, errlen, -EINVAL, "serial: MCR %#x has reserved bits set", st->mcr);
	if (st->fcr & (SERIAL_FCR_CLEAR_RX | SERIAL_FCR_CLEAR_TX) ||
	    (!(st->fcr & SERIAL_FCR_ENABLE) && st->fcr))
		return err_set(err, errlen, -EINVAL, "serial: FCR %#x is not a value the UART holds", st->fcr);
	if (st->lsr_err & ~SERIAL_LSR_OE)
		return err_set(err, errlen, -EINVAL, "serial: LSR error bits %#x (only OE is modelled)",
				 st->lsr_err);
	if (st->msr_delta & 0xf0)
		return err_set(err, errlen, -EINVAL, "serial: MSR delta bits %#x out of range", st->msr_delta);
	if (st->thre_pending > 1)
		return err_set(err, errlen, -EINVAL, "serial: THRE pending %u is not 0 or 1", st->thre_pending);
	uint32_t cap = (st->fcr & SERIAL_FCR_ENABLE) ? SERIAL_RX_FIFO_SIZE : 1;
	if (st->rx_head >= SERIAL_RX_FIFO_SIZE || st->rx_count > cap)
		return err_set(err, errlen, -EINVAL, "serial: receive FIFO head %u count %u (capacity %u)",
				 st->rx_head, st->rx_count, cap);
	return 0;
}

void serial_state_put(struct serial *s, const struct serial_state *st)
{
	pthread_mutex_lock(&s->lock);
	s->ier = st->ier;
	s->lcr = st->lcr;
	s->mcr = st->mcr;
	s->scr = st->scr;
	s->dll = st->dll;
	s->dlm = st->dlm;
	s->fcr = st->fcr;
	s->lsr_err = st->lsr_err;
	s->msr_delta = st->msr_delta;
	s->thre_pending = st->thre_pending;
	memcpy(s->rx_fifo, st->rx_fifo, sizeof(s->rx_fifo));
	s->rx_head = st->rx_head;
	s->rx_count = st->rx_count;
	s->rx_blocked = false;
	/* drive the line from what the restored registers imply, whatever
	 * this (fresh) device believed it was */
	s->irq_level = serial_iir_id(s) != SERIAL_IIR_NONE;
	irq_line_set(&s->irq, s->irq_level);
	pthread_mutex_unlock(&s->lock);
}
