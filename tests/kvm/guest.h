/* SPDX-License-Identifier: MIT */
/*
 * guest.h - helpers for synthetic test guests (freestanding, 64-bit).
 * They talk to visor through the devices of src/arch/x86/layout.h.
 */
#ifndef VISOR_TEST_GUEST_H
#define VISOR_TEST_GUEST_H

#include <stdint.h>

#define COM1 0x3f8
#define PM1A_CNT 0x604
#define BOOTDEV 0x520

static inline void outb(uint16_t p, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(p)); }
static inline void outw(uint16_t p, uint16_t v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(p)); }
static inline void outl(uint16_t p, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(p)); }
static inline uint8_t inb(uint16_t p) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline uint16_t inw(uint16_t p) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline uint32_t inl(uint16_t p) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(p)); return v; }

static inline void putc_(char c)
{
	for (int i = 0; i < 100000 && !(inb(COM1 + 5) & 0x20); i++)
		;
	outb(COM1, (uint8_t)c);
}

static inline void puts_(const char *s)
{
	while (*s)
		putc_(*s++);
}

static inline void puthex(uint64_t v)
{
	puts_("0x");
	for (int i = 60; i >= 0; i -= 4)
		putc_("0123456789abcdef"[(v >> i) & 0xf]);
}

static inline void poweroff(void) { outw(PM1A_CNT, (5 << 10) | (1 << 13)); }

/* Port I/O dispatch checks (at whatever CPL the caller runs): unhandled
 * ports read all-ones at every width and ignore writes, the RTC answers
 * with BCD seconds in range, and the boot-time device takes its marker
 * (visor then logs "guest boot time").  Returns 1 if every check held. */
static inline int pio_dispatch_checks(void)
{
	int ok = 1;
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
	return ok;
}

/* Switch to CPL3 (IOPL=3, so port I/O still works) and run fn there on
 * the given stack; fn must not return (it ends by powering off). */
void enter_user(void (*fn)(void), void *stack) __attribute__((noreturn));

int guest_main(void);

/* The kernel command line of the 64-bit entry, via the zero page. */
#define ZERO_PAGE 0x7000UL
#define CMD_LINE_PTR 0x228 /* boot_params.hdr.cmd_line_ptr */

/* The kernel command line has @word. */
static inline int cmdline_has(const char *word)
{
	uint32_t ptr = *(volatile uint32_t *)(ZERO_PAGE + CMD_LINE_PTR);
	if (!ptr)
		return 0;
	for (const char *s = (const char *)(uintptr_t)ptr; *s; s++) {
		int i = 0;
		while (word[i] && s[i] == word[i])
			i++;
		if (!word[i])
			return 1;
	}
	return 0;
}

#endif
