/* SPDX-License-Identifier: MIT */
/*
 * i8042.h - PS/2 keyboard controller (Intel 8042 family) at PORT_I8042_DATA
 * (0x60, data) and PORT_I8042_CMD (0x64, status on read / command on
 * write), with no keyboard or mouse attached.  Its purpose is to let Linux's
 * i8042 driver probe without timeouts and to give the guest the classic
 * reset path (command 0xFE, or output-port bit 0 cleared via 0xD1).
 *
 * Status register (read 0x64; IBM PS/2 technical reference, 8042 status):
 *   bit 0 OBF   output buffer full (a byte waits at 0x60)
 *   bit 1 IBF   always 0: every byte is consumed at once
 *   bit 2 SYS   system flag (= CTR bit 2; set at power-on as after POST)
 *   bit 3 A2    1 if the last byte written went to 0x64 (command)
 *   bit 4 INH   1 = keyboard not inhibited (no keylock)
 *   bit 5 AUXB  the byte in the output buffer came from the aux port
 *   bit 6 TO    time-out: the last byte sent to a device got no answer
 *   bit 7 PERR  always 0
 *
 * Commands (write 0x64): 0x20-0x3f read controller RAM (0x20 = CTR),
 * 0x60-0x7f write controller RAM (next byte at 0x60), 0xa4 -> 0xf1 (no
 * password), 0xa7/0xa8 disable/enable aux (CTR bit 5), 0xa9 aux interface
 * test -> 0x00, 0xaa self test -> 0x55, 0xab keyboard interface test ->
 * 0x00, 0xad/0xae disable/enable keyboard (CTR bit 4), 0xc0 read input port
 * -> 0xa0, 0xd0 read output port, 0xd1 write output port (next byte; bit 0
 * clear = reset asserted -> reset callback; the A20 bit is ignored: A20 is
 * always on), 0xd2/0xd3 write the keyboard/aux output buffer (next byte
 * comes back at 0x60 as if from that port), 0xd4 send next byte to the aux
 * device, 0xdd/0xdf A20 (ignored), 0xe0 read test inputs -> 0x00,
 * 0xf0-0xff pulse output-port bits whose bit in the low nibble is 0 (bit 0
 * = reset: 0xfe and friends call the reset callback).  Other commands are
 * ignored (logged at debug level, rate limited).
 *
 * The keyboard: an MF2 keyboard that sends scancode set 2 and answers the
 * commands Linux's atkbd uses (identify 0xF2 -> FA AB 83, reset 0xFF -> FA
 * AA, echo, set LEDs / scancode set / typematic with their parameter byte,
 * enable/disable scanning, defaults: ACK 0xFA; unknown commands: 0xFE), so
 * the driver binds with or without i8042.dumbkbd.  Its responses travel
 * like key bytes.  Keys from the host (i8042_send_ctrl_alt_del,
 * Firecracker's SendCtrlAltDel action) are sent while scanning is enabled.
 * Like a real
 * keyboard it holds its bytes (I8042_KBD_QUEUE of them) and sends the next
 * one only when the output buffer is empty and the keyboard interface is
 * enabled (CTR bit 4 clear).  With translation on (CTR bit 6, set at
 * power-on and kept by Linux unless i8042.direct) the controller delivers
 * them as set 1: it swallows the break prefix 0xF0 and sets bit 7 of the
 * next code, 0xE0 passes unchanged (only the codes of the keys the host
 * sends are in the translation table; others pass unchanged).  When the
 * guest reads one key byte and another follows, the keyboard line drops
 * and rises again: each byte is a new edge for the (edge-triggered) IRQ 1.
 *
 * No mouse: a byte sent via 0xd4 to the aux device is answered the way a
 * PS/2 controller answers for an absent device: 0xfe in the output buffer
 * with status TO and AUXB set, so a driver waiting for an ACK fails at once
 * instead of timing out.
 *
 * The output buffer is one byte, as on the real part: a response that
 * arrives while it is full replaces it, so nothing the guest does can make
 * the device hold more.  Interrupts are optional (i8042_set_irqs): the
 * keyboard line (IRQ 1) is high while OBF holds a keyboard-port byte and
 * CTR bit 0 is set, the aux line (IRQ 12) likewise with AUXB and CTR bit 1.
 * Without them the driver can still poll (as Linux does for every
 * controller command); only its device probes then wait for their time-out.
 *
 * Accesses wider than a byte act on the byte at offset 0 (the only byte in
 * each 1-port window); other bytes read 0xff and their writes are ignored.
 *
 * Locking: all state is under k->lock; irq lines are driven with it held;
 * the reset callback is called with it NOT held.
 */
#ifndef VISOR_DEVICES_I8042_H
#define VISOR_DEVICES_I8042_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../snapshot/format.h"
#include "../util/log.h"
#include "bus.h"
#include "irq.h"

/* Status bits */
#define I8042_STR_OBF 0x01
#define I8042_STR_IBF 0x02
#define I8042_STR_SYS 0x04
#define I8042_STR_CMD 0x08
#define I8042_STR_NOINH 0x10
#define I8042_STR_AUX 0x20
#define I8042_STR_TIMEOUT 0x40

/* Controller configuration byte (CTR, RAM byte 0) */
#define I8042_CTR_KBDINT 0x01
#define I8042_CTR_AUXINT 0x02
#define I8042_CTR_SYS 0x04
#define I8042_CTR_KBDDIS 0x10
#define I8042_CTR_AUXDIS 0x20
#define I8042_CTR_XLATE 0x40

/* Bytes a keyboard holds before the controller takes them. */
#define I8042_KBD_QUEUE 16

/* Output port bits */
#define I8042_OUT_RESET 0x01 /* 0 = CPU reset asserted */
#define I8042_OUT_A20 0x02

struct i8042 {
	struct bus_dev data_bus; /* register at PORT_I8042_DATA, length 1 */
	struct bus_dev cmd_bus;  /* register at PORT_I8042_CMD, length 1 */
	pthread_mutex_t lock;
	struct irq_line kbd_irq, aux_irq;
	void (*reset)(void *ctx);
	void *ctx;

	uint8_t ram[32];  /* controller RAM; ram[0] is the CTR */
	uint8_t out;      /* output buffer */
	bool obf;         /* output buffer full */
	bool out_aux;     /* ... with a byte from the aux port */
	bool timeout;     /* status TO */
	bool last_cmd;    /* status A2 */
	uint8_t pending;  /* command waiting for its data byte, 0 if none */
	uint8_t outport;
	bool kbd_level, aux_level;
	uint8_t kbd_queue[I8042_KBD_QUEUE]; /* set-2 bytes the keyboard still holds */
	uint32_t kbd_head, kbd_count;
	bool xlate_break; /* translation swallowed a 0xF0: the next code breaks */
	uint8_t kbd_param; /* keyboard command waiting for its parameter byte, 0 if none */
	bool kbd_scanning; /* the keyboard sends keys (0xF4/0xF5) */
	uint64_t resets;  /* reset requests seen */
	uint64_t keys_dropped; /* host key sequences refused: keyboard queue full */
	bool reset_sent;  /* the reset callback already ran */
	struct ratelimit rl;
};

/* Initialise @k as a BIOS leaves it: CTR = 0x65 (keyboard interrupt,
 * system flag, aux disabled, translation), output buffer empty, output
 * port 0x03 (reset deasserted, A20 on).  @reset (may be NULL) is called,
 * lock not held, the first time the guest pulses the reset line; later
 * requests are only counted (a guest looping on 0xfe cannot flood the
 * machine; re-initialise the device for a new boot).  No interrupt lines
 * until i8042_set_irqs.  Returns 0 or -errno. */
int i8042_init(struct i8042 *k, void (*reset)(void *ctx), void *ctx);

/* Optionally give the controller its keyboard (IRQ 1) and aux (IRQ 12)
 * lines; either may be NULL.  Call before the guest runs. */
void i8042_set_irqs(struct i8042 *k, const struct irq_line *kbd, const struct irq_line *aux);

/* Press and release Ctrl-Alt-Del on the keyboard: queues the set-2 codes
 * Ctrl, Alt, Del down, then Del, Alt, Ctrl up (14 11 E0 71 E0 F0 71 F0 11
 * F0 14; delivered translated as 1D 38 E0 53 E0 D3 B8 9D with CTR bit 6 set)
 * and, when the output buffer is free, puts the first byte there and raises
 * the keyboard interrupt (if CTR bit 0 enables it).  A sequence that does
 * not fit in the keyboard's queue is dropped whole and counted in
 * keys_dropped.  Any thread but a vCPU inside this device's bus callbacks
 * (the event loop's, typically); takes k->lock. */
void i8042_send_ctrl_alt_del(struct i8042 *k);

/* Release what i8042_init acquired. */
void i8042_destroy(struct i8042 *k);

/*
 * Snapshot state (the pattern of serial.h): controller RAM, output buffer
 * and status bits, the pending command, the output port, the keyboard's
 * queue and mode.  Not saved: statistics, the rate limiter and whether a
 * reset was already requested (a restored guest may request one again).
 */
#define I8042_STATE_VERSION 1
struct i8042_state {
	uint8_t ram[32];
	uint8_t out, obf, out_aux, timeout, last_cmd; /* flags 0 or 1 */
	uint8_t pending;   /* 0, 0x60-0x7f or 0xd1-0xd4 */
	uint8_t outport;   /* bit 0 (reset) set */
	uint8_t xlate_break, kbd_scanning; /* 0 or 1 */
	uint8_t kbd_param; /* 0, 0xed, 0xf0 or 0xf3 */
	uint8_t kbd_queue[I8042_KBD_QUEUE];
	uint32_t kbd_head, kbd_count;
};
void i8042_state_get(struct i8042 *k, struct i8042_state *st);
void i8042_state_encode(const struct i8042_state *st, struct snap_writer *w);
int i8042_state_decode(const uint8_t *p, size_t len, uint32_t version, struct i8042_state *st,
		       char *err, size_t errlen);
void i8042_state_put(struct i8042 *k, const struct i8042_state *st);

#endif
