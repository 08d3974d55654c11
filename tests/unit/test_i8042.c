/* SPDX-License-Identifier: MIT */
#include "../../src/devices/i8042.h"

#include "dev_fake.h"
#include "test.h"

static int resets;
static void fake_reset(void *ctx)
{
	(void)ctx;
	resets++;
}

static uint8_t status(struct i8042 *k)
{
	uint8_t v = 0;
	k->cmd_bus.ops->read(&k->cmd_bus, 0, &v, 1);
	return v;
}

static uint8_t data_rd(struct i8042 *k)
{
	uint8_t v = 0;
	k->data_bus.ops->read(&k->data_bus, 0, &v, 1);
	return v;
}

static void cmd(struct i8042 *k, uint8_t v)
{
	k->cmd_bus.ops->write(&k->cmd_bus, 0, &v, 1);
}

static void data_wr(struct i8042 *k, uint8_t v)
{
	k->data_bus.ops->write(&k->data_bus, 0, &v, 1);
}

/* Like Linux's i8042_command(): send, then poll OBF for the answer. */
static int command_response(struct i8042 *k, uint8_t c)
{
	cmd(k, c);
	if (!(status(k) & I8042_STR_OBF))
		return -1;
	return data_rd(k);
}

TEST(reset_state_and_status)
{
	struct i8042 k;
	resets = 0;
	CHECK_EQ(i8042_init(&k, fake_reset, NULL), 0);
	uint8_t st = status(&k);
	CHECK_EQ(st & I8042_STR_OBF, 0);
	CHECK_EQ(st & I8042_STR_IBF, 0);
	CHECK(st & I8042_STR_SYS);
	CHECK(st & I8042_STR_NOINH); /* no keylock */
	i8042_destroy(&k);
}

TEST(self_tests)
{
	struct i8042 k;
	CHECK_EQ(i8042_init(&k, fake_reset, NULL), 0);
	CHECK_EQ(command_response(&k, 0xaa), 0x55);
	CHECK_EQ(status(&k) & I8042_STR_OBF, 0); /* read emptied it */
	CHECK(status(&k) & I8042_STR_CMD);       /* last write was a command */
	CHECK_EQ(command_response(&k, 0xab), 0x00);
	CHECK_EQ(command_response(&k, 0xa9), 0x00);
	CHECK_EQ(command_response(&k, 0xa4), 0xf1);
	/* commands without a response leave OBF clear */
	cmd(&k, 0xad);
	CHECK_EQ(status(&k) & I8042_STR_OBF, 0);
	i8042_destroy(&k);
}

TEST(ctr_read_write)
{
	struct i8042 k;
	CHECK_EQ(i8042_init(&k, fake_reset, NULL), 0);
	CHECK_EQ(command_response(&k, 0x20), 0x65);
	cmd(&k, 0x60);
	data_wr(&k, 0x47);
	CHECK_EQ(status(&k) & I8042_STR_CMD, 0);
	CHECK_EQ(command_response(&k, 0x20), 0x47);
	/* aux / kbd enable bits */
	cmd(&k, 0xa7);
	CHECK_EQ(command_response(&k, 0x20), 0x67);
	cmd(&k, 0xa8);
	cmd(&k, 0xad);
	CHECK_EQ(command_response(&k, 0x20), 0x57);
	cmd(&k, 0xae);
	CHECK_EQ(command_response(&k, 0x20), 0x47);
	/* system flag follows CTR bit 2 */
	cmd(&k, 0x60);
	data_wr(&k, 0x00);
	CHECK_EQ(status(&k) & I8042_STR_SYS, 0);
	/* other RAM bytes */
	cmd(&k, 0x61);
	data_wr(&k, 0x99);
	CHECK_EQ(command_response(&k, 0x21), 0x99);
	CHECK_EQ(command_response(&k, 0x20), 0x00);
	i8042_destroy(&k);
}

TEST(reset_commands)
{
	struct i8042 k;
	resets = 0;
	CHECK_EQ(i8042_init(&k, fake_reset, NULL), 0);
	cmd(&k, 0xff); /* pulses nothing */
	cmd(&k, 0xfd); /* pulses bit 1 only */
	CHECK_EQ(resets, 0);
	cmd(&k, 0xfe);
	CHECK_EQ(resets, 1);
	CHECK_EQ(k.resets, 1);
	/* once per init: a reset loop cannot flood the machine */
	for (int i = 0; i < 1000; i++)
		cmd(&k, 0xfe);
	CHECK_EQ(resets, 1);
	CHECK_EQ(k.resets, 1001);
	i8042_destroy(&k);

	/* 0xd1: output port write; bit 0 clear = reset */
	resets = 0;
	CHECK_EQ(i8042_init(&k, fake_reset, NULL), 0);
	cmd(&k, 0xd1);
	data_wr(&k, 0xdf); /* A20 on, reset deasserted */
	CHECK_EQ(resets, 0);
	CHECK_EQ(command_response(&k, 0xd0), 0xdf);
	/* a data byte without a pending command is for the keyboard, not the
	 * output port */
	data_wr(&k, 0x00);
	CHECK_EQ(resets, 0);
	cmd(&k, 0xd1);
	data_wr(&k, 0xde);
	CHECK_EQ(resets, 1);
	i8042_destroy(&k);
}

/* The keyboard answers what atkbd sends when it probes (so the driver
 * binds without i8042.dumbkbd); the absent mouse NAKs with time-out. */
TEST(keyboard_answers_absent_mouse_naks)
{
	struct i8042 k;
	CHECK_EQ(i8042_init(&k, NULL, NULL), 0);
	data_wr(&k, 0xf2); /* keyboard: identify */
	uint8_t st = status(&k);
	CHECK(st & I8042_STR_OBF);
	CHECK_EQ(st & (I8042_STR_TIMEOUT | I8042_STR_AUX), 0);
	CHECK_EQ(data_rd(&k), 0xfa);
	CHECK_EQ(data_rd(&k), 0xab);
	CHECK_EQ(data_rd(&k), 0x83);
	data_wr(&k, 0xff); /* reset: ACK, self-test passed */
	CHECK_EQ(data_rd(&k), 0xfa);
	CHECK_EQ(data_rd(&k), 0xaa);
	data_wr(&k, 0xed); /* set LEDs: ACK, then the parameter: ACK */
	CHECK_EQ(data_rd(&k), 0xfa);
	data_wr(&k, 0x07);
	CHECK_EQ(data_rd(&k), 0xfa);
	data_wr(&k, 0xf0); /* which scancode set? 2 */
	CHECK_EQ(data_rd(&k), 0xfa);
	data_wr(&k, 0x00);
	CHECK_EQ(data_rd(&k), 0xfa);
	CHECK_EQ(data_rd(&k), 0x02);
	data_wr(&k, 0xee); /* echo */
	CHECK_EQ(data_rd(&k), 0xee);
	data_wr(&k, 0x42); /* not a command */
	CHECK_EQ(data_rd(&k), 0xfe);
	/* scanning off: Ctrl-Alt-Del is dropped and counted; on again: sent */
	data_wr(&k, 0xf5);
	CHECK_EQ(data_rd(&k), 0xfa);
	i8042_send_ctrl_alt_del(&k);
	CHECK_EQ(k.keys_dropped, 1);
	CHECK_EQ(status(&k) & I8042_STR_OBF, 0);
	data_wr(&k, 0xf4);
	CHECK_EQ(data_rd(&k), 0xfa);
	i8042_send_ctrl_alt_del(&k);
	CHECK(status(&k) & I8042_STR_OBF);
	CHECK_EQ(data_rd(&k), 0x1d); /* Ctrl make, set 1 */
	i8042_destroy(&k);
	CHECK_EQ(i8042_init(&k, NULL, NULL), 0);
	cmd(&k, 0xd4);
	data_wr(&k, 0xf2); /* mouse: identify */
	st = status(&k);
	CHECK_EQ(st & (I8042_STR_OBF | I8042_STR_AUX | I8042_STR_TIMEOUT),
		 I8042_STR_OBF | I8042_STR_AUX | I8042_STR_TIMEOUT);
	CHECK_EQ(data_rd(&k), 0xfe);
	CHECK_EQ(status(&k) & (I8042_STR_OBF | I8042_STR_AUX), 0);
	/* aux loopback (0xd3) echoes as aux data, without time-out */
	cmd(&k, 0xd3);
	data_wr(&k, 0x5a);
	st = status(&k);
	CHECK_EQ(st & (I8042_STR_OBF | I8042_STR_AUX | I8042_STR_TIMEOUT),
		 I8042_STR_OBF | I8042_STR_AUX);
	CHECK_EQ(data_rd(&k), 0x5a);
	cmd(&k, 0xd2);
	data_wr(&k, 0x33);
	CHECK_EQ(status(&k) & (I8042_STR_OBF | I8042_STR_AUX), I8042_STR_OBF);
	CHECK_EQ(data_rd(&k), 0x33);
	i8042_destroy(&k);
}

TEST(irq_lines)
{
	struct i8042 k;
	struct fake_irq kbd = {0}, aux = {0};
	struct irq_line lk = {fake_set_level, &kbd, 1}, la = {fake_set_level, &aux, 12};
	CHECK_EQ(i8042_init(&k, NULL, NULL), 0);
	i8042_set_irqs(&k, &lk, &la);
	CHECK_EQ(command_response(&k, 0xaa), 0x55); /* CTR KBDINT set */
	CHECK_EQ(kbd.raises, 1);
	CHECK_EQ(kbd.level, 0);
	cmd(&k, 0x60);
	data_wr(&k, 0x44); /* interrupts off */
	cmd(&k, 0xaa);
	CHECK_EQ(kbd.level, 0);
	(void)data_rd(&k);
	cmd(&k, 0x60);
	data_wr(&k, 0x47); /* both on */
	cmd(&k, 0xd3);
	data_wr(&k, 0x01);
	CHECK_EQ(aux.level, 1);
	CHECK_EQ(kbd.level, 0);
	(void)data_rd(&k);
	CHECK_EQ(aux.level, 0);
	i8042_destroy(&k);
}

TEST(flood_bounded)
{
	struct i8042 k;
	resets = 0;
	CHECK_EQ(i8042_init(&k, fake_reset, NULL), 0);
	for (uint32_t i = 0; i < 10000000; i++) {
		if (i & 1)
			data_wr(&k, (uint8_t)i);
		else
			cmd(&k, (uint8_t)(0x20 + (i >> 1) % 0xd0));
	}
	uint8_t st = status(&k);
	CHECK_EQ(st & I8042_STR_IBF, 0);
	/* one-byte buffer plus at most the keyboard's queue (its last answer):
	 * a bounded number of reads empties it */
	int reads = 0;
	while ((status(&k) & I8042_STR_OBF) && reads <= I8042_KBD_QUEUE + 1) {
		(void)data_rd(&k);
		reads++;
	}
	CHECK_EQ(status(&k) & I8042_STR_OBF, 0);
	CHECK(reads <= I8042_KBD_QUEUE + 1);
	CHECK_EQ(resets, 0);
	i8042_destroy(&k);
}

TEST(all_widths_defined)
{
	struct i8042 k;
	CHECK_EQ(i8042_init(&k, NULL, NULL), 0);
	struct bus_dev *devs[2] = {&k.data_bus, &k.cmd_bus};
	for (int d = 0; d < 2; d++) {
		for (uint32_t w = 1; w <= 8; w *= 2) {
			uint8_t a[8];
			CHECK(read_is_defined(devs[d], 0, w, a));
			for (uint32_t i = 1; i < w; i++)
				CHECK_EQ(a[i], 0xff);
		}
	}
	i8042_destroy(&k);
}

/* Read every byte the controller delivers (as Linux's interrupt handler
 * does: status, then data while OBF); returns how many, at most max. */
static int read_all(struct i8042 *k, uint8_t *out, int max)
{
	int n = 0;
	while (n < max && (status(k) & I8042_STR_OBF)) {
		CHECK_EQ(status(k) & (I8042_STR_AUX | I8042_STR_TIMEOUT), 0);
		out[n++] = data_rd(k);
	}
	return n;
}

static const uint8_t cad_set1[] = {0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d};
static const uint8_t cad_set2[] = {0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14};

/* SendCtrlAltDel with the power-on CTR (translation on, keyboard
 * interrupt on): set 1 codes, one interrupt edge per byte. */
TEST(ctrl_alt_del_translated_with_irq_per_byte)
{
	struct i8042 k;
	struct fake_irq kbd = {0}, aux = {0};
	struct irq_line lk = {fake_set_level, &kbd, 1}, la = {fake_set_level, &aux, 12};
	CHECK_EQ(i8042_init(&k, NULL, NULL), 0);
	i8042_set_irqs(&k, &lk, &la);
	i8042_send_ctrl_alt_del(&k);
	CHECK(status(&k) & I8042_STR_OBF);
	CHECK_EQ(kbd.level, 1);
	CHECK_EQ(kbd.raises, 1);
	for (size_t i = 0; i < sizeof(cad_set1); i++) {
		CHECK(status(&k) & I8042_STR_OBF);
		CHECK_EQ(kbd.level, 1);
		CHECK_EQ(kbd.raises, (int)i + 1); /* a new edge for each byte */
		CHECK_EQ(data_rd(&k), cad_set1[i]);
	}
	CHECK_EQ(status(&k) & I8042_STR_OBF, 0);
	CHECK_EQ(kbd.level, 0);
	CHECK_EQ(kbd.raises, (int)sizeof(cad_set1));
	CHECK_EQ(aux.raises, 0);
	CHECK_EQ(k.keys_dropped, 0);
	i8042_destroy(&k);
}

/* Translation off (Linux with i8042.direct clears CTR bit 6): set 2. */
TEST(ctrl_alt_del_untranslated)
{
	struct i8042 k;
	CHECK_EQ(i8042_init(&k, NULL, NULL), 0);
	cmd(&k, 0x60);
	data_wr(&k, 0x25); /* CTR: KBDINT, SYS, AUXDIS; no XLATE */
	i8042_send_ctrl_alt_del(&k);
	uint8_t got[32];
	int n = read_all(&k, got, 32);
	CHECK_EQ(n, sizeof(cad_set2));
	CHECK(memcmp(got, cad_set2, sizeof(cad_set2)) == 0);
	i8042_destroy(&k);
}

/* The keyboard waits for the output buffer: a controller response that
 * is still unread comes first; a disabled keyboard interface (0xAD) holds
 * the keys until 0xAE; with the interrupt off the driver polls. */
TEST(ctrl_alt_del_waits_for_buffer_and_enable)
{
	struct i8042 k;
	struct fake_irq kbd = {0};
	struct irq_line lk = {fake_set_level, &kbd, 1};
	CHECK_EQ(i8042_init(&k, NULL, NULL), 0);
	i8042_set_irqs(&k, &lk, NULL);
	cmd(&k, 0xaa); /* 0x55 waits in the buffer */
	i8042_send_ctrl_alt_del(&k);
	CHECK_EQ(data_rd(&k), 0x55);
	CHECK_EQ(data_rd(&k), 0x1d);
	uint8_t got[32];
	CHECK_EQ(read_all(&k, got, 32), sizeof(cad_set1) - 1);
	CHECK(memcmp(got, cad_set1 + 1, sizeof(cad_set1) - 1) == 0);

	cmd(&k, 0xad); /* keyboard interface off */
	int raises = kbd.raises;
	i8042_send_ctrl_alt_del(&k);
	CHECK_EQ(status(&k) & I8042_STR_OBF, 0);
	CHECK_EQ(kbd.raises, raises);
	cmd(&k, 0xae);
	CHECK(status(&k) & I8042_STR_OBF);
	CHECK_EQ(kbd.raises, raises + 1);
	CHECK_EQ(read_all(&k, got, 32), sizeof(cad_set1));
	CHECK(memcmp(got, cad_set1, sizeof(cad_set1)) == 0);

	cmd(&k, 0x60);
	data_wr(&k, 0x64); /* keyboard interrupt off: polled */
	raises = kbd.raises;
	i8042_send_ctrl_alt_del(&k);
	CHECK_EQ(kbd.level, 0);
	CHECK_EQ(read_all(&k, got, 32), sizeof(cad_set1));
	CHECK(memcmp(got, cad_set1, sizeof(cad_set1)) == 0);
	CHECK_EQ(kbd.raises, raises);
	i8042_destroy(&k);
}

/* The keyboard's queue is bounded: a sequence that does not fit whole is
 * dropped and counted, never half-sent. */
TEST(ctrl_alt_del_queue_bounded)
{
	struct i8042 k;
	CHECK_EQ(i8042_init(&k, NULL, NULL), 0);
	for (int i = 0; i < 100; i++)
		i8042_send_ctrl_alt_del(&k);
	CHECK_EQ(k.keys_dropped, 99);
	uint8_t got[64];
	CHECK_EQ(read_all(&k, got, 64), sizeof(cad_set1));
	CHECK(memcmp(got, cad_set1, sizeof(cad_set1)) == 0);
	i8042_send_ctrl_alt_del(&k); /* room again */
	CHECK_EQ(read_all(&k, got, 64), sizeof(cad_set1));
	CHECK_EQ(k.keys_dropped, 99);
	i8042_destroy(&k);
}

TEST_MAIN()
