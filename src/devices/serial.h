/* SPDX-License-Identifier: MIT */
/*
 * serial.h - a 16550A UART (8250 family), as Linux's 8250 driver sees one
 * on COM1 (PORT_COM1, 8 ports, IRQ_COM1).
 *
 * Register map (National PC16550D datasheet, table "UART reset
 * configuration" / "register summary"), offset from the base port:
 *
 *   0  read: RBR (DLAB=0) / DLL (DLAB=1)   write: THR (DLAB=0) / DLL
 *   1  IER (DLAB=0) / DLM (DLAB=1)
 *   2  read: IIR                            write: FCR (DLAB ignored)
 *   3  LCR (bit 7 = DLAB)
 *   4  MCR (bit 4 = loopback)
 *   5  LSR (writes ignored)
 *   6  MSR (writes ignored)
 *   7  SCR
 *
 * Model:
 *  - Transmission is instantaneous: a THR write hands the byte straight to
 *    the tx callback (one byte per call), so THRE and TEMT always read 1 and
 *    nothing is buffered on the transmit side however fast the guest writes.
 *  - The receive FIFO holds SERIAL_RX_FIFO_SIZE bytes with FIFOs enabled
 *    (FCR bit 0) and one byte (the 16450 holding register) without; host
 *    input beyond that is refused, never buffered (serial_input returns how
 *    much it took).  Loopback bytes that find the FIFO full set LSR.OE.
 *  - The RX data interrupt is pending while any byte is in the FIFO (the
 *    trigger level and the character timeout are approximated by "any
 *    data"; IIR reports 0x04, never the 0x0C timeout id).
 *  - Interrupt priority per the datasheet: line status (OE) > RX data >
 *    THR empty > modem status.  The THRE source is set by a THR write (the
 *    byte leaves at once) and by any IER write with ETBEI set (THR is always
 *    empty; Linux's startup THRE test and tx start rely on this), and is
 *    cleared by an IIR read that reports it.
 *  - MSR outside loopback reports CTS|DSR|DCD (a cable with a ready
 *    terminal, so getty and the console run); in loopback it reflects
 *    MCR (RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD) with delta bits, and
 *    transmitted bytes come back into the receive FIFO instead of going out.
 *    Host input is not accepted in loopback (SIN is disconnected).
 *  - OUT2 does not gate the interrupt (the PC's external gate is not
 *    modelled); the IRQ line follows IIR: high while any enabled source is
 *    pending.
 *  - Multi-byte accesses act as consecutive byte accesses at offset,
 *    offset+1, ... (as the ISA bus splits them); bytes outside the 8-port
 *    window read 0xff and writes to them are ignored.
 *
 * Locking: all state is protected by s->lock.  The irq line is driven with
 * the lock held (so level changes reach it in order); the tx and rx-ready
 * callbacks are called with the lock NOT held, possibly from several vCPU
 * threads at once, and may call back into serial_input/serial_rx_space.
 */
#ifndef VISOR_DEVICES_SERIAL_H
#define VISOR_DEVICES_SERIAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../snapshot/format.h"
#include "bus.h"
#include "irq.h"

#define SERIAL_RX_FIFO_SIZE 16
#define SERIAL_NREGS 8 /* window size: PORT_COM1_LEN */

/* Register offsets */
#define SERIAL_RBR 0 /* read, DLAB=0 */
#define SERIAL_THR 0 /* write, DLAB=0 */
#define SERIAL_DLL 0 /* DLAB=1 */
#define SERIAL_IER 1 /* DLAB=0 */
#define SERIAL_DLM 1 /* DLAB=1 */
#define SERIAL_IIR 2 /* read */
#define SERIAL_FCR 2 /* write */
#define SERIAL_LCR 3
#define SERIAL_MCR 4
#define SERIAL_LSR 5
#define SERIAL_MSR 6
#define SERIAL_SCR 7

/* IER bits */
#define SERIAL_IER_ERBFI 0x01 /* received data available */
#define SERIAL_IER_ETBEI 0x02 /* THR empty */
#define SERIAL_IER_ELSI 0x04  /* receiver line status */
#define SERIAL_IER_EDSSI 0x08 /* modem status */

/* IIR values (bits 3:0) and FIFO-enabled bits */
#define SERIAL_IIR_NONE 0x01
#define SERIAL_IIR_LSR 0x06
#define SERIAL_IIR_RDA 0x04
#define SERIAL_IIR_THRE 0x02
#define SERIAL_IIR_MSR 0x00
#define SERIAL_IIR_FIFO 0xc0

/* FCR bits */
#define SERIAL_FCR_ENABLE 0x01
#define SERIAL_FCR_CLEAR_RX 0x02
#define SERIAL_FCR_CLEAR_TX 0x04

/* LCR / MCR bits */
#define SERIAL_LCR_DLAB 0x80
#define SERIAL_MCR_DTR 0x01
#define SERIAL_MCR_RTS 0x02
#define SERIAL_MCR_OUT1 0x04
#define SERIAL_MCR_OUT2 0x08
#define SERIAL_MCR_LOOP 0x10

/* LSR bits */
#define SERIAL_LSR_DR 0x01
#define SERIAL_LSR_OE 0x02
#define SERIAL_LSR_THRE 0x20
#define SERIAL_LSR_TEMT 0x40

/* MSR bits */
#define SERIAL_MSR_DCTS 0x01
#define SERIAL_MSR_DDSR 0x02
#define SERIAL_MSR_TERI 0x04
#define SERIAL_MSR_DDCD 0x08
#define SERIAL_MSR_CTS 0x10
#define SERIAL_MSR_DSR 0x20
#define SERIAL_MSR_RI 0x40
#define SERIAL_MSR_DCD 0x80

struct serial {
	struct bus_dev bus; /* register with bus_register(pio, &s->bus, PORT_COM1, PORT_COM1_LEN) */
	pthread_mutex_t lock;
	struct irq_line irq;
	void (*tx)(void *ctx, const uint8_t *buf, size_t len);
	void *tx_ctx;
	void (*rx_ready)(void *ctx);
	void *rx_ready_ctx;

	/* registers (all under lock) */
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
	uint8_t lsr_err;   /* sticky LSR error bits (OE), cleared by an LSR read */
	uint8_t msr_delta; /* MSR bits 3:0, cleared by an MSR read */
	bool thre_pending; /* THRE interrupt source */
	uint8_t rx_fifo[SERIAL_RX_FIFO_SIZE];
	uint32_t rx_head, rx_count;
	bool rx_blocked; /* the host was refused input: call rx_ready on space */
	bool irq_level;  /* last level given to irq */

	/* statistics */
	uint64_t tx_bytes;    /* bytes handed to tx */
	uint64_t rx_overruns; /* loopback bytes lost to a full FIFO */
};

/* Initialise @s in its reset state (datasheet "reset" column: IER=0,
 * IIR=0x01, LCR=0, MCR=0, LSR=0x60, FIFOs off, divisor 12 = 9600 baud at
 * base_baud 115200).  @irq (copied; may be NULL for no interrupt) is driven
 * at level 1 while an enabled interrupt is pending.  @tx receives guest
 * output, one byte per call, with the lock not held; it may drop bytes when
 * its output is blocked (counting drops is its job) and must not block for
 * long.  Returns 0 or -errno (mutex init failure). */
int serial_init(struct serial *s, const struct irq_line *irq,
		void (*tx)(void *ctx, const uint8_t *buf, size_t len), void *tx_ctx);

/* Release what serial_init acquired.  No other thread may use @s. */
void serial_destroy(struct serial *s);

/* Host input: queue up to @len bytes of @buf into the receive FIFO and
 * raise the RX interrupt if enabled.  Returns how many bytes were accepted:
 * fewer than @len (possibly 0) when the FIFO is full or the UART is in
 * loopback; the caller then stops reading its input until serial_rx_space()
 * is non-zero again, which the rx-ready callback announces. */
size_t serial_input(struct serial *s, const uint8_t *buf, size_t len);

/* How many bytes serial_input would accept now.  When 0, the rx-ready
 * callback is armed and fires once space appears. */
size_t serial_rx_space(struct serial *s);

/* Set (or clear, with cb NULL) the callback called after the guest makes
 * room in a receive FIFO that refused host input (it read RBR, cleared the
 * FIFO or left loopback).  Called with the lock not held, on a vCPU thread:
 * it should only wake the event loop (e.g. write an eventfd). */
void serial_set_rx_ready_cb(struct serial *s, void (*cb)(void *ctx), void *ctx);

/*
 * Snapshot state: everything the guest can observe, as plain data (no
 * lock, callbacks or statistics).  The IRQ level is not saved: it follows
 * from the registers and is driven again by serial_state_put.
 *
 *   serial_state_get     copy it out of a device (takes the lock)
 *   serial_state_encode  section payload, field by field (SERIAL_STATE_VERSION)
 *   serial_state_decode  payload -> state, every field range-checked; pure
 *   serial_state_put     make a device hold it (takes the lock; drives the
 *                        IRQ line to the level the registers imply)
 */
#define SERIAL_STATE_VERSION 1
struct serial_state {
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr, lsr_err, msr_delta;
	uint8_t thre_pending; /* 0 or 1 */
	uint8_t rx_fifo[SERIAL_RX_FIFO_SIZE];
	uint32_t rx_head, rx_count;
};
void serial_state_get(struct serial *s, struct serial_state *st);
void serial_state_encode(const struct serial_state *st, struct snap_writer *w);
/* 0, or -EINVAL (a malformed payload, an unknown version or a value the
 * UART can never hold) with a message naming the field. */
int serial_state_decode(const uint8_t *p, size_t len, uint32_t version, struct serial_state *st,
			char *err, size_t errlen);
void serial_state_put(struct serial *s, const struct serial_state *st);

#endif
