/* SPDX-License-Identifier: MIT */
/*
 * i8042.c - PS/2 controller without devices; see i8042.h for the model.
 * Command set per the IBM PS/2 Hardware Interface Technical Reference
 * (keyboard/auxiliary device controller chapter).
 */
#include "i8042.h"

#include <string.h>

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
		i8042_put(k, I8042_NAK, false, true); /* no keyboard */
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
	if (I8042_KBD_QUEUE - k->kbd_count < sizeof(seq)) {
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
