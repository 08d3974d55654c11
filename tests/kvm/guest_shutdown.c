/* Triple fault: no usable IDT, then an exception -> KVM_EXIT_SHUTDOWN. */
#include "guest.h"

int guest_main(void)
{
	puts_("SHUTDOWN: faulting\n");
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) d = {0, 0};
	__asm__ volatile("lidt %0; ud2" ::"m"(d));
	return 0;
}
