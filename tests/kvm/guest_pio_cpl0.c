/* Port I/O dispatch from CPL0: the checks of guest_pio.c without the switch
 * to CPL3, so that hosts whose KVM does not let CPL3 code do port I/O (PVM
 * ignores IOPL 3) still test the port bus.  Prints "PIO OK" and powers off
 * (exit 0). */
#include "guest.h"

int guest_main(void)
{
	puts_("PIO: hello from CPL0\n");
	int ok = pio_dispatch_checks();
	puts_(ok ? "PIO OK\n" : "PIO FAIL\n");
	return 0;
}
