/* Port I/O dispatch at CPL3 (IOPL=3): UART output, unhandled ports read as
 * all-ones, RTC readable, the boot-time device, then power-off (exit 0).
 * guest_pio_cpl0.c does the same checks from CPL0. */
#include "guest.h"

static char ustack[8192] __attribute__((aligned(16)));

static void user(void)
{
	puts_("PIO: hello from CPL3\n");
	int ok = pio_dispatch_checks();
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
