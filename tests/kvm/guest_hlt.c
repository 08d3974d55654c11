/* HLT with the in-kernel LAPIC: the vCPU sleeps in KVM until the LAPIC
 * timer interrupt wakes it (no exit to visor), three times. */
#include "guest.h"

struct idt_entry {
	uint16_t off0, sel;
	uint8_t ist, type;
	uint16_t off1;
	uint32_t off2, zero;
} __attribute__((packed));

static struct idt_entry idt[256] __attribute__((aligned(16)));
static volatile int ticks;
#define LAPIC 0xfee00000UL

static inline void lapic_w(uint32_t reg, uint32_t v) { *(volatile uint32_t *)(LAPIC + reg) = v; }

__attribute__((interrupt)) static void timer_isr(void *frame)
{
	(void)frame;
	ticks++;
	lapic_w(0xb0, 0); /* EOI */
}

int guest_main(void)
{
	uint64_t h = (uint64_t)(uintptr_t)timer_isr;
	idt[0x40] = (struct idt_entry){(uint16_t)h, 0x10, 0, 0x8e, (uint16_t)(h >> 16),
				       (uint32_t)(h >> 32), 0};
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) d = {sizeof(idt) - 1, (uint64_t)(uintptr_t)idt};
	__asm__ volatile("lidt %0" ::"m"(d));
	lapic_w(0xf0, 0x1ff);       /* software enable, spurious vector 0xff */
	lapic_w(0x3e0, 0xb);        /* divide by 1 */
	lapic_w(0x320, 0x40);       /* one-shot, vector 0x40 */
	for (int i = 0; i < 3; i++) {
		int before = ticks;
		lapic_w(0x380, 1000000); /* initial count */
		while (ticks == before)
			__asm__ volatile("sti; hlt; cli");
	}
	puts_(ticks == 3 ? "HLT OK\n" : "HLT FAIL\n");
	return 0;
}
