/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the legacy port devices a guest reaches by port I/O -
 * the 16550A UART (src/devices/serial.c) at COM1, the CMOS RTC (rtc.c) at
 * 0x70-0x71, the i8042 keyboard controller (i8042.c) at 0x60/0x64 and the
 * ACPI fixed hardware (acpi_pm.c: PM1 event/control, PM timer, GPE0, the
 * reset register at 0xcf9) - on one port bus, fresh for every input, with
 * recording interrupt lines and fake clocks (host UTC for the RTC, the
 * monotonic clock of the PM timer) the input advances.
 *
 * Input: operations, each an opcode byte and its arguments (reads past
 * the end give 0):
 *   0 dev off w rw v   an access of width 1/2/4 at port base(dev) + off,
 *                      dev: 0 serial, 1 RTC, 2 i8042 data, 3 i8042 command,
 *                      4 PM1 event, 5 PM1 control, 6 PM timer, 7 GPE0,
 *                      8 reset register, otherwise any port (u16)
 *   1 reg v            serial register write (offset reg % 8)
 *   2 idx rw v         RTC: select CMOS byte idx, read or write it
 *   3 cmd [data]       i8042: a command to 0x64, then maybe a byte to 0x60
 *   4 n bytes          the host types n bytes into the UART
 *   5 ev               host events: Ctrl-Alt-Del, power button, GPE ev,
 *                      rtc_tick (by bits of ev)
 *   6 ns s             the clocks advance (PM timer u32 ns, UTC u16 s)
 *   7                  snapshot of every device: state encoded, decoded
 *                      (must pass), put back, and read again: the same
 *   8                  ACPI pause / resume (the PM timer stops)
 * Checks after every operation: every read fills exactly its width; each
 * interrupt line is at the level the device's registers imply (i8042:
 * OBF with a byte of that port and the CTR enable bit; RTC: C.IRQF; ACPI
 * SCI: enabled status bits in PM1 or GPE0; UART: its own record of the
 * level matches the line); registers keep their defined bits (PM1_STS,
 * PM1_EN, GPE0 within their masks, RTC C bits 3:0 zero, index below 128,
 * UART FIFO and i8042 queue counts within their sizes); the reset and
 * power-off callbacks run at most once (per boot or restore).
 * Seeds: tests/fuzz/corpus-legacy.
 */
#include <stdlib.h>
#include <time.h>

#include "../../src/arch/x86/layout.h"
#include "../../src/devices/acpi_pm.h"
#include "../../src/devices/i8042.h"
#include "../../src/devices/rtc.h"
#include "../../src/devices/serial.h"
#include "../../src/snapshot/format.h"
#include "../unit/dev_fake.h"
#include "fuzz_input.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct bus pio;
static struct serial ser;
static struct rtc rtc;
static struct i8042 kbc;
static struct acpi_pm pm;
static struct fake_irq irq_ser, irq_rtc, irq_kbd, irq_aux, irq_sci;
static int resets, poweroffs, kbc_resets;
static uint64_t tx_bytes;
static uint64_t clock_pm;
static struct timespec clock_utc;

static uint64_t pm_clock(void)
{
	return clock_pm;
}

static struct timespec utc_clock(void)
{
	return clock_utc;
}

static void on_tx(void *ctx, const uint8_t *buf, size_t len)
{
	(void)ctx;
	(void)buf;
	tx_bytes += len;
}

static void on_reset(void *ctx)
{
	(void)ctx;
	resets++;
}

static void on_poweroff(void *ctx)
{
	(void)ctx;
	poweroffs++;
}

static void on_kbc_reset(void *ctx)
{
	(void)ctx;
	kbc_resets++;
}

static const uint16_t bases[9] = {
	PORT_COM1,	     PORT_RTC,		PORT_I8042_DATA,
	PORT_I8042_CMD,	     PORT_ACPI_PM1A_EVT, PORT_ACPI_PM1A_CNT,
	PORT_ACPI_PM_TMR,    PORT_ACPI_GPE0,	PORT_ACPI_RESET,
};
static const uint16_t lens[9] = {
	PORT_COM1_LEN,	       PORT_RTC_LEN,	       1, 1, PORT_ACPI_PM1A_EVT_LEN,
	PORT_ACPI_PM1A_CNT_LEN, PORT_ACPI_PM_TMR_LEN, PORT_ACPI_GPE0_LEN, 1,
};

static uint64_t port_read(uint16_t port, uint32_t len)
{
	uint8_t a[8], b[8];
	memset(a, 0xa5, 8);
	memset(b, 0x5a, 8);
	bus_access(&pio, port, a, len, false);
	/* a second read may differ (RBR, status, C...): only the bytes
	 * beyond the width are compared */
	bus_access(&pio, port, b, len, false);
	for (uint32_t i = len; i < 8; i++)
		FZ_CHECK(a[i] == 0xa5 && b[i] == 0x5a);
	uint64_t v = 0;
	memcpy(&v, a, len);
	return v;
}

static void port_write(uint16_t port, uint32_t len, uint32_t v)
{
	bus_access(&pio, port, &v, len, true);
}

FZ_QUIET static void check(void)
{
	/* interrupt lines */
	FZ_CHECK(irq_ser.level == ser.irq_level);
	FZ_CHECK(irq_rtc.level == !!(rtc.reg_c & RTC_C_IRQF) && irq_rtc.level == rtc.irq_level);
	bool kbd = kbc.obf && !kbc.out_aux && (kbc.ram[0] & I8042_CTR_KBDINT);
	bool aux = kbc.obf && kbc.out_aux && (kbc.ram[0] & I8042_CTR_AUXINT);
	FZ_CHECK(irq_kbd.level == kbd && irq_aux.level == aux);
	bool sci = (pm.sts & pm.en) || (pm.gpe_sts & pm.gpe_en);
	FZ_CHECK(irq_sci.level == sci && pm.sci_level == sci);
	/* registers */
	FZ_CHECK(!(pm.sts & ~ACPI_PM1_STS_MASK));
	FZ_CHECK(!(rtc.reg_c & 0x0f) && rtc.index < RTC_CMOS_SIZE);
	FZ_CHECK(ser.rx_count <= SERIAL_RX_FIFO_SIZE && ser.rx_head < SERIAL_RX_FIFO_SIZE);
	FZ_CHECK(kbc.kbd_count <= I8042_KBD_QUEUE && kbc.kbd_head < I8042_KBD_QUEUE);
	FZ_CHECK(resets <= 1 && poweroffs <= 1 && kbc_resets <= 1);
}

/* One device's state through the snapshot format and back. */
#define ROUND_TRIP(type, dev, get, enc, dec, put, version)                                  \
	do {                                                                                \
		static struct type a, b, c;                                                 \
		struct snap_writer w;                                                       \
		uint8_t *buf;                                                               \
		size_t len;                                                                 \
		const uint8_t *p;                                                           \
		size_t plen;                                                                \
		struct snap_reader rd;                                                      \
		char err[256] = "";                                                         \
		get(dev, &a);                                                               \
		snap_writer_init(&w);                                                       \
		snap_writer_section_begin(&w, "dev", version);                              \
		enc(&a, &w);                                                                \
		snap_writer_section_end(&w);                                                \
		FZ_CHECK(snap_writer_finish(&w, &buf, &len) == 0);                          \
		FZ_CHECK(snap_reader_open(buf, len, &rd, err, sizeof(err)) == 0);           \
		FZ_CHECK(snap_reader_find(&rd, "dev", NULL, &p, &plen) == 0);               \
		int r = dec(p, plen, version, &b, err, sizeof(err));                        \
		if (r)                                                                      \
			fprintf(stderr, "fuzz: a " #type " the guest reached is refused: %s\n", \
				err);                                                       \
		FZ_CHECK(r == 0);                                                           \
		put(dev, &b);                                                               \
		get(dev, &c);                                                               \
		FZ_CHECK(!memcmp(&a, &c, sizeof(a)));                                       \
		free(buf);                                                                  \
	} while (0)

static void op(struct fz *in)
{
	switch (fz_u8(in) % 9) {
	case 0: {
		uint8_t dev = fz_u8(in);
		uint16_t port;
		if (dev % 10 < 9)
			port = (uint16_t)(bases[dev % 10] + fz_u8(in) % (lens[dev % 10] + 1u));
		else
			port = fz_u16(in);
		uint8_t sel = fz_u8(in);
		static const uint32_t widths[3] = {1, 2, 4};
		uint32_t len = widths[sel % 3];
		if (sel & 4)
			port_write(port, len, fz_u32(in));
		else
			(void)port_read(port, len);
		break;
	}
	case 1: {
		uint8_t reg = fz_u8(in) % 8;
		port_write((uint16_t)(PORT_COM1 + reg), 1, fz_u8(in));
		break;
	}
	case 2: {
		uint8_t idx = fz_u8(in), sel = fz_u8(in);
		port_write(PORT_RTC, 1, idx);
		if (sel & 1)
			port_write(PORT_RTC + 1, 1, fz_u8(in));
		else
			(void)port_read(PORT_RTC + 1, 1);
		break;
	}
	case 3: {
		uint8_t cmd = fz_u8(in), sel = fz_u8(in);
		port_write(PORT_I8042_CMD, 1, cmd);
		if (sel & 1)
			port_write(PORT_I8042_DATA, 1, fz_u8(in));
		if (sel & 2)
			(void)port_read(PORT_I8042_DATA, 1);
		break;
	}
	case 4: {
		uint8_t b[32];
		size_t n = fz_bytes(in, b, fz_u8(in) % sizeof(b));
		size_t space = serial_rx_space(&ser);
		size_t took = serial_input(&ser, b, n);
		FZ_CHECK(took <= n && took <= space);
		break;
	}
	case 5: {
		uint8_t ev = fz_u8(in);
		if (ev & 1)
			i8042_send_ctrl_alt_del(&kbc);
		if (ev & 2)
			acpi_pm_press_power_button(&pm);
		if (ev & 4)
			acpi_pm_raise_gpe(&pm, ev >> 4);
		if (ev & 8)
			(void)rtc_tick(&rtc);
		break;
	}
	case 6:
		clock_pm += fz_u32(in);
		clock_utc.tv_sec += fz_u16(in);
		clock_utc.tv_nsec = (long)(fz_u32(in) % 1000000000u);
		break;
	case 7:
		ROUND_TRIP(serial_state, &ser, serial_state_get, serial_state_encode,
			   serial_state_decode, serial_state_put, SERIAL_STATE_VERSION);
		ROUND_TRIP(rtc_state, &rtc, rtc_state_get, rtc_state_encode, rtc_state_decode,
			   rtc_state_put, RTC_STATE_VERSION);
		ROUND_TRIP(i8042_state, &kbc, i8042_state_get, i8042_state_encode,
			   i8042_state_decode, i8042_state_put, I8042_STATE_VERSION);
		ROUND_TRIP(acpi_pm_state, &pm, acpi_pm_state_get, acpi_pm_state_encode,
			   acpi_pm_state_decode, acpi_pm_state_put, ACPI_PM_STATE_VERSION);
		/* a restored machine may ask for its reset or power-off again */
		resets = poweroffs = kbc_resets = 0;
		break;
	case 8:
		if (pm.frozen)
			acpi_pm_resume(&pm);
		else
			acpi_pm_pause(&pm);
		break;
	}
	check();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_ERROR);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	memset(&irq_ser, 0, sizeof(irq_ser));
	memset(&irq_rtc, 0, sizeof(irq_rtc));
	memset(&irq_kbd, 0, sizeof(irq_kbd));
	memset(&irq_aux, 0, sizeof(irq_aux));
	memset(&irq_sci, 0, sizeof(irq_sci));
	resets = poweroffs = kbc_resets = 0;
	clock_pm = 1000000000ull;
	clock_utc = (struct timespec){.tv_sec = 1700000000};
	struct irq_line ls = {fake_set_level, &irq_ser, IRQ_COM1};
	struct irq_line lr = {fake_set_level, &irq_rtc, IRQ_RTC};
	struct irq_line lk = {fake_set_level, &irq_kbd, IRQ_KBD};
	struct irq_line la = {fake_set_level, &irq_aux, IRQ_AUX};
	struct irq_line lsci = {fake_set_level, &irq_sci, IRQ_ACPI_SCI};
	bus_init(&pio, "pio");
	if (serial_init(&ser, &ls, on_tx, NULL) || rtc_init(&rtc, &lr) ||
	    i8042_init(&kbc, on_kbc_reset, NULL) ||
	    acpi_pm_init(&pm, &lsci, on_poweroff, on_reset, NULL))
		abort();
	/* the fake clocks, and what init took from the real ones */
	rtc.now = utc_clock;
	rtc.last_sec = clock_utc.tv_sec;
	rtc.last_pf = (uint64_t)clock_utc.tv_sec * rtc.last_pf_hz;
	pm.clock_ns = pm_clock;
	pm.base_ns = clock_pm;
	i8042_set_irqs(&kbc, &lk, &la);
	if (bus_register(&pio, &ser.bus, PORT_COM1, PORT_COM1_LEN) ||
	    bus_register(&pio, &rtc.bus, PORT_RTC, PORT_RTC_LEN) ||
	    bus_register(&pio, &kbc.data_bus, PORT_I8042_DATA, 1) ||
	    bus_register(&pio, &kbc.cmd_bus, PORT_I8042_CMD, 1) ||
	    bus_register(&pio, &pm.evt_bus, PORT_ACPI_PM1A_EVT, PORT_ACPI_PM1A_EVT_LEN) ||
	    bus_register(&pio, &pm.cnt_bus, PORT_ACPI_PM1A_CNT, PORT_ACPI_PM1A_CNT_LEN) ||
	    bus_register(&pio, &pm.tmr_bus, PORT_ACPI_PM_TMR, PORT_ACPI_PM_TMR_LEN) ||
	    bus_register(&pio, &pm.gpe_bus, PORT_ACPI_GPE0, PORT_ACPI_GPE0_LEN) ||
	    bus_register(&pio, &pm.reset_bus, PORT_ACPI_RESET, 1))
		abort();
	check();
	struct fz in = {data, size};
	while (in.n)
		op(&in);
	serial_destroy(&ser);
	rtc_destroy(&rtc);
	i8042_destroy(&kbc);
	acpi_pm_destroy(&pm);
	return 0;
}
