/* MMIO dispatch: an address in the MMIO hole with no device reads all-ones
 * at every width and ignores writes. */
#include "guest.h"

int guest_main(void)
{
	volatile uint8_t *b = (volatile uint8_t *)0xd0000000UL;
	int ok = 1;
	if (*b != 0xff || *(volatile uint16_t *)b != 0xffff ||
	    *(volatile uint32_t *)b != 0xffffffffu || *(volatile uint64_t *)b != ~0ULL)
		ok = 0;
	*(volatile uint32_t *)b = 0x1234; /* ignored */
	if (*(volatile uint32_t *)(b + 0x100) != 0xffffffffu)
		ok = 0;
	puts_(ok ? "MMIO OK\n" : "MMIO FAIL\n");
	return 0;
}
