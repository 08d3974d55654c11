/* Console flood: writes FLOOD_BYTES bytes to COM1 as fast as it can (no
 * LSR polling: visor's UART transmits at once), "FLOOD END" last, then
 * powers off.  Run with visor's stdout on a pipe nobody reads, visor must
 * neither stall the vCPU nor hang at the exit: the output it cannot pass
 * on is dropped and reported.  With "flood=forever" on the command line it
 * never stops (for a stop from outside: Ctrl-A x). */
#include "guest.h"

/* More than a pipe (64 KiB) and visor's console ring (128 KiB) hold, and
 * not much more: every byte is an exit (about 70 us each in the lab). */
#define FLOOD_BYTES (224u << 10)
#define LINE 64

int guest_main(void)
{
	char line[LINE];
	int forever = cmdline_has("flood=forever");
	for (uint32_t n = 0; forever || n < FLOOD_BYTES / LINE; n++) {
		/* "FLOOD nnnnnnnn ....\n", 64 bytes */
		const char *h = "FLOOD ";
		int i = 0;
		while (h[i]) {
			line[i] = h[i];
			i++;
		}
		for (int d = 7; d >= 0; d--)
			line[i++] = "0123456789abcdef"[(n >> (d * 4)) & 0xf];
		while (i < LINE - 1)
			line[i++] = '.';
		line[LINE - 1] = '\n';
		for (i = 0; i < LINE; i++)
			outb(COM1, (uint8_t)line[i]);
	}
	puts_("FLOOD END\n");
	return 0;
}
