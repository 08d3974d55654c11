/* SPDX-License-Identifier: MIT */
#include "../../src/devices/serial.h"

#include <pthread.h>
#include <sched.h>

#include "dev_fake.h"
#include "test.h"

struct fake_tx {
	uint64_t bytes;
	uint64_t calls;
	uint8_t last[64];
	size_t nlast;
};

static void fake_tx(void *ctx, const uint8_t *buf, size_t len)
{
	struct fake_tx *t = ctx;
	t->calls++;
	for (size_t i = 0; i < len; i++) {
		if (t->nlast < sizeof(t->last))
			t->last[t->nlast++] = buf[i];
		t->bytes++;
	}
}

static int rx_ready_calls;
static void fake_rx_ready(void *ctx)
{
	(void)ctx;
	rx_ready_calls++;
}

struct rig {
	struct serial s;
	struct fake_irq irq;
	struct fake_tx tx;
	struct irq_line line;
};

static void rig_init(struct rig *r)
{
	memset(r, 0, sizeof(*r));
	r->line = (struct irq_line){.set_level = fake_set_level, .ctx = &r->irq, .gsi = 4};
	CHECK_EQ(serial_init(&r->s, &r->line, fake_tx, &r->tx), 0);
}

static uint8_t rd(struct rig *r, uint64_t off)
{
	uint8_t v = 0;
	r->s.bus.ops->read(&r->s.bus, off, &v, 1);
	return v;
}

static void wr(struct rig *r, uint64_t off, uint8_t v)
{
	r->s.bus.ops->write(&r->s.bus, off, &v, 1);
}

TEST(reset_state)
{
	struct rig r;
	rig_init(&r);
	CHECK_EQ(rd(&r, SERIAL_IER), 0);
	CHECK_EQ(rd(&r, SERIAL_IIR), 0x01);
	CHECK_EQ(rd(&r, SERIAL_LCR), 0);
	CHECK_EQ(rd(&r, SERIAL_MCR), 0);
	CHECK_EQ(rd(&r, SERIAL_LSR), 0x60);
	CHECK_EQ(rd(&r, SERIAL_MSR), 0xb0); /* CTS|DSR|DCD, no deltas */
	CHECK_EQ(r.irq.level, 0);
	serial_destroy(&r.s);
}

TEST(all_widths_offsets_defined)
{
	struct rig r;
	rig_init(&r);
	serial_input(&r.s, (const uint8_t *)"abc", 3);
	for (uint32_t w = 1; w <= 8; w *= 2) {
		for (uint64_t off = 0; off < SERIAL_NREGS; off++) {
			uint8_t a[8];
			CHECK(read_is_defined(&r.s.bus, off, w, a));
			if (off + w > SERIAL_NREGS)
				CHECK_EQ(a[w - 1], 0xff);
			/* writes of every width must not crash either */
			uint64_t junk = 0;
			r.s.bus.ops->write(&r.s.bus, off, &junk, w);
		}
	}
	serial_destroy(&r.s);
}

TEST(multibyte_is_byte_sequence)
{
	struct rig r;
	rig_init(&r);
	wr(&r, SERIAL_SCR, 0x42);
	uint16_t v = 0;
	/* 16-bit read at 6 = MSR, SCR */
	r.s.bus.ops->read(&r.s.bus, SERIAL_MSR, &v, 2);
	CHECK_EQ(v, 0x42b0);
	/* 16-bit write at 0 with DLAB: DLL, DLM */
	wr(&r, SERIAL_LCR, 0x83);
	uint16_t div = 0x0201;
	r.s.bus.ops->write(&r.s.bus, 0, &div, 2);
	CHECK_EQ(rd(&r, SERIAL_DLL), 0x01);
	CHECK_EQ(rd(&r, SERIAL_DLM), 0x02);
	serial_destroy(&r.s);
}

TEST(dlab_switch)
{
	struct rig r;
	rig_init(&r);
	wr(&r, SERIAL_IER, 0x05);
	wr(&r, SERIAL_LCR, 0x80);
	CHECK_EQ(rd(&r, SERIAL_DLL), 12);
	CHECK_EQ(rd(&r, SERIAL_DLM), 0);
	wr(&r, SERIAL_DLL, 0x01);
	wr(&r, SERIAL_DLM, 0x00);
	CHECK_EQ(rd(&r, SERIAL_DLL), 0x01);
	CHECK_EQ(r.tx.bytes, 0); /* DLL write is not a THR write */
	/* IIR readable under DLAB (Linux's EFR probe relies on non-zero) */
	CHECK(rd(&r, SERIAL_IIR) != 0);
	wr(&r, SERIAL_LCR, 0x03);
	CHECK_EQ(rd(&r, SERIAL_IER), 0x05);
	CHECK_EQ(rd(&r, SERIAL_LCR), 0x03);
	wr(&r, SERIAL_THR, 'x');
	CHECK_EQ(r.tx.bytes, 1);
	CHECK_EQ(r.tx.last[0], 'x');
	serial_destroy(&r.s);
}

TEST(ier_scratch_probe)
{
	/* Linux autoconfig: IER holds exactly bits 3:0 */
	struct rig r;
	rig_init(&r);
	wr(&r, SERIAL_IER, 0);
	CHECK_EQ(rd(&r, SERIAL_IER) & 0x0f, 0);
	wr(&r, SERIAL_IER, 0xff);
	CHECK_EQ(rd(&r, SERIAL_IER), 0x0f);
	wr(&r, SERIAL_IER, 0);
	wr(&r, SERIAL_SCR, 0xa5);
	CHECK_EQ(rd(&r, SERIAL_SCR), 0xa5);
	serial_destroy(&r.s);
}

TEST(fifo_probe_16550a)
{
	struct rig r;
	rig_init(&r);
	CHECK_EQ(rd(&r, SERIAL_IIR) >> 6, 0);
	wr(&r, SERIAL_FCR, SERIAL_FCR_ENABLE);
	CHECK_EQ(rd(&r, SERIAL_IIR) >> 6, 3);
	/* 16750 probe: FCR bit 5 does not show in IIR bit 5, with or without DLAB */
	wr(&r, SERIAL_FCR, 0x21);
	CHECK_EQ(rd(&r, SERIAL_IIR) & 0xe0, 0xc0);
	wr(&r, SERIAL_LCR, 0x80);
	wr(&r, SERIAL_FCR, 0x21);
	CHECK_EQ(rd(&r, SERIAL_IIR) & 0xe0, 0xc0);
	wr(&r, SERIAL_LCR, 0);
	/* XScale probe: IER bit 6 does not stick */
	wr(&r, SERIAL_IER, 0x40);
	CHECK_EQ(rd(&r, SERIAL_IER) & 0x40, 0);
	wr(&r, SERIAL_IER, 0);
	wr(&r, SERIAL_FCR, 0);
	CHECK_EQ(rd(&r, SERIAL_IIR), 0x01);
	serial_destroy(&r.s);
}

TEST(loopback_probe)
{
	struct rig r;
	rig_init(&r);
	wr(&r, SERIAL_MCR, SERIAL_MCR_LOOP | 0x0a); /* RTS | OUT2 */
	CHECK_EQ(rd(&r, SERIAL_MSR) & 0xf0, 0x90);   /* CTS | DCD */
	wr(&r, SERIAL_MCR, SERIAL_MCR_LOOP | 0x05);  /* DTR | OUT1 */
	CHECK_EQ(rd(&r, SERIAL_MSR) & 0xf0, 0x60);   /* DSR | RI */
	wr(&r, SERIAL_MCR, SERIAL_MCR_LOOP);
	uint8_t msr = rd(&r, SERIAL_MSR);
	CHECK_EQ(msr & 0xf0, 0);
	CHECK(msr & SERIAL_MSR_TERI);   /* RI went 1 -> 0 */
	CHECK(msr & SERIAL_MSR_DDSR);   /* DSR went 1 -> 0 */
	CHECK_EQ(rd(&r, SERIAL_MSR), 0); /* deltas clear on read */
	/* transmitted bytes come back, nothing goes out */
	wr(&r, SERIAL_THR, 0x5a);
	CHECK_EQ(r.tx.bytes, 0);
	CHECK(rd(&r, SERIAL_LSR) & SERIAL_LSR_DR);
	CHECK_EQ(rd(&r, SERIAL_RBR), 0x5a);
	CHECK_EQ(rd(&r, SERIAL_LSR) & SERIAL_LSR_DR, 0);
	/* host input is refused in loopback, and resumes after */
	serial_set_rx_ready_cb(&r.s, fake_rx_ready, NULL);
	rx_ready_calls = 0;
	CHECK_EQ(serial_input(&r.s, (const uint8_t *)"h", 1), 0);
	CHECK_EQ(serial_rx_space(&r.s), 0);
	wr(&r, SERIAL_MCR, 0x0b);
	CHECK_EQ(rx_ready_calls, 1);
	CHECK_EQ(rd(&r, SERIAL_MSR) & 0xf0, 0xb0);
	CHECK_EQ(serial_input(&r.s, (const uint8_t *)"h", 1), 1);
	serial_destroy(&r.s);
}

TEST(loopback_fifo_size_and_overrun)
{
	/* Linux's size_fifo(): loop back 256 bytes, count what is readable */
	struct rig r;
	rig_init(&r);
	wr(&r, SERIAL_FCR, SERIAL_FCR_ENABLE | SERIAL_FCR_CLEAR_RX | SERIAL_FCR_CLEAR_TX);
	wr(&r, SERIAL_MCR, SERIAL_MCR_LOOP);
	for (int i = 0; i < 256; i++)
		wr(&r, SERIAL_THR, (uint8_t)i);
	int n = 0;
	while ((rd(&r, SERIAL_LSR) & SERIAL_LSR_DR) && n < 1000) {
		CHECK_EQ(rd(&r, SERIAL_RBR), n);
		n++;
	}
	CHECK_EQ(n, SERIAL_RX_FIFO_SIZE);
	/* overrun: OE latched, line-status interrupt, cleared by LSR read */
	for (int i = 0; i < 17; i++)
		wr(&r, SERIAL_THR, 'o');
	wr(&r, SERIAL_IER, SERIAL_IER_ELSI);
	CHECK_EQ(rd(&r, SERIAL_IIR), 0xc6);
	CHECK_EQ(r.irq.level, 1);
	CHECK(rd(&r, SERIAL_LSR) & SERIAL_LSR_OE);
	CHECK_EQ(rd(&r, SERIAL_LSR) & SERIAL_LSR_OE, 0);
	CHECK_EQ(rd(&r, SERIAL_IIR), 0xc1);
	CHECK_EQ(r.irq.level, 0);
	serial_destroy(&r.s);
}

TEST(thre_interrupt)
{
	struct rig r;
	rig_init(&r);
	CHECK_EQ(r.irq.level, 0);
	wr(&r, SERIAL_IER, SERIAL_IER_ETBEI);
	CHECK_EQ(r.irq.level, 1);
	CHECK_EQ(rd(&r, SERIAL_IIR), 0x02);
	/* the IIR read cleared THRE: line drops, IIR shows nothing */
	CHECK_EQ(r.irq.level, 0);
	CHECK_EQ(rd(&r, SERIAL_IIR), 0x01);
	/* Linux's startup test: IER=0 then ETBEI again re-arms it */
	wr(&r, SERIAL_IER, 0);
	wr(&r, SERIAL_IER, SERIAL_IER_ETBEI);
	CHECK_EQ(r.irq.level, 1);
	CHECK_EQ(rd(&r, SERIAL_IIR), 0x02);
	CHECK_EQ(r.irq.level, 0);
	/* a THR write empties at once and raises THRE again */
	int raises = r.irq.raises;
	wr(&r, SERIAL_THR, 'a');
	CHECK_EQ(r.irq.level, 1);
	CHECK_EQ(r.irq.raises, raises + 1);
	CHECK_EQ(rd(&r, SERIAL_LSR) & 0x60, 0x60);
	/* disabling ETBEI drops the line */
	wr(&r, SERIAL_IER, 0);
	CHECK_EQ(r.irq.level, 0);
	CHECK_EQ(rd(&r, SERIAL_IIR), 0x01);
	serial_destroy(&r.s);
}

TEST(rx_interrupt_and_priority)
{
	struct rig r;
	rig_init(&r);
	wr(&r, SERIAL_FCR, SERIAL_FCR_ENABLE);
	wr(&r, SERIAL_IER, SERIAL_IER_ERBFI);
	CHECK_EQ(r.irq.level, 0);
	CHECK_EQ(serial_input(&r.s, (const uint8_t *)"hi", 2), 2);
	CHECK_EQ(r.irq.level, 1);
	CHECK_EQ(rd(&r, SERIAL_IIR), 0xc4);
	CHECK_EQ(r.irq.level, 1); /* IIR read does not clear RX data */
	/* RX data outranks THRE */
	wr(&r, SERIAL_IER, SERIAL_IER_ERBFI | SERIAL_IER_ETBEI);
	CHECK_EQ(rd(&r, SERIAL_IIR), 0xc4);
	CHECK_EQ(rd(&r, SERIAL_RBR), 'h');
	CHECK_EQ(r.irq.level, 1);
	CHECK_EQ(rd(&r, SERIAL_RBR), 'i');
	/* FIFO drained: THRE is next */
	CHECK_EQ(rd(&r, SERIAL_IIR), 0xc2);
	CHECK_EQ(r.irq.level, 0);
	CHECK_EQ(rd(&r, SERIAL_IIR), 0xc1);
	CHECK_EQ(rd(&r, SERIAL_LSR) & SERIAL_LSR_DR, 0);
	CHECK_EQ(rd(&r, SERIAL_RBR), 0); /* empty FIFO reads 0 */
	serial_destroy(&r.s);
}

TEST(modem_status_interrupt)
{
	struct rig r;
	rig_init(&r);
	wr(&r, SERIAL_IER, SERIAL_IER_EDSSI);
	CHECK_EQ(r.irq.level, 0);
	wr(&r, SERIAL_MCR, SERIAL_MCR_LOOP | SERIAL_MCR_RTS | SERIAL_MCR_DTR | SERIAL_MCR_OUT2);
	/* entering loopback dropped nothing of CTS/DSR/DCD: no delta */
	CHECK_EQ(r.irq.level, 0);
	wr(&r, SERIAL_MCR, SERIAL_MCR_LOOP | SERIAL_MCR_DTR | SERIAL_MCR_OUT2);
	CHECK_EQ(r.irq.level, 1);
	CHECK_EQ(rd(&r, SERIAL_IIR), 0x00);
	CHECK_EQ(rd(&r, SERIAL_MSR), SERIAL_MSR_DSR | SERIAL_MSR_DCD | SERIAL_MSR_DCTS);
	CHECK_EQ(r.irq.level, 0);
	serial_destroy(&r.s);
}

TEST(rx_fifo_bound)
{
	struct rig r;
	rig_init(&r);
	uint8_t buf[1000];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)i;
	/* FIFOs off: the 16450 holding register takes one byte */
	CHECK_EQ(serial_input(&r.s, buf, sizeof(buf)), 1);
	CHECK_EQ(rd(&r, SERIAL_RBR), 0);
	wr(&r, SERIAL_FCR, SERIAL_FCR_ENABLE);
	CHECK_EQ(serial_rx_space(&r.s), SERIAL_RX_FIFO_SIZE);
	CHECK_EQ(serial_input(&r.s, buf, sizeof(buf)), SERIAL_RX_FIFO_SIZE);
	CHECK_EQ(serial_input(&r.s, buf, sizeof(buf)), 0);
	CHECK_EQ(serial_rx_space(&r.s), 0);
	CHECK_EQ(rd(&r, SERIAL_LSR) & SERIAL_LSR_OE, 0); /* refused, not overrun */
	serial_set_rx_ready_cb(&r.s, fake_rx_ready, NULL);
	rx_ready_calls = 0;
	CHECK_EQ(rd(&r, SERIAL_RBR), 0);
	CHECK_EQ(rx_ready_calls, 1);
	CHECK_EQ(rd(&r, SERIAL_RBR), 1);
	CHECK_EQ(rx_ready_calls, 1); /* once per refusal */
	CHECK_EQ(serial_rx_space(&r.s), 2);
	/* FIFO clear empties it and wakes a refused host */
	CHECK_EQ(serial_input(&r.s, buf, sizeof(buf)), 2);
	wr(&r, SERIAL_FCR, SERIAL_FCR_ENABLE | SERIAL_FCR_CLEAR_RX);
	CHECK_EQ(rx_ready_calls, 2);
	CHECK_EQ(serial_rx_space(&r.s), SERIAL_RX_FIFO_SIZE);
	CHECK_EQ(rd(&r, SERIAL_LSR) & SERIAL_LSR_DR, 0);
	serial_destroy(&r.s);
}

TEST(thr_flood_bounded)
{
	struct rig r;
	rig_init(&r);
	wr(&r, SERIAL_IER, SERIAL_IER_ETBEI);
	for (uint32_t i = 0; i < 1000000; i++)
		wr(&r, SERIAL_THR, (uint8_t)i);
	CHECK_EQ(r.tx.bytes, 1000000);
	CHECK_EQ(r.tx.calls, 1000000); /* per byte, nothing held back */
	CHECK_EQ(r.s.tx_bytes, 1000000);
	CHECK_EQ(r.tx.last[3], 3);
	/* the same flood in loopback stays within the FIFO */
	wr(&r, SERIAL_FCR, SERIAL_FCR_ENABLE);
	wr(&r, SERIAL_MCR, SERIAL_MCR_LOOP);
	for (uint32_t i = 0; i < 1000000; i++)
		wr(&r, SERIAL_THR, (uint8_t)i);
	CHECK(r.s.rx_count <= SERIAL_RX_FIFO_SIZE);
	CHECK_EQ(r.s.rx_overruns, 1000000 - SERIAL_RX_FIFO_SIZE);
	CHECK_EQ(r.tx.bytes, 1000000);
	serial_destroy(&r.s);
}

TEST(null_irq_and_tx)
{
	struct serial s;
	CHECK_EQ(serial_init(&s, NULL, NULL, NULL), 0);
	uint8_t v = SERIAL_IER_ETBEI;
	s.bus.ops->write(&s.bus, SERIAL_IER, &v, 1);
	v = 'z';
	s.bus.ops->write(&s.bus, SERIAL_THR, &v, 1);
	s.bus.ops->read(&s.bus, SERIAL_IIR, &v, 1);
	CHECK_EQ(v, 0x02);
	serial_destroy(&s);
}

struct feeder {
	struct serial *s;
	uint64_t sent;
	uint32_t next;
};

static void *feeder_thread(void *arg)
{
	struct feeder *f = arg;
	while (f->sent < 200000) {
		uint8_t buf[7];
		for (int i = 0; i < 7; i++)
			buf[i] = (uint8_t)(f->next + (uint32_t)i);
		size_t want = 200000 - f->sent < sizeof(buf) ? (size_t)(200000 - f->sent) : sizeof(buf);
		size_t n = serial_input(f->s, buf, want);
		f->next += (uint32_t)n;
		f->sent += n;
		if (!n)
			sched_yield();
	}
	return NULL;
}

TEST(concurrent_input_and_drain)
{
	/* event loop thread feeds, "vCPU" drains: every byte arrives once, in order */
	struct rig r;
	rig_init(&r);
	wr(&r, SERIAL_FCR, SERIAL_FCR_ENABLE);
	wr(&r, SERIAL_IER, SERIAL_IER_ERBFI);
	struct feeder f = {.s = &r.s};
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, feeder_thread, &f), 0);
	uint64_t got = 0;
	int bad = 0;
	while (got < 200000) {
		if (rd(&r, SERIAL_LSR) & SERIAL_LSR_DR) {
			if (rd(&r, SERIAL_RBR) != (uint8_t)got)
				bad++;
			got++;
		} else {
			wr(&r, SERIAL_THR, '.'); /* tx path meanwhile */
		}
	}
	pthread_join(t, NULL);
	CHECK_EQ(bad, 0);
	CHECK_EQ(f.sent, 200000);
	CHECK_EQ(rd(&r, SERIAL_LSR) & (SERIAL_LSR_DR | SERIAL_LSR_OE), 0);
	serial_destroy(&r.s);
}

TEST_MAIN()
