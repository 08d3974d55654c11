/* pvpanic: writing bit 0 to port 0x505 reports a guest panic. */
#include "guest.h"

int guest_main(void)
{
	if (inb(0x505) & 1)
		puts_("PANIC: pvpanic present\n");
	outb(0x505, 1);
	for (;;)
		__asm__ volatile("hlt");
}
