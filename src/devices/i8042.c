/* SPDX-License-Identifier: MIT */
/*
 * i8042.c - PS/2 controller without devices; see i8042.h for the model.
 * Command set per the IBM PS/2 Hardware Interface Technical Reference
 * (keyboard/auxiliary device controller chapter).
 */
#include "i8042.h"

#include <errno.h>
#include <string.h>

#include "../util/str.h"

#define I8042_NAK 0xfe /* what an absent device "answers" */

static uint8_t i8042_status(const struct i8042 *k)
{
	uint8_t s = I8042_STR_NOINH;
	if (k->obf)
		s |= I8042_STR_OBF;
	if (k->obf && k->out_aux)
		s |= I8042_STR_AUX;
	if (k->ram[0] & I8042_CTR_SYS)
		s |= I8042_STR_SYS;
	if (k->last_cmd)
		s |= I8042_STR_CMD;
	if (k->timeout)
		s |= I8042_STR_TIMEOUT;
	return s;
}

static void i8042_update_irq(struct i8042 *k)
{
	uint8_t ctr = k->ram[0];
	bool kbd = k->obf && !k->out_aux && (ctr & I8042_CTR_KBDINT);
	bool aux = k->obf && k->out_aux && (ctr & I8042_CTR_AUXINT);
	if (kbd != k->kbd_level) {
		k->kbd_level = kbd;
		irq_line_set(&k->kbd_irq, kbd);
	}
	if (aux != k->aux_level) {
		k->aux_level = aux;
		irq_line_set(&k->aux_irq, aux);
	}
}

/* Put a byte in the (single-byte) output buffer, replacing what was there. */
static void i8042_put(struct i8042 *k, uint8_t v, bool aux, bool timeout)
{
	k->out = v;
	k->obf = true;
	k->out_aux = aux;
	k->timeout = timeout;
}

/* What the controller's translation (CTR bit 6) makes of the set-2 codes
 * of the keys the host sends. */
static const struct {
	uint8_t set2, set1;
} i8042_xlate_table[] = {
	{0x14, 0x1d}, /* Ctrl (left) */
	{0x11, 0x38}, /* Alt (left) */
	{0x71, 0x53}, /* Delete (with 0xE0) / keypad . */
};

static uint8_t i8042_xlate(uint8_t code)
{
	for (size_t i = 0; i < sizeof(i8042_xlate_table) / sizeof(i8042_xlate_table[0]); i++)
		if (i8042_xlate_table[i].set2 == code)
			return i8042_xlate_table[i].set1;
	return code;
}

/* The keyboard sends its next byte when the output buffer is empty and its
 * interface is enabled; the controller translates it on the way if CTR
 * bit 6 says so. */
static void i8042_kbd_feed(struct i8042 *k)
{
	while (!k->obf && k->kbd_count && !(k->ram[0] & I8042_CTR_KBDDIS)) {
		uint8_t b = k->kbd_queue[k->kbd_head];
		k->kbd_head = (k->kbd_head + 1) % I8042_KBD_QUEUE;
		k->kbd_count--;
		if (k->ram[0] & I8042_CTR_XLATE) {
			if (b == 0xf0) {
				k->xlate_break = true;
				continue;
			}
			if (b != 0xe0 && b != 0xe1) {
				b = i8042_xlate(b);
				if (k->xlate_break)
					b |= 0x80;
				k->xlate_break = false;
			}
		}
		i8042_put(k, b, false, false);
	}
}

/* Pulse/assert reset; the callback runs (once) after the lock is dropped. */
static void i8042_request_reset(struct i8042 *k, bool *do_reset)
{
	k->resets++;
	if (!k->reset_sent) {
		k->reset_sent = true;
		*do_reset = true;
	}
}

static void i8042_command(struct i8042 *k, uint8_t cmd, bool *do_reset)
{
	k->pending = 0;
	if (cmd >= 0x20 && cmd <= 0x3f) {
		i8042_put(k, k->ram[cmd & 0x1f], false, false);
		return;
	}
	if ((cmd >= 0x60 && cmd <= 0x7f) || (cmd >= 0xd1 && cmd <= 0xd4)) {
		k->pending = cmd; /* the data byte follows at 0x60 */
		return;
	}
	if (cmd >= 0xf0) {
		/* Pulse the output-port bits whose mask bit is 0; bit 0 is reset. */
		if (!(cmd & 0x01))
			i8042_request_reset(k, do_reset);
		return;
	}
	switch (cmd) {
	case 0xa4: /* password installed? */
		i8042_put(k, 0xf1, false, false);
		break;
	case 0xa7:
		k->ram[0] |= I8042_CTR_AUXDIS;
		break;
	case 0xa8:
		k->ram[0] &= (uint8_t)~I8042_CTR_AUXDIS;
		break;
	case 0xa9: /* aux interface test: 0 = no error */
	case 0xab: /* keyboard interface test */
		i8042_put(k, 0x00, false, false);
		break;
	case 0xaa: /* controller self test */
		k->ram[0] |= I8042_CTR_SYS;
		i8042_put(k, 0x55, false, false);
		break;
	case 0xad:
		k->ram[0] |= I8042_CTR_KBDDIS;
		break;
	case 0xae:
		k->ram[0] &= (uint8_t)~I8042_CTR_KBDDIS;
		break;
	case 0xc0: /* input port: not inhibited, no mfg jumper */
		i8042_put(k, 0xa0, false, false);
		break;
	case 0xd0:
		i8042_put(k, k->outport, false, false);
		break;
	case 0xdd: /* A20 off/on: A20 is always on here */
	case 0xdf:
		break;
	case 0xe0: /* test inputs */
		i8042_put(k, 0x00, false, false);
		break;
	default:
		log_ratelimited(&k->rl, LOG_DEBUG, "i8042: ignoring command 0x%02x", cmd);
		break;
	}
}

/* The keyboard answers a command: it drops what it still held (as a real
 * keyboard clears its buffer on a command) and queues @n response bytes,
 * which reach the guest through the controller like any key byte. */
static void kbd_reply(struct i8042 *k, const uint8_t *b, size_t n)
{
	k->kbd_count = 0;
	k->xlate_break = false;
	for (size_t i = 0; i < n && i < I8042_KBD_QUEUE; i++)
		k->kbd_queue[(k->kbd_head + k->kbd_count++) % I8042_KBD_QUEUE] = b[i];
}

#define KBD_ACK 0xfa

/* A byte written to 0x60 without a pending controller command goes to the
 * keyboard.  It answers the commands Linux's atkbd sends when it probes
 * and sets up a keyboard (so the driver binds without i8042.dumbkbd, as on
 * Firecracker): identify as an MF2 keyboard, ACK everything else it knows,
 * take the parameter byte of set-LEDs / scancode set / typematic rate. */
static void kbd_command(struct i8042 *k, uint8_t v)
{
	static const uint8_t ack[] = {KBD_ACK};
	if (k->kbd_param) {
		uint8_t c = k->kbd_param;
		k->kbd_param = 0;
		if (c == 0xf0 && v == 0) {
			static const uint8_t set[] = {KBD_ACK, 0x02}; /* scancode set 2 */
			kbd_reply(k, set, sizeof(set));
		} else {
			kbd_reply(k, ack, 1);
		}
		return;
	}
	switch (v) {
	case 0xed: /* set LEDs */
	case 0xf0: /* get/set scancode set */
	case 0xf3: /* typematic rate */
		k->kbd_param = v;
		kbd_reply(k, ack, 1);
		break;
	case 0xee: { /* echo */
		static const uint8_t echo[] = {0xee};
		kbd_reply(k, echo, 1);
		break;
	}
	case 0xf2: { /* identify: MF2 keyboard */
		static const uint8_t id[] = {KBD_ACK, 0xab, 0x83};
		kbd_reply(k, id, sizeof(id));
		break;
	}
	case 0xf4: /* enable scanning */
		k->kbd_scanning = true;
		kbd_reply(k, ack, 1);
		break;
	case 0xf5: /* disable scanning (and defaults) */
		k->kbd_scanning = false;
		kbd_reply(k, ack, 1);
		break;
	case 0xff: { /* reset: ACK, then self-test passed */
		static const uint8_t bat[] = {KBD_ACK, 0xaa};
		k->kbd_scanning = true;
		kbd_reply(k, bat, sizeof(bat));
		break;
	}
	case 0xf6: /* defaults */
	case 0xf7: case 0xf8: case 0xf9: case 0xfa: case 0xfb: case 0xfc: case 0xfd:
	case 0xfe: /* resend: nothing was lost here */
		kbd_reply(k, ack, 1);
		break;
	default: {
		static const uint8_t resend[] = {0xfe}; /* unknown command */
		kbd_reply(k, resend, 1);
		break;
	}
	}
}

static void i8042_data(struct i8042 *k, uint8_t v, bool *do_reset)
{
	uint8_t cmd = k->pending;
	k->pending = 0;
	if (cmd >= 0x60 && cmd <= 0x7f) {
		k->ram[cmd & 0x1f] = v;
		return;
	}
	switch (cmd) {
	case 0xd1:
		k->outport = v | I8042_OUT_RESET; /* the reset pulse is momentary */
		if (!(v & I8042_OUT_RESET))
			i8042_request_reset(k, do_reset);
		break;
	case 0xd2:
		i8042_put(k, v, false, false);
		break;
	case 0xd3:
		i8042_put(k, v, true, false);
		break;
	case 0xd4:
		i8042_put(k, I8042_NAK, true, true); /* no aux device */
		break;
	default:
		kbd_command(k, v);
		break;
	}
}

static void i8042_finish(struct i8042 *k, bool do_reset)
{
	i8042_kbd_feed(k);
	i8042_update_irq(k);
	pthread_mutex_unlock(&k->lock);
	if (do_reset && k->reset)
		k->reset(k->ctx);
}

static void i8042_fill(uint8_t *out, uint32_t len, uint8_t first)
{
	if (len)
		out[0] = first;
	for (uint32_t i = 1; i < len; i++)
		out[i] = 0xff;
}

static void i8042_data_read(struct bus_dev *dev, uint64_t offset, void *data, uint32_t len)
{
	struct i8042 *k = container_of(dev, struct i8042, data_bus);
	uint8_t v = 0xff;
	pthread_mutex_lock(&k->lock);
	if (offset == 0 && len) {
		v = k->out; /* an empty buffer repeats its last byte */
		k->obf = false;
		k->out_aux = false;
		/* More key bytes follow: let the line fall before the next
		 * byte raises it again (a new edge per byte). */
		if (k->kbd_count)
			i8042_update_irq(k);
	}
	i8042_finish(k, false);
	i8042_fill(data, len, v);
}

static void i8042_data_write(struct bus_dev *dev, uint64_t offset, const void *data, uint32_t len)
{
	struct i8042 *k = container_of(dev, struct i8042, data_bus);
	bool do_reset = false;
	pthread_mutex_lock(&k->lock);
	if (offset == 0 && len) {
		k->last_cmd = false;
		i8042_data(k, ((const uint8_t *)data)[0], &do_reset);
	}
	i8042_finish(k, do_reset);
}

static void i8042_cmd_read(struct bus_dev *dev, uint64_t offset, void *data, uint32_t len)
{
	struct i8042 *k = container_of(dev, struct i8042, cmd_bus);
	pthread_mutex_lock(&k->lock);
	uint8_t v = offset == 0 ? i8042_status(k) : 0xff;
	pthread_mutex_unlock(&k->lock);
	i8042_fill(data, len, v);
}

static void i8042_cmd_write(struct bus_dev *dev, uint64_t offset, const void *data, uint32_t len)
{
	struct i8042 *k = container_of(dev, struct i8042, cmd_bus);
	bool do_reset = false;
	pthread_mutex_lock(&k->lock);
	if (offset == 0 && len) {
		k->last_cmd = true;
		i8042_command(k, ((const uint8_t *)data)[0], &do_reset);
	}
	i8042_finish(k, do_reset);
}

static const struct bus_dev_ops i8042_data_ops = {
	.read = i8042_data_read,
	.write = i8042_data_write,
};

static const struct bus_dev_ops i8042_cmd_ops = {
	.read = i8042_cmd_read,
	.write = i8042_cmd_write,
};

int i8042_init(struct i8042 *k, void (*reset)(void *ctx), void *ctx)
{
	memset(k, 0, sizeof(*k));
	int rc = pthread_mutex_init(&k->lock, NULL);
	if (rc)
		return -rc;
	k->data_bus.ops = &i8042_data_ops;
	k->data_bus.name = "i8042-data";
	k->cmd_bus.ops = &i8042_cmd_ops;
	k->cmd_bus.name = "i8042-cmd";
	k->reset = reset;
	k->ctx = ctx;
	k->ram[0] = I8042_CTR_KBDINT | I8042_CTR_SYS | I8042_CTR_AUXDIS | I8042_CTR_XLATE;
	k->outport = I8042_OUT_RESET | I8042_OUT_A20;
	k->kbd_scanning = true;
	return 0;
}

void i8042_set_irqs(struct i8042 *k, const struct irq_line *kbd, const struct irq_line *aux)
{
	pthread_mutex_lock(&k->lock);
	k->kbd_irq = kbd ? *kbd : (struct irq_line){0};
	k->aux_irq = aux ? *aux : (struct irq_line){0};
	k->kbd_level = k->aux_level = false;
	i8042_update_irq(k);
	pthread_mutex_unlock(&k->lock);
}

void i8042_send_ctrl_alt_del(struct i8042 *k)
{
	static const uint8_t seq[] = {0x14, 0x11, 0xe0, 0x71,        /* make */
				      0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14}; /* break */
	pthread_mutex_lock(&k->lock);
	if (!k->kbd_scanning) {
		k->keys_dropped++;
		log_ratelimited(&k->rl, LOG_WARN,
				"i8042: the guest disabled the keyboard, Ctrl-Alt-Del dropped");
	} else if (I8042_KBD_QUEUE - k->kbd_count < sizeof(seq)) {
		k->keys_dropped++;
		log_ratelimited(&k->rl, LOG_WARN, "i8042: keyboard queue full, Ctrl-Alt-Del dropped");
	} else {
		for (size_t i = 0; i < sizeof(seq); i++)
			k->kbd_queue[(k->kbd_head + k->kbd_count++) % I8042_KBD_QUEUE] = seq[i];
	}
	i8042_finish(k, false);
}

void i8042_destroy(struct i8042 *k)
{
	pthread_mutex_destroy(&k->lock);
}

/* ---- snapshot state ------------------------------------------------------ */

void i8042_state_get(struct i8042 *k, struct i8042_state *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&k->lock);
	memcpy(st->ram, k->ram, sizeof(st->ram));
	st->out = k->out;
	st->obf = k->obf;
	st->out_aux = k->out_aux;
	st->timeout = k->timeout;
	st->last_cmd = k->last_cmd;
	st->pending = k->pending;
	st->outport = k->outport;
	st->xlate_break = k->xlate_break;
	st->kbd_scanning = k->kbd_scanning;
	st->kbd_param = k->kbd_param;
	memcpy(st->kbd_queue, k->kbd_queue, sizeof(st->kbd_queue));
	st->kbd_head = k->kbd_head;
	st->kbd_count = k->kbd_count;
	pthread_mutex_unlock(&k->lock);
}

void i8042_state_encode(const struct i8042_state *st, struct snap_writer *w)
{
	snap_put_bytes(w, st->ram, sizeof(st->ram));
	const uint8_t b[] = {st->out,	  st->obf,	   st->out_aux,	     st->timeout,
			     st->last_cmd, st->pending,	   st->outport,	     st->xlate_break,
			     st->kbd_scanning, st->kbd_param};
	snap_put_bytes(w, b, sizeof(b));
	snap_put_bytes(w, st->kbd_queue, sizeof(st->kbd_queue));
	snap_put_u32(w, st->kbd_head);
	snap_put_u32(w, st->kbd_count);
}

int i8042_state_decode(const uint8_t *p, size_t len, uint32_t version, struct i8042_state *st,
		       char *err, size_t errlen)
{
	memset(st, 0, sizeof(*st));
	if (version != I8042_STATE_VERSION)
		return err_set(err, errlen, -EINVAL, "i8042: state version %u (this visor reads %u)",
			       version, I8042_STATE_VERSION);
	struct snap_cursor c;
	snap_cursor_init(&c, p, len);
	snap_get_bytes(&c, st->ram, sizeof(st->ram));
	uint8_t b[10];
	snap_get_bytes(&c, b, sizeof(b));
	st->out = b[0];
	st->obf = b[1];
	st->out_aux = b[2];
	st->timeout = b[3];
	st->last_cmd = b[4];
	st->pending = b[5];
	st->outport = b[6];
	st->xlate_break = b[7];
	st->kbd_scanning = b[8];
	st->kbd_param = b[9];
	snap_get_bytes(&c, st->kbd_queue, sizeof(st->kbd_queue));
	st->kbd_head = snap_get_u32(&c);
	st->kbd_count = snap_get_u32(&c);
	int rc = snap_cursor_done(&c, "i8042", err, errlen);
	if (rc)
		return rc;
	const uint8_t flags[] = {st->obf, st->out_aux, st->timeout, st->last_cmd, st->xlate_break,
				 st->kbd_scanning};
	for (size_t i = 0; i < sizeof(flags); i++)
		if (flags[i] > 1)
			return err_set(err, errlen, -EINVAL, "i8042: flag %zu is %u, not 0 or 1", i,
				       flags[i]);
	if (st->pending && !((st->pending >= 0x60 && st->pending <= 0x7f) ||
			     (st->pending >= 0xd1 && st->pending <= 0xd4)))
		return err_set(err, errlen, -EINVAL,
			       "i8042: pending command %#x takes no data byte", st->pending);
	if (!(st->outport & I8042_OUT_RESET))
		return err_set(err, errlen, -EINVAL, "i8042: output port %#x holds the CPU in reset",
			       st->outport);
	if (st->kbd_param && st->kbd_param != 0xed && st->kbd_param != 0xf0 &&
	    st->kbd_param != 0xf3)
		return err_set(err, errlen, -EINVAL,
			       "i8042: keyboard command %#x takes no parameter", st->kbd_param);
	if (st->kbd_head >= I8042_KBD_QUEUE || st->kbd_count > I8042_KBD_QUEUE)
		return err_set(err, errlen, -EINVAL, "i8042: keyboard queue head %u count %u (size %u)",
			       st->kbd_head, st->kbd_count, I8042_KBD_QUEUE);
	return 0;
}

void i8042_state_put(struct i8042 *k, const struct i8042_state *st)
{
	pthread_mutex_lock(&k->lock);
	memcpy(k->ram, st->ram, sizeof(k->ram));
	k->out = st->out;
	k->obf = st->obf;
	k->out_aux = st->out_aux;
	k->timeout = st->timeout;
	k->last_cmd = st->last_cmd;
	k->pending = st->pending;
	k->outport = st->outport;
	k->xlate_break = st->xlate_break;
	k->kbd_scanning = st->kbd_scanning;
	k->kbd_param = st->kbd_param;
	memcpy(k->kbd_queue, st->kbd_queue, sizeof(k->kbd_queue));
	k->kbd_head = st->kbd_head;
	k->kbd_count = st->kbd_count;
	k->reset_sent = false;
	/* drive both lines from the restored state */
	k->kbd_level = !(k->obf && !k->out_aux && (k->ram[0] & I8042_CTR_KBDINT));
	k->aux_level = !(k->obf && k->out_aux && (k->ram[0] & I8042_CTR_AUXINT));
	i8042_update_irq(k);
	pthread_mutex_unlock(&k->lock);
}
