/* CPU reset through the i8042 (0xFE to port 0x64). */
#include "guest.h"

int guest_main(void)
{
	puts_("RESET: pulsing the reset line\n");
	outb(0x64, 0xfe);
	for (;;)
		__asm__ volatile("hlt");
}
