/* Counter: prints "C0001" .. "C0200", one line every 10 ms of the ACPI PM
 * timer, keeping its state in three places a snapshot must carry over: a
 * table in guest memory (one entry per tick), a running sum in a general
 * register (the loop variable) and a second sum in an SSE register (xmm7,
 * saved with the vCPU's XSAVE area).  At the end it checks all three
 * against each other and prints "COUNT OK sum=..." (or "COUNT BAD ..."),
 * then powers off.  The snapshot test (tests/kvm/run) pauses it half-way,
 * saves it, kills the process and loads the snapshot into a new one: the
 * two outputs together must be exactly C0001..C0200 and COUNT OK.
 *
 * After C0100 it prints "HOLD" and waits for a byte on COM1 before it
 * goes on: a VM started with stdin /dev/null never finishes on its own, so
 * a test's pause or snapshot cannot come too late however slow the host
 * (the restored process gets the byte: `printf g | visor ...`).  With
 * "hold50" on the command line it holds at C0050 as well, for a test that
 * snapshots it twice at known ticks.  With "slow" a tick is 100 ms, not
 * 10: a test that must pause it between two ticks (not at a HOLD) has
 * seconds to do so however loaded the host. */
#include "guest.h"

#define TICKS 200
#define PM_TMR 0x608
#define TICK_PM 35795u /* 10 ms at 3.579545 MHz */
#define HOLD_AT 100

static volatile uint64_t table[TICKS + 1];

static void sse_on(void)
{
	uint64_t cr0, cr4;
	__asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
	cr0 = (cr0 & ~(1ull << 2)) | (1ull << 1); /* EM off, MP on */
	__asm__ volatile("mov %0, %%cr0" ::"r"(cr0));
	__asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
	cr4 |= (1ull << 9) | (1ull << 10); /* OSFXSR, OSXMMEXCPT */
	__asm__ volatile("mov %0, %%cr4" ::"r"(cr4));
}

static inline void xmm_set(uint64_t v)
{
	__asm__ volatile("movq %0, %%xmm7" ::"r"(v));
}

static inline uint64_t xmm_get(void)
{
	uint64_t v;
	__asm__ volatile("movq %%xmm7, %0" : "=r"(v));
	return v;
}

static void put4(uint32_t n)
{
	char s[6] = {'C', 0, 0, 0, 0, '\n'};
	for (int i = 4; i >= 1; i--) {
		s[i] = (char)('0' + n % 10);
		n /= 10;
	}
	for (int i = 0; i < 6; i++)
		outb(COM1, (uint8_t)s[i]);
}

int guest_main(void)
{
	sse_on();
	xmm_set(0);
	uint64_t sum = 0;
	uint32_t early = cmdline_has("hold50") ? 50 : 0;
	uint32_t tick = cmdline_has("slow") ? TICK_PM * 10 : TICK_PM;
	uint32_t last = inl(PM_TMR);
	for (uint32_t n = 1; n <= TICKS; n++) {
		while ((uint32_t)(inl(PM_TMR) - last) < tick)
			;
		last += tick;
		uint64_t v = (uint64_t)n * 2654435761u;
		table[n] = v;
		sum += v;
		xmm_set(xmm_get() + v);
		put4(n);
		if (n == HOLD_AT || n == early) {
			puts_("HOLD\n");
			while (!(inb(COM1 + 5) & 0x01)) /* LSR: data ready */
				;
			(void)inb(COM1);
			last = inl(PM_TMR);
		}
	}
	uint64_t check = 0;
	for (uint32_t n = 1; n <= TICKS; n++)
		check += table[n];
	puts_(check == sum && xmm_get() == sum ? "COUNT OK sum=" : "COUNT BAD sum=");
	puthex(sum);
	puts_(" table=");
	puthex(check);
	puts_(" xmm=");
	puthex(xmm_get());
	puts_("\n");
	poweroff();
	for (;;)
		__asm__ volatile("hlt");
}
