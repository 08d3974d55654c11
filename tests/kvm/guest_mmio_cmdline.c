/* The kernel command line as a guest without ACPI sees it: visor appends
 * one "virtio_mmio.device=<size>@<base>:<irq>" per virtio-mmio device when
 * the command line has acpi=off (what Linux's VIRTIO_MMIO_CMDLINE_DEVICES
 * parses).  This guest reads its command line through the zero page
 * (boot_params.hdr.cmd_line_ptr, RSI at entry = 0x7000), parses every such
 * entry like Linux does, and checks that a virtio-mmio device answers at
 * each base (magic "virt", version 2, a device ID) and that the IRQs are
 * distinct and in the IOAPIC's range.  Prints "CMDLINE-MMIO OK n=<count>"
 * when every entry held, "CMDLINE-MMIO FAIL: ..." for each one that did
 * not. */
#include "guest.h"

#define MAGIC_VIRT 0x74726976u

static int failures;

static void fail(const char *what)
{
	puts_("CMDLINE-MMIO FAIL: ");
	puts_(what);
	putc_('\n');
	failures++;
}

static int prefix(const char *s, const char *p)
{
	while (*p)
		if (*s++ != *p++)
			return 0;
	return 1;
}

/* Linux's memparse for the size: a number with an optional K/M/G suffix. */
static const char *parse_num(const char *s, uint64_t *v, int base)
{
	uint64_t x = 0;
	const char *start = s;
	if (base == 16 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s += 2, start = s;
	for (;; s++) {
		int d;
		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = *s - 'A' + 10;
		else
			break;
		x = x * (uint64_t)base + (uint64_t)d;
	}
	*v = x;
	return s == start ? 0 : s;
}

int guest_main(void)
{
	uint32_t ptr = *(volatile uint32_t *)(ZERO_PAGE + CMD_LINE_PTR);
	if (!ptr) {
		fail("no command line");
		return 0;
	}
	const char *cl = (const char *)(uintptr_t)ptr;
	puts_("cmdline: ");
	puts_(cl);
	putc_('\n');
	int n = 0;
	uint64_t irqs[16];
	for (const char *s = cl; *s;) {
		while (*s == ' ')
			s++;
		if (prefix(s, "virtio_mmio.device=")) {
			s += 19;
			uint64_t size, base, irq;
			s = parse_num(s, &size, 10);
			if (!s) {
				fail("size");
				return 0;
			}
			if (*s == 'K')
				size <<= 10, s++;
			else if (*s == 'M')
				size <<= 20, s++;
			if (*s++ != '@' || !(s = parse_num(s, &base, 16)) || *s++ != ':' ||
			    !(s = parse_num(s, &irq, 10))) {
				fail("syntax (want <size>@<base>:<irq>)");
				return 0;
			}
			volatile uint32_t *r = (volatile uint32_t *)(uintptr_t)base;
			puts_("CMDLINE-MMIO dev base=");
			puthex(base);
			puts_(" size=");
			puthex(size);
			puts_(" irq=");
			puthex(irq);
			puts_(" id=");
			puthex(r[2]);
			putc_('\n');
			if (size < 0x200)
				fail("window smaller than the virtio-mmio register file");
			if (r[0] != MAGIC_VIRT)
				fail("no virtio-mmio magic at the base");
			if (r[1] != 2)
				fail("not virtio-mmio version 2");
			if (r[2] == 0)
				fail("device ID 0 (no device) at the base");
			if (irq < 16 || irq > 23)
				fail("IRQ outside the IOAPIC's PCI range 16-23");
			for (int i = 0; i < n && i < 16; i++)
				if (irqs[i] == irq)
					fail("two devices share an IRQ");
			if (n < 16)
				irqs[n] = irq;
			n++;
		}
		while (*s && *s != ' ')
			s++;
	}
	if (!failures) {
		puts_("CMDLINE-MMIO OK n=");
		putc_((char)('0' + (n > 9 ? 9 : n)));
		putc_('\n');
	}
	return 0;
}
