/* SPDX-License-Identifier: MIT */
/*
 * Snapshot state of the legacy devices (serial, rtc, i8042, acpi-pm) and
 * the registry's device sections: every device round-trips through a state
 * file into a fresh device that then behaves the same, every range check
 * refuses its bad value, truncated and padded payloads are refused, and a
 * restore that fails changes no device.
 */
#include <errno.h>
#include <stdlib.h>

#include "../../src/arch/x86/layout.h"
#include "../../src/devices/acpi_pm.h"
#include "../../src/devices/i8042.h"
#include "../../src/devices/registry.h"
#include "../../src/devices/rtc.h"
#include "../../src/devices/serial.h"
#include "../../src/devices/virtio/virtio.h"
#include "../../src/snapshot/format.h"
#include "dev_fake.h"
#include "test.h"

static char err[256];

/* ---- helpers: one payload through a real state file ---------------------- */

struct file {
	uint8_t *buf;
	size_t len;
	struct snap_reader rd;
	const uint8_t *p;
	size_t plen;
	uint32_t version;
};

/* Build a file with one section "x" of @version from the bytes @w wrote,
 * then read it back: f->p/plen is the payload as a loader sees it. */
static void file_from(struct snap_writer *w, struct file *f)
{
	memset(f, 0, sizeof(*f));
	CHECK_EQ(snap_writer_finish(w, &f->buf, &f->len), 0);
	CHECK_EQ(snap_reader_open(f->buf, f->len, &f->rd, err, sizeof(err)), 0);
	CHECK_EQ(snap_reader_find(&f->rd, "x", &f->version, &f->p, &f->plen), 0);
}

#define ENCODE(fn, st, ver, f)                                                                     \
	do {                                                                                       \
		struct snap_writer w_;                                                             \
		snap_writer_init(&w_);                                                             \
		snap_writer_section_begin(&w_, "x", (ver));                                        \
		fn##_state_encode((st), &w_);                                                      \
		snap_writer_section_end(&w_);                                                      \
		file_from(&w_, (f));                                                               \
	} while (0)

/* Every proper prefix of the payload and the payload plus one byte are
 * refused with a message. */
#define CHECK_LENGTHS(fn, f, type)                                                                 \
	do {                                                                                       \
		type st_;                                                                          \
		for (size_t n = 0; n < (f)->plen; n++) {                                           \
			err[0] = 0;                                                                \
			CHECK_EQ(fn##_state_decode((f)->p, n, (f)->version, &st_, err, sizeof(err)), \
				 -EINVAL);                                                         \
			CHECK(err[0] != 0);                                                        \
		}                                                                                  \
		uint8_t *big_ = calloc(1, (f)->plen + 1);                                          \
		memcpy(big_, (f)->p, (f)->plen);                                                   \
		CHECK_EQ(fn##_state_decode(big_, (f)->plen + 1, (f)->version, &st_, err, sizeof(err)), \
			 -EINVAL);                                                                 \
		CHECK_EQ(fn##_state_decode((f)->p, (f)->plen, (f)->version + 1, &st_, err,         \
					 sizeof(err)),                                             \
			 -EINVAL);                                                                 \
		CHECK(strstr(err, "version") != NULL);                                             \
		free(big_);                                                                        \
	} while (0)

/* @st with one field changed must be refused, naming @what. */
#define CHECK_REFUSED(fn, st, ver, what)                                                           \
	do {                                                                                       \
		struct file f_;                                                                    \
		ENCODE(fn, (st), (ver), &f_);                                                      \
		__typeof__(*(st)) out_;                                                            \
		err[0] = 0;                                                                        \
		CHECK_EQ(fn##_state_decode(f_.p, f_.plen, f_.version, &out_, err, sizeof(err)),    \
			 -EINVAL);                                                                 \
		if (!strstr(err, (what)))                                                          \
			printf("  message \"%s\" does not name \"%s\"\n", err, (what));            \
		CHECK(strstr(err, (what)) != NULL);                                                \
		free(f_.buf);                                                                      \
	} while (0)

/* ---- serial ---------------------------------------------------------------- */

struct serial_rig {
	struct serial s;
	struct fake_irq irq;
	struct irq_line line;
};

static void tx_sink(void *ctx, const uint8_t *buf, size_t len)
{
	(void)ctx;
	(void)buf;
	(void)len;
}

static void serial_rig(struct serial_rig *r)
{
	memset(r, 0, sizeof(*r));
	r->line = (struct irq_line){.set_level = fake_set_level, .ctx = &r->irq, .gsi = 4};
	CHECK_EQ(serial_init(&r->s, &r->line, tx_sink, NULL), 0);
}

static uint8_t srd(struct serial *s, uint64_t off)
{
	uint8_t v = 0;
	s->bus.ops->read(&s->bus, off, &v, 1);
	return v;
}

static void swr(struct serial *s, uint64_t off, uint8_t v)
{
	s->bus.ops->write(&s->bus, off, &v, 1);
}

/* A UART in the middle of things: divisor 1 (115200), 8N1, FIFOs on,
 * receive and line-status interrupts on, 5 bytes waiting (the FIFO having
 * wrapped), an overrun. */
static void serial_busy(struct serial *s)
{
	swr(s, SERIAL_LCR, SERIAL_LCR_DLAB);
	swr(s, SERIAL_DLL, 1);
	swr(s, SERIAL_DLM, 0);
	swr(s, SERIAL_LCR, 0x03);
	swr(s, SERIAL_FCR, SERIAL_FCR_ENABLE);
	swr(s, SERIAL_SCR, 0x5a);
	swr(s, SERIAL_MCR, SERIAL_MCR_DTR | SERIAL_MCR_RTS | SERIAL_MCR_OUT2);
	uint8_t in[14];
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)('a' + i);
	CHECK_EQ(serial_input(s, in, sizeof(in)), sizeof(in));
	for (int i = 0; i < 12; i++)
		(void)srd(s, SERIAL_RBR);
	CHECK_EQ(serial_input(s, (const uint8_t *)"XYZ", 3), 3);
	/* loopback overrun: fill, then one more */
	swr(s, SERIAL_MCR, SERIAL_MCR_LOOP);
	for (int i = 0; i < 12; i++)
		swr(s, SERIAL_THR, (uint8_t)('0' + i));
	swr(s, SERIAL_MCR, SERIAL_MCR_DTR | SERIAL_MCR_RTS | SERIAL_MCR_OUT2);
	swr(s, SERIAL_IER, SERIAL_IER_ERBFI | SERIAL_IER_ELSI);
}

TEST(serial_round_trip_behaves_the_same)
{
	struct serial_rig a, b;
	serial_rig(&a);
	serial_rig(&b);
	serial_busy(&a.s);
	CHECK_EQ(a.irq.level, 1);

	struct serial_state st, st2;
	serial_state_get(&a.s, &st);
	CHECK_EQ(st.rx_count, SERIAL_RX_FIFO_SIZE);
	CHECK(st.rx_head != 0); /* the FIFO wrapped */
	struct file f;
	ENCODE(serial, &st, SERIAL_STATE_VERSION, &f);
	CHECK_EQ(serial_state_decode(f.p, f.plen, f.version, &st2, err, sizeof(err)), 0);
	CHECK(!memcmp(&st, &st2, sizeof(st)));
	CHECK_EQ(b.irq.level, 0);
	serial_state_put(&b.s, &st2);
	CHECK_EQ(b.irq.level, 1); /* the restored device drives its line */

	/* the same register reads from both, to the end of the FIFO */
	for (int i = 0; i < 3; i++) {
		CHECK_EQ(srd(&b.s, SERIAL_IIR), srd(&a.s, SERIAL_IIR));
		CHECK_EQ(srd(&b.s, SERIAL_LSR), srd(&a.s, SERIAL_LSR));
		CHECK_EQ(srd(&b.s, SERIAL_MSR), srd(&a.s, SERIAL_MSR));
		CHECK_EQ(srd(&b.s, SERIAL_SCR), srd(&a.s, SERIAL_SCR));
		CHECK_EQ(srd(&b.s, SERIAL_LCR), srd(&a.s, SERIAL_LCR));
	}
	for (int i = 0; i < SERIAL_RX_FIFO_SIZE + 1; i++)
		CHECK_EQ(srd(&b.s, SERIAL_RBR), srd(&a.s, SERIAL_RBR));
	CHECK_EQ(a.irq.level, 0);
	CHECK_EQ(b.irq.level, 0);
	swr(&a.s, SERIAL_LCR, SERIAL_LCR_DLAB);
	swr(&b.s, SERIAL_LCR, SERIAL_LCR_DLAB);
	CHECK_EQ(srd(&b.s, SERIAL_DLL), 1);
	CHECK_EQ(srd(&b.s, SERIAL_DLM), 0);
	/* and its saved state now equals the original's */
	serial_state_get(&a.s, &st);
	serial_state_get(&b.s, &st2);
	CHECK(!memcmp(&st, &st2, sizeof(st)));
	CHECK_LENGTHS(serial, &f, struct serial_state);
	free(f.buf);
	serial_destroy(&a.s);
	serial_destroy(&b.s);
}

TEST(serial_encoding_is_pinned)
{
	struct serial_state st = {.ier = 1, .lcr = 3, .mcr = 0x0b, .scr = 0x5a, .dll = 1,
				  .fcr = 1, .lsr_err = 2, .msr_delta = 1, .thre_pending = 1,
				  .rx_head = 15, .rx_count = 2};
	st.rx_fifo[15] = 'h';
	st.rx_fifo[0] = 'i';
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "x", 1);
	serial_state_encode(&st, &w);
	static const uint8_t want[] = {1, 3, 0x0b, 0x5a, 1, 0, 1, 2, 1, 1,
				       'i', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'h',
				       15, 0, 0, 0, 2, 0, 0, 0};
	/* the payload starts after the file and section headers */
	CHECK_EQ(w.len - SNAP_HEADER_LEN - SNAP_SECTION_HEADER_LEN, sizeof(want));
	CHECK(!memcmp(w.buf + SNAP_HEADER_LEN + SNAP_SECTION_HEADER_LEN, want, sizeof(want)));
	snap_writer_free(&w);
}

static struct serial_state serial_good(void)
{
	return (struct serial_state){.ier = 0x0f, .lcr = 0x83, .mcr = 0x1f, .fcr = 0xc1,
				     .lsr_err = SERIAL_LSR_OE, .msr_delta = 0x0f,
				     .thre_pending = 1, .rx_head = 15, .rx_count = 16};
}

TEST(serial_refuses_what_the_uart_cannot_hold)
{
	struct serial_state st = serial_good(), out;
	struct file f;
	ENCODE(serial, &st, SERIAL_STATE_VERSION, &f);
	CHECK_EQ(serial_state_decode(f.p, f.plen, f.version, &out, err, sizeof(err)), 0);
	free(f.buf);
	st = serial_good(), st.ier = 0x10;
	CHECK_REFUSED(serial, &st, SERIAL_STATE_VERSION, "IER");
	st = serial_good(), st.mcr = 0x20;
	CHECK_REFUSED(serial, &st, SERIAL_STATE_VERSION, "MCR");
	st = serial_good(), st.fcr = 0xc3;
	CHECK_REFUSED(serial, &st, SERIAL_STATE_VERSION, "FCR");
	st = serial_good(), st.fcr = 0xc0, st.rx_count = 0;
	CHECK_REFUSED(serial, &st, SERIAL_STATE_VERSION, "FCR");
	st = serial_good(), st.lsr_err = 0x03;
	CHECK_REFUSED(serial, &st, SERIAL_STATE_VERSION, "LSR");
	st = serial_good(), st.msr_delta = 0x10;
	CHECK_REFUSED(serial, &st, SERIAL_STATE_VERSION, "MSR");
	st = serial_good(), st.thre_pending = 2;
	CHECK_REFUSED(serial, &st, SERIAL_STATE_VERSION, "THRE");
	st = serial_good(), st.rx_head = 16;
	CHECK_REFUSED(serial, &st, SERIAL_STATE_VERSION, "FIFO");
	st = serial_good(), st.rx_count = 17;
	CHECK_REFUSED(serial, &st, SERIAL_STATE_VERSION, "FIFO");
	st = serial_good(), st.fcr = 0, st.rx_count = 2; /* 16450 mode holds one byte */
	CHECK_REFUSED(serial, &st, SERIAL_STATE_VERSION, "FIFO");
}

/* ---- rtc --------------------------------------------------------------------- */

static struct timespec rtc_fake;
static struct timespec rtc_fake_now(void)
{
	return rtc_fake;
}

struct rtc_rig {
	struct rtc rtc;
	struct fake_irq irq;
	struct irq_line line;
};

static void rtc_rig(struct rtc_rig *r)
{
	memset(r, 0, sizeof(*r));
	r->line = (struct irq_line){fake_set_level, &r->irq, 8};
	CHECK_EQ(rtc_init(&r->rtc, &r->line), 0);
	r->rtc.now = rtc_fake_now;
}

static uint8_t cmos_rd(struct rtc *rtc, uint8_t idx)
{
	uint8_t v = 0;
	rtc->bus.ops->write(&rtc->bus, 0, &idx, 1);
	rtc->bus.ops->read(&rtc->bus, 1, &v, 1);
	return v;
}

static void cmos_wr(struct rtc *rtc, uint8_t idx, uint8_t v)
{
	rtc->bus.ops->write(&rtc->bus, 0, &idx, 1);
	rtc->bus.ops->write(&rtc->bus, 1, &v, 1);
}

TEST(rtc_round_trip_keeps_the_guest_time_and_flags)
{
	rtc_fake = (struct timespec){.tv_sec = 1700000000, .tv_nsec = 100};
	struct rtc_rig a, b;
	rtc_rig(&a);
	/* the guest sets its clock 1 hour ahead (binary mode), keeps RAM, and
	 * enables update interrupts */
	cmos_wr(&a.rtc, RTC_REG_B, RTC_B_24H | RTC_B_DM_BINARY);
	uint8_t h = cmos_rd(&a.rtc, RTC_HOURS);
	cmos_wr(&a.rtc, RTC_HOURS, (uint8_t)((h + 1) % 24));
	cmos_wr(&a.rtc, 0x40, 0x77);
	cmos_wr(&a.rtc, RTC_REG_B, RTC_B_24H | RTC_B_DM_BINARY | RTC_B_UIE);
	rtc_fake.tv_sec++; /* a second boundary: UF, IRQF, line high */
	rtc_tick(&a.rtc);
	CHECK_EQ(a.irq.level, 1);

	struct rtc_state st, st2;
	rtc_state_get(&a.rtc, &st);
	CHECK(st.offset >= 3600 - 60);
	struct file f;
	ENCODE(rtc, &st, RTC_STATE_VERSION, &f);
	CHECK_EQ(rtc_state_decode(f.p, f.plen, f.version, &st2, err, sizeof(err)), 0);
	CHECK(!memcmp(&st, &st2, sizeof(st)));

	/* restored later on another host clock: the same offset from it */
	rtc_fake.tv_sec += 1000;
	rtc_rig(&b);
	rtc_state_put(&b.rtc, &st2);
	CHECK_EQ(b.irq.level, 1);
	CHECK_EQ(cmos_rd(&b.rtc, 0x40), 0x77);
	for (uint8_t r = RTC_SECONDS; r <= RTC_YEAR; r++)
		CHECK_EQ(cmos_rd(&b.rtc, r), cmos_rd(&a.rtc, r));
	CHECK_EQ(cmos_rd(&b.rtc, RTC_REG_B), cmos_rd(&a.rtc, RTC_REG_B));
	CHECK_EQ(cmos_rd(&b.rtc, RTC_REG_C), cmos_rd(&a.rtc, RTC_REG_C)); /* clears it */
	CHECK_EQ(b.irq.level, 0);
	CHECK_LENGTHS(rtc, &f, struct rtc_state);
	free(f.buf);
	rtc_destroy(&a.rtc);
	rtc_destroy(&b.rtc);
}

/* Found by fuzz_dev_state: the guest can name dates far past 9999 (binary
 * mode, century and year 255, out-of-range month and day); such a guest's
 * snapshot must load, whatever date it set. */
TEST(rtc_any_date_the_guest_can_set_saves_and_loads)
{
	rtc_fake = (struct timespec){.tv_sec = 1700000000};
	for (int mode = 0; mode < 2; mode++) {
		struct rtc_rig a;
		rtc_rig(&a);
		uint8_t bin = mode ? RTC_B_DM_BINARY : 0;
		cmos_wr(&a.rtc, RTC_REG_B, RTC_B_SET | RTC_B_24H | bin);
		const uint8_t far[][2] = {{RTC_CENTURY, 0xff}, {RTC_YEAR, 0xff}, {RTC_MONTH, 0xff},
					  {RTC_DAY, 0xff},     {RTC_HOURS, 0xff}, {RTC_MINUTES, 0xff},
					  {RTC_SECONDS, 0xff}};
		for (size_t i = 0; i < sizeof(far) / sizeof(far[0]); i++)
			cmos_wr(&a.rtc, far[i][0], far[i][1]);
		cmos_wr(&a.rtc, RTC_REG_B, RTC_B_24H | bin);
		struct rtc_state st, st2;
		rtc_state_get(&a.rtc, &st);
		CHECK(st.offset > 100000000000LL);
		struct file f;
		ENCODE(rtc, &st, RTC_STATE_VERSION, &f);
		CHECK_EQ(rtc_state_decode(f.p, f.plen, f.version, &st2, err, sizeof(err)), 0);
		free(f.buf);
		/* and the earliest: year 0 */
		cmos_wr(&a.rtc, RTC_REG_B, RTC_B_SET | RTC_B_24H | bin);
		cmos_wr(&a.rtc, RTC_CENTURY, 0);
		cmos_wr(&a.rtc, RTC_YEAR, 0);
		cmos_wr(&a.rtc, RTC_REG_B, RTC_B_24H | bin);
		rtc_state_get(&a.rtc, &st);
		CHECK(st.offset < -60000000000LL);
		ENCODE(rtc, &st, RTC_STATE_VERSION, &f);
		CHECK_EQ(rtc_state_decode(f.p, f.plen, f.version, &st2, err, sizeof(err)), 0);
		free(f.buf);
		rtc_destroy(&a.rtc);
	}
}

static struct rtc_state rtc_good(void)
{
	struct rtc_state st = {.index = 127, .nmi_disabled = 1, .reg_c = 0xf0,
			       .offset = RTC_STATE_OFFSET_MAX};
	st.cmos[RTC_REG_A] = 0x26;
	return st;
}

TEST(rtc_refuses_out_of_range_state)
{
	struct rtc_state st = rtc_good(), out;
	struct file f;
	ENCODE(rtc, &st, RTC_STATE_VERSION, &f);
	CHECK_EQ(rtc_state_decode(f.p, f.plen, f.version, &out, err, sizeof(err)), 0);
	free(f.buf);
	st = rtc_good(), st.offset = -RTC_STATE_OFFSET_MAX;
	ENCODE(rtc, &st, RTC_STATE_VERSION, &f);
	CHECK_EQ(rtc_state_decode(f.p, f.plen, f.version, &out, err, sizeof(err)), 0);
	CHECK_EQ(out.offset, -RTC_STATE_OFFSET_MAX);
	free(f.buf);
	st = rtc_good(), st.index = 128;
	CHECK_REFUSED(rtc, &st, RTC_STATE_VERSION, "index");
	st = rtc_good(), st.nmi_disabled = 2;
	CHECK_REFUSED(rtc, &st, RTC_STATE_VERSION, "NMI");
	st = rtc_good(), st.reg_c = 0x01;
	CHECK_REFUSED(rtc, &st, RTC_STATE_VERSION, "register C");
	st = rtc_good(), st.cmos[RTC_REG_A] = 0xa6;
	CHECK_REFUSED(rtc, &st, RTC_STATE_VERSION, "UIP");
	st = rtc_good(), st.offset = RTC_STATE_OFFSET_MAX + 1;
	CHECK_REFUSED(rtc, &st, RTC_STATE_VERSION, "offset");
	st = rtc_good(), st.offset = INT64_MIN;
	CHECK_REFUSED(rtc, &st, RTC_STATE_VERSION, "offset");
}

/* ---- i8042 ------------------------------------------------------------------- */

struct i8042_rig {
	struct i8042 k;
	struct fake_irq kbd, aux;
	struct irq_line kl, al;
};

static int i8042_resets;
static void i8042_fake_reset(void *ctx)
{
	(void)ctx;
	i8042_resets++;
}

static void i8042_rig(struct i8042_rig *r)
{
	memset(r, 0, sizeof(*r));
	CHECK_EQ(i8042_init(&r->k, i8042_fake_reset, NULL), 0);
	r->kl = (struct irq_line){fake_set_level, &r->kbd, 1};
	r->al = (struct irq_line){fake_set_level, &r->aux, 12};
	i8042_set_irqs(&r->k, &r->kl, &r->al);
}

static uint8_t k_data(struct i8042 *k)
{
	uint8_t v = 0;
	k->data_bus.ops->read(&k->data_bus, 0, &v, 1);
	return v;
}

static uint8_t k_status(struct i8042 *k)
{
	uint8_t v = 0;
	k->cmd_bus.ops->read(&k->cmd_bus, 0, &v, 1);
	return v;
}

static void k_cmd(struct i8042 *k, uint8_t v)
{
	k->cmd_bus.ops->write(&k->cmd_bus, 0, &v, 1);
}

static void k_out(struct i8042 *k, uint8_t v)
{
	k->data_bus.ops->write(&k->data_bus, 0, &v, 1);
}

TEST(i8042_round_trip_delivers_the_same_bytes)
{
	struct i8042_rig a, b;
	i8042_rig(&a);
	i8042_rig(&b);
	/* keyboard identify: FA AB 83 queued behind the output buffer; the
	 * guest has read the first byte */
	k_out(&a.k, 0xf2);
	CHECK_EQ(a.kbd.level, 1);
	CHECK_EQ(k_data(&a.k), 0xfa);
	k_cmd(&a.k, 0x60); /* a write-CTR command waiting for its byte */

	struct i8042_state st, st2;
	i8042_state_get(&a.k, &st);
	struct file f;
	ENCODE(i8042, &st, I8042_STATE_VERSION, &f);
	CHECK_EQ(i8042_state_decode(f.p, f.plen, f.version, &st2, err, sizeof(err)), 0);
	CHECK(!memcmp(&st, &st2, sizeof(st)));
	i8042_state_put(&b.k, &st2);
	CHECK_EQ(b.kbd.level, a.kbd.level);
	CHECK_EQ(b.aux.level, a.aux.level);
	CHECK_EQ(k_status(&b.k), k_status(&a.k));
	/* the pending command takes its byte on both */
	k_out(&a.k, 0x47);
	k_out(&b.k, 0x47);
	k_cmd(&a.k, 0x20);
	k_cmd(&b.k, 0x20);
	for (int i = 0; i < 4; i++) {
		CHECK_EQ(k_status(&b.k), k_status(&a.k));
		CHECK_EQ(k_data(&b.k), k_data(&a.k));
	}
	CHECK_EQ(b.kbd.level, a.kbd.level);
	CHECK_LENGTHS(i8042, &f, struct i8042_state);
	free(f.buf);
	i8042_destroy(&a.k);
	i8042_destroy(&b.k);
}

static struct i8042_state i8042_good(void)
{
	return (struct i8042_state){.obf = 1, .out_aux = 1, .timeout = 1, .last_cmd = 1,
				    .pending = 0xd4, .outport = 0x03, .xlate_break = 1,
				    .kbd_scanning = 1, .kbd_param = 0xf3, .kbd_head = 15,
				    .kbd_count = 16};
}

TEST(i8042_refuses_out_of_range_state)
{
	struct i8042_state st = i8042_good(), out;
	struct file f;
	ENCODE(i8042, &st, I8042_STATE_VERSION, &f);
	CHECK_EQ(i8042_state_decode(f.p, f.plen, f.version, &out, err, sizeof(err)), 0);
	free(f.buf);
	st = i8042_good(), st.obf = 2;
	CHECK_REFUSED(i8042, &st, I8042_STATE_VERSION, "flag");
	st = i8042_good(), st.kbd_scanning = 0xff;
	CHECK_REFUSED(i8042, &st, I8042_STATE_VERSION, "flag");
	st = i8042_good(), st.pending = 0x20;
	CHECK_REFUSED(i8042, &st, I8042_STATE_VERSION, "pending");
	st = i8042_good(), st.pending = 0xd5;
	CHECK_REFUSED(i8042, &st, I8042_STATE_VERSION, "pending");
	st = i8042_good(), st.outport = 0x02;
	CHECK_REFUSED(i8042, &st, I8042_STATE_VERSION, "output port");
	st = i8042_good(), st.kbd_param = 0xee;
	CHECK_REFUSED(i8042, &st, I8042_STATE_VERSION, "parameter");
	st = i8042_good(), st.kbd_head = 16;
	CHECK_REFUSED(i8042, &st, I8042_STATE_VERSION, "queue");
	st = i8042_good(), st.kbd_count = 17;
	CHECK_REFUSED(i8042, &st, I8042_STATE_VERSION, "queue");
}

/* ---- acpi-pm ------------------------------------------------------------------ */

static uint64_t pm_fake_ns;
static uint64_t pm_fake_clock(void)
{
	return pm_fake_ns;
}

struct pm_rig {
	struct acpi_pm pm;
	struct fake_irq sci;
	struct irq_line line;
};

static void pm_rig(struct pm_rig *r, uint64_t base)
{
	memset(r, 0, sizeof(*r));
	r->line = (struct irq_line){fake_set_level, &r->sci, IRQ_ACPI_SCI};
	CHECK_EQ(acpi_pm_init(&r->pm, &r->line, NULL, NULL, NULL), 0);
	r->pm.clock_ns = pm_fake_clock;
	r->pm.base_ns = base;
}

static uint32_t pm_rd(struct bus_dev *d, uint64_t off, uint32_t len)
{
	uint32_t v = 0;
	d->ops->read(d, off, &v, len);
	return v;
}

static void pm_wr(struct bus_dev *d, uint64_t off, uint32_t v, uint32_t len)
{
	d->ops->write(d, off, &v, len);
}

TEST(acpi_pm_round_trip_timer_goes_on_from_its_value)
{
	struct pm_rig a, b;
	pm_fake_ns = 5000000000ULL;
	pm_rig(&a, 1000000000ULL); /* counted 4 s */
	/* enable the power button and the timer; the timer's MSB flipped */
	pm_wr(&a.pm.evt_bus, 2, ACPI_PM1_PWRBTN_EN | ACPI_PM1_TMR_EN, 2);
	pm_wr(&a.pm.cnt_bus, 0, ACPI_PM1_BM_RLD, 2);
	pm_fake_ns += 700000000000ULL; /* > 2^31 ticks: TMR_STS */
	uint32_t sts = pm_rd(&a.pm.evt_bus, 0, 2);
	CHECK(sts & ACPI_PM1_TMR_STS);
	CHECK_EQ(a.sci.level, 1);

	struct acpi_pm_state st, st2;
	acpi_pm_state_get(&a.pm, &st);
	CHECK_EQ(st.timer_ns, 704000000000ULL);
	struct file f;
	ENCODE(acpi_pm, &st, ACPI_PM_STATE_VERSION, &f);
	CHECK_EQ(acpi_pm_state_decode(f.p, f.plen, f.version, &st2, err, sizeof(err)), 0);
	CHECK(!memcmp(&st, &st2, sizeof(st)));

	/* a host whose monotonic clock is far behind (just booted) */
	uint64_t then = pm_fake_ns;
	pm_fake_ns = 3000000000ULL;
	pm_rig(&b, 2000000000ULL);
	acpi_pm_state_put(&b.pm, &st2);
	CHECK_EQ(b.sci.level, 1);
	uint32_t ta = (pm_fake_ns = then, pm_rd(&a.pm.tmr_bus, 0, 4));
	uint32_t tb = (pm_fake_ns = 3000000000ULL, pm_rd(&b.pm.tmr_bus, 0, 4));
	CHECK_EQ(ta, tb);
	pm_fake_ns = 4000000000ULL; /* 1 s later on b */
	CHECK_EQ(pm_rd(&b.pm.tmr_bus, 0, 4), (uint32_t)(ta + ACPI_PM_TIMER_HZ));
	CHECK_EQ(pm_rd(&b.pm.evt_bus, 0, 4), (pm_fake_ns = then, pm_rd(&a.pm.evt_bus, 0, 4)));
	pm_fake_ns = 4000000000ULL;
	CHECK_EQ(pm_rd(&b.pm.cnt_bus, 0, 2), ACPI_PM1_BM_RLD | ACPI_PM1_SCI_EN);
	/* no new TMR_STS just from the restore */
	pm_wr(&b.pm.evt_bus, 0, ACPI_PM1_TMR_STS, 2);
	CHECK_EQ(pm_rd(&b.pm.evt_bus, 0, 2) & ACPI_PM1_TMR_STS, 0);
	CHECK_LENGTHS(acpi_pm, &f, struct acpi_pm_state);
	free(f.buf);
	acpi_pm_destroy(&a.pm);
	acpi_pm_destroy(&b.pm);
}

static struct acpi_pm_state pm_good(void)
{
	return (struct acpi_pm_state){.sts = ACPI_PM1_STS_MASK, .en = ACPI_PM1_EN_MASK,
				      .cnt = ACPI_PM1_BM_RLD | ACPI_PM1_SLP_TYP_MASK,
				      .timer_ns = 1ULL << 50, .gpe_sts = ACPI_GPE0_MASK,
				      .gpe_en = ACPI_GPE0_MASK};
}

TEST(acpi_pm_refuses_out_of_range_state)
{
	struct acpi_pm_state st = pm_good(), out;
	struct file f;
	ENCODE(acpi_pm, &st, ACPI_PM_STATE_VERSION, &f);
	CHECK_EQ(acpi_pm_state_decode(f.p, f.plen, f.version, &out, err, sizeof(err)), 0);
	/* the reserved field */
	uint8_t *bad = malloc(f.plen);
	memcpy(bad, f.p, f.plen);
	bad[6] = 1;
	CHECK_EQ(acpi_pm_state_decode(bad, f.plen, f.version, &out, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "reserved") != NULL);
	free(bad);
	free(f.buf);
	st = pm_good(), st.sts |= 0x0002;
	CHECK_REFUSED(acpi_pm, &st, ACPI_PM_STATE_VERSION, "PM1_STS");
	st = pm_good(), st.en |= 0x0002;
	CHECK_REFUSED(acpi_pm, &st, ACPI_PM_STATE_VERSION, "PM1_EN");
	st = pm_good(), st.cnt |= ACPI_PM1_SLP_EN;
	CHECK_REFUSED(acpi_pm, &st, ACPI_PM_STATE_VERSION, "PM1_CNT");
	st = pm_good(), st.cnt |= ACPI_PM1_SCI_EN;
	CHECK_REFUSED(acpi_pm, &st, ACPI_PM_STATE_VERSION, "PM1_CNT");
	st = pm_good(), st.timer_ns = UINT64_MAX;
	CHECK_REFUSED(acpi_pm, &st, ACPI_PM_STATE_VERSION, "timer");
	for (unsigned b = 0; b < 16; b++) {
		if (ACPI_GPE0_MASK & (1u << b))
			continue;
		st = pm_good(), st.gpe_sts |= (uint16_t)(1u << b);
		CHECK_REFUSED(acpi_pm, &st, ACPI_PM_STATE_VERSION, "GPE0_STS");
		st = pm_good(), st.gpe_en |= (uint16_t)(1u << b);
		CHECK_REFUSED(acpi_pm, &st, ACPI_PM_STATE_VERSION, "GPE0_EN");
	}
	/* the reserved word after GPE0 */
	st = pm_good();
	ENCODE(acpi_pm, &st, ACPI_PM_STATE_VERSION, &f);
	CHECK_EQ(f.plen, 24);
	bad = malloc(f.plen);
	for (size_t i = 20; i < 24; i++) {
		memcpy(bad, f.p, f.plen);
		bad[i] = 0x80;
		CHECK_EQ(acpi_pm_state_decode(bad, f.plen, f.version, &out, err, sizeof(err)),
			 -EINVAL);
		CHECK(strstr(err, "reserved") != NULL);
	}
	free(bad);
	free(f.buf);
}

/* GPE0 status and enable go through a state file; the restored device
 * drives the SCI from them and keeps the latched event. */
TEST(acpi_pm_gpe_state_round_trip)
{
	struct acpi_pm_state st, st2;
	struct pm_rig a, b;
	pm_fake_ns = 1000;
	pm_rig(&a, 1000);
	acpi_pm_raise_gpe(&a.pm, ACPI_GPE_VMGENID);
	pm_wr(&a.pm.gpe_bus, 2, 1u << ACPI_GPE_VMGENID, 2);
	CHECK_EQ(a.sci.level, 1);
	acpi_pm_state_get(&a.pm, &st);
	CHECK_EQ(st.gpe_sts, 1u << ACPI_GPE_VMGENID);
	CHECK_EQ(st.gpe_en, 1u << ACPI_GPE_VMGENID);
	struct file f;
	ENCODE(acpi_pm, &st, ACPI_PM_STATE_VERSION, &f);
	CHECK_EQ(f.version, 2);
	CHECK_EQ(acpi_pm_state_decode(f.p, f.plen, f.version, &st2, err, sizeof(err)), 0);
	CHECK(!memcmp(&st, &st2, sizeof(st)));
	pm_rig(&b, 1000);
	acpi_pm_state_put(&b.pm, &st2);
	CHECK_EQ(b.sci.level, 1);
	CHECK_EQ(pm_rd(&b.pm.gpe_bus, 0, 4), pm_rd(&a.pm.gpe_bus, 0, 4));
	/* the guest acknowledges the restored event */
	pm_wr(&b.pm.gpe_bus, 0, 1u << ACPI_GPE_VMGENID, 1);
	CHECK_EQ(b.sci.level, 0);
	/* enabled but no event: no SCI after a restore */
	acpi_pm_state_get(&b.pm, &st);
	pm_rig(&a, 1000);
	acpi_pm_state_put(&a.pm, &st);
	CHECK_EQ(a.sci.level, 0);
	CHECK_EQ(a.sci.calls, 1);
	CHECK_LENGTHS(acpi_pm, &f, struct acpi_pm_state);
	free(f.buf);
	acpi_pm_destroy(&a.pm);
	acpi_pm_destroy(&b.pm);
}

/* Version 1 (before the GPE0 block) is read with both GPE0 registers 0;
 * each version has exactly its own length. */
TEST(acpi_pm_reads_version_1)
{
	struct acpi_pm_state st = pm_good(), out;
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "x", 1);
	snap_put_u16(&w, st.sts);
	snap_put_u16(&w, st.en);
	snap_put_u16(&w, st.cnt);
	snap_put_u16(&w, 0);
	snap_put_u64(&w, st.timer_ns);
	snap_writer_section_end(&w);
	struct file f;
	file_from(&w, &f);
	CHECK_EQ(f.plen, 16);
	memset(&out, 0xff, sizeof(out));
	CHECK_EQ(acpi_pm_state_decode(f.p, f.plen, 1, &out, err, sizeof(err)), 0);
	CHECK_EQ(out.sts, st.sts);
	CHECK_EQ(out.en, st.en);
	CHECK_EQ(out.cnt, st.cnt);
	CHECK_EQ(out.timer_ns, st.timer_ns);
	CHECK_EQ(out.gpe_sts, 0);
	CHECK_EQ(out.gpe_en, 0);
	/* a version 1 payload is not a version 2 one, nor the reverse */
	CHECK_EQ(acpi_pm_state_decode(f.p, f.plen, 2, &out, err, sizeof(err)), -EINVAL);
	free(f.buf);
	ENCODE(acpi_pm, &st, ACPI_PM_STATE_VERSION, &f);
	CHECK_EQ(acpi_pm_state_decode(f.p, f.plen, 1, &out, err, sizeof(err)), -EINVAL);
	for (uint32_t v = 0; v < 8; v++) {
		if (v == 1 || v == 2)
			continue;
		CHECK_EQ(acpi_pm_state_decode(f.p, f.plen, v, &out, err, sizeof(err)), -EINVAL);
		CHECK(strstr(err, "version") != NULL);
	}
	free(f.buf);
}

/* ---- the registry's sections ---------------------------------------------------- */

/* A fake device with one byte of state; a value of 0xee fails to load. */
struct fake_dev {
	uint8_t value;
	int applied;
};

static int fake_save(struct dev_record *r, struct snap_writer *w)
{
	snap_put_u8(w, ((struct fake_dev *)r->dev)->value);
	return 0;
}

static int fake_load(struct dev_record *r, const uint8_t *p, size_t len, uint32_t version,
		     void *state, char *e, size_t elen)
{
	(void)r;
	struct snap_cursor c;
	snap_cursor_init(&c, p, len);
	uint8_t v = snap_get_u8(&c);
	int rc = snap_cursor_done(&c, "fake", e, elen);
	if (rc)
		return rc;
	if (version != 3 || v == 0xee) {
		snprintf(e, elen, "fake: value %#x refused", v);
		return -EINVAL;
	}
	*(uint8_t *)state = v;
	return 0;
}

static int fake_apply(struct dev_record *r, const void *state, char *e, size_t elen)
{
	(void)e;
	(void)elen;
	struct fake_dev *d = r->dev;
	d->value = *(const uint8_t *)state;
	d->applied++;
	return 0;
}

static const struct dev_ops fake_ops = {.state_version = 3,
					.state_size = 1,
					.save = fake_save,
					.load = fake_load,
					.apply = fake_apply};
static const struct dev_ops stateless_ops = {.destroy = NULL};

static struct fake_dev devs[4];

static void make_reg(struct dev_registry *reg, int n, const char *last_id)
{
	memset(reg, 0, sizeof(*reg));
	memset(devs, 0, sizeof(devs));
	for (int i = 0; i < n; i++) {
		struct dev_record rec;
		memset(&rec, 0, sizeof(rec));
		rec.type = i == 2 ? "stateless" : (i == 1 ? "virtio-fake" : "fake");
		rec.cls = i == 1 ? DEV_VIRTIO : DEV_LEGACY;
		rec.transport = i == 1 ? TRANSPORT_MMIO : 0;
		rec.ops = i == 2 ? &stateless_ops : &fake_ops;
		rec.dev = &devs[i];
		snprintf(rec.id, sizeof(rec.id), "%s%d", i == n - 1 && last_id ? last_id : "d", i);
		CHECK(registry_add(reg, &rec) != NULL);
	}
}

static uint8_t *save_reg(struct dev_registry *reg, size_t *len)
{
	struct snap_writer w;
	snap_writer_init(&w);
	CHECK_EQ(registry_save_all(reg, &w, err, sizeof(err)), 0);
	uint8_t *buf = NULL;
	CHECK_EQ(snap_writer_finish(&w, &buf, len), 0);
	return buf;
}

static int restore_reg(struct dev_registry *reg, const uint8_t *buf, size_t len)
{
	struct snap_reader rd;
	CHECK_EQ(snap_reader_open(buf, len, &rd, err, sizeof(err)), 0);
	err[0] = 0;
	return registry_restore_all(reg, &rd, err, sizeof(err));
}

TEST(registry_round_trip_restores_every_device_in_order)
{
	struct dev_registry reg;
	make_reg(&reg, 4, NULL);
	devs[0].value = 0x11;
	devs[1].value = 0x22;
	devs[3].value = 0x44;
	size_t len;
	uint8_t *buf = save_reg(&reg, &len);
	struct snap_reader rd;
	CHECK_EQ(snap_reader_open(buf, len, &rd, err, sizeof(err)), 0);
	CHECK_EQ(rd.count, 4); /* the manifest and three devices with state */
	CHECK_EQ(snap_reader_find(&rd, "dev.2", NULL, NULL, NULL), -ENOENT);
	make_reg(&reg, 4, NULL); /* a fresh machine: all zero */
	CHECK_EQ(restore_reg(&reg, buf, len), 0);
	CHECK_EQ(devs[0].value, 0x11);
	CHECK_EQ(devs[1].value, 0x22);
	CHECK_EQ(devs[3].value, 0x44);
	CHECK_EQ(devs[0].applied + devs[1].applied + devs[3].applied, 3);
	free(buf);
}

TEST(registry_refuses_another_device_set_and_changes_nothing)
{
	struct dev_registry reg;
	make_reg(&reg, 4, NULL);
	size_t len;
	uint8_t *buf = save_reg(&reg, &len);
	make_reg(&reg, 3, NULL); /* one device fewer */
	CHECK(restore_reg(&reg, buf, len) < 0);
	CHECK(strstr(err, "lacks") != NULL);
	make_reg(&reg, 4, "other"); /* another id */
	CHECK(restore_reg(&reg, buf, len) < 0);
	CHECK(strstr(err, "differs") != NULL);
	CHECK_EQ(devs[0].applied, 0);
	free(buf);
	make_reg(&reg, 3, NULL);
	buf = save_reg(&reg, &len);
	make_reg(&reg, 4, NULL); /* one device more */
	CHECK(restore_reg(&reg, buf, len) < 0);
	CHECK(strstr(err, "lacks") != NULL);
	free(buf);
}

TEST(registry_one_bad_device_section_changes_no_device)
{
	struct dev_registry reg;
	make_reg(&reg, 4, NULL);
	devs[0].value = 0x11;
	devs[3].value = 0xee; /* the last one will refuse to load */
	size_t len;
	uint8_t *buf = save_reg(&reg, &len);
	make_reg(&reg, 4, NULL);
	CHECK_EQ(restore_reg(&reg, buf, len), -EINVAL);
	CHECK(strstr(err, "dev.3") != NULL && strstr(err, "refused") != NULL);
	for (int i = 0; i < 4; i++)
		CHECK_EQ(devs[i].applied, 0);
	CHECK_EQ(devs[0].value, 0);
	free(buf);
}

TEST(registry_missing_extra_or_malformed_sections_are_refused)
{
	struct dev_registry reg;
	make_reg(&reg, 2, NULL);
	/* no manifest */
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "dev.0", 3);
	snap_put_u8(&w, 1);
	snap_writer_section_end(&w);
	uint8_t *buf;
	size_t len;
	CHECK_EQ(snap_writer_finish(&w, &buf, &len), 0);
	CHECK_EQ(restore_reg(&reg, buf, len), -ENOENT);
	CHECK(strstr(err, "devices") != NULL);
	free(buf);

	/* the manifest but a device's section missing */
	buf = save_reg(&reg, &len);
	struct snap_reader rd;
	CHECK_EQ(snap_reader_open(buf, len, &rd, err, sizeof(err)), 0);
	const uint8_t *mp;
	size_t mlen;
	uint32_t mver;
	CHECK_EQ(snap_reader_find(&rd, REGISTRY_MANIFEST_ID, &mver, &mp, &mlen), 0);
	uint8_t *manifest = malloc(mlen);
	memcpy(manifest, mp, mlen);
	free(buf);
	snap_writer_init(&w);
	snap_writer_section_begin(&w, REGISTRY_MANIFEST_ID, mver);
	snap_put_bytes(&w, manifest, mlen);
	snap_writer_section_end(&w);
	snap_writer_section_begin(&w, "dev.0", 3);
	snap_put_u8(&w, 1);
	snap_writer_section_end(&w);
	CHECK_EQ(snap_writer_finish(&w, &buf, &len), 0);
	CHECK_EQ(restore_reg(&reg, buf, len), -ENOENT);
	CHECK(strstr(err, "dev.1") != NULL);
	CHECK_EQ(devs[0].applied, 0);
	free(buf);

	/* a section of the wrong length for its device */
	snap_writer_init(&w);
	snap_writer_section_begin(&w, REGISTRY_MANIFEST_ID, mver);
	snap_put_bytes(&w, manifest, mlen);
	snap_writer_section_end(&w);
	snap_writer_section_begin(&w, "dev.0", 3);
	snap_put_u16(&w, 1);
	snap_writer_section_end(&w);
	snap_writer_section_begin(&w, "dev.1", 3);
	snap_put_u8(&w, 1);
	snap_writer_section_end(&w);
	CHECK_EQ(snap_writer_finish(&w, &buf, &len), 0);
	CHECK_EQ(restore_reg(&reg, buf, len), -EINVAL);
	CHECK(strstr(err, "dev.0") != NULL);
	free(buf);

	/* every corruption of the manifest's bytes: refused or, if it still
	 * names the same devices, accepted; never a crash or a partial apply */
	for (size_t i = 0; i < mlen; i++) {
		for (int bit = 0; bit < 8; bit++) {
			manifest[i] ^= (uint8_t)(1u << bit);
			snap_writer_init(&w);
			snap_writer_section_begin(&w, REGISTRY_MANIFEST_ID, mver);
			snap_put_bytes(&w, manifest, mlen);
			snap_writer_section_end(&w);
			snap_writer_section_begin(&w, "dev.0", 3);
			snap_put_u8(&w, 1);
			snap_writer_section_end(&w);
			snap_writer_section_begin(&w, "dev.1", 3);
			snap_put_u8(&w, 2);
			snap_writer_section_end(&w);
			CHECK_EQ(snap_writer_finish(&w, &buf, &len), 0);
			make_reg(&reg, 2, NULL);
			CHECK(restore_reg(&reg, buf, len) < 0);
			CHECK(err[0] != 0);
			CHECK_EQ(devs[0].applied + devs[1].applied, 0);
			free(buf);
			manifest[i] ^= (uint8_t)(1u << bit);
		}
	}
	free(manifest);
}

/* ---- announce ------------------------------------------------------------------ */

static int announced[4], announce_order[4], announce_seq;

static int rec_announce(struct dev_record *r)
{
	int i = (int)((struct fake_dev *)r->dev - devs);
	announced[i]++;
	announce_order[i] = ++announce_seq;
	return i == 3 ? -EIO : 0; /* the last one fails: logged, the others go on */
}

static struct virtio_dev announce_vdev;

static int vdev_announce(struct virtio_dev *d)
{
	CHECK(d == &announce_vdev);
	announced[1]++;
	announce_order[1] = ++announce_seq;
	return 0;
}

TEST(registry_announces_through_the_record_or_the_virtio_op)
{
	static const struct dev_ops with_announce = {.announce = rec_announce};
	static const struct virtio_dev_ops vops = {.announce = vdev_announce};
	static const struct virtio_dev_ops vops_none = {.features = NULL};
	struct dev_registry reg;
	make_reg(&reg, 4, NULL);
	memset(announced, 0, sizeof(announced));
	announce_seq = 0;
	/* 0: its record's op; 1: virtio, no record op: its virtio op;
	 * 2: neither; 3: its record's op, which fails */
	reg.r[0].ops = &with_announce;
	memset(&announce_vdev, 0, sizeof(announce_vdev));
	announce_vdev.ops = &vops;
	reg.r[1].vdev = &announce_vdev;
	reg.r[3].ops = &with_announce;
	CHECK_EQ(registry_announce_all(&reg), 3);
	CHECK_EQ(announced[0], 1);
	CHECK_EQ(announced[1], 1);
	CHECK_EQ(announced[2], 0);
	CHECK_EQ(announced[3], 1);
	/* creation order */
	CHECK(announce_order[0] < announce_order[1] && announce_order[1] < announce_order[3]);
	/* a virtio device type without the op, a legacy record with a vdev
	 * (not virtio: ignored), an empty registry: nobody asked */
	announce_vdev.ops = &vops_none;
	reg.r[0].ops = &fake_ops;
	reg.r[3].ops = &fake_ops;
	CHECK_EQ(registry_announce_all(&reg), 0);
	announce_vdev.ops = &vops;
	reg.r[1].cls = DEV_LEGACY;
	CHECK_EQ(registry_announce_all(&reg), 0);
	reg.n = 0;
	CHECK_EQ(registry_announce_all(&reg), 0);
	CHECK_EQ(announced[1], 1);
}

TEST_MAIN()
