/* Port I/O dispatch at CPL3: UART output, unhandled ports read as all-ones,
 * RTC readable, the boot-time device, then power-off (exit 0). */
#include "guest.h"

static char ustack[8192] __attribute__((aligned(16)));

static void user(void)
{
	int ok = 1;
	puts_("PIO: hello from CPL3\n");
	if (inb(0x2f0) != 0xff || inw(0x2f0) != 0xffff || inl(0x2f0) != 0xffffffffu)
		ok = 0;
	outb(0x2f0, 0x12); /* unhandled write: ignored */
	outb(0x70, 0x0b);
	uint8_t regb = inb(0x71);
	outb(0x70, 0x00);
	uint8_t sec = inb(0x71);
	if (!(regb & 0x04) && ((sec & 0xf) > 9 || sec >= 0x60))
		ok = 0; /* BCD seconds out of range */
	outb(BOOTDEV, 0x7b);
	/* busy loop at CPL3: native speed even on software KVM */
	volatile uint64_t x = 0;
	for (uint64_t i = 0; i < 1000000; i++)
		x += i;
	puts_(ok ? "PIO OK\n" : "PIO FAIL\n");
	poweroff();
	for (;;)
		;
}

int guest_main(void)
{
	enter_user(user, ustack + sizeof(ustack));
}
