/* A hostile virtio driver: programs the first virtio-mmio device (visor run
 * --rng transport=mmio puts virtio-rng there) with out-of-range register
 * values and broken rings, and checks after each attack that visor is
 * alive and reports the device broken (DEVICE_NEEDS_RESET, config
 * interrupt), then that a reset brings the device back.  Prints
 * "HOSTILE OK" if every check held.  Hostile-input checklist A.1-3, A.7,
 * A.9, B.13-16, B.19 (notification storm). */
#include "guest.h"

#define MMIO_BASE 0xf0000000UL
#define R(off) (*(volatile uint32_t *)(MMIO_BASE + (off)))

enum {
	MAGIC = 0x000, VERSION = 0x004, DEVICE_ID = 0x008, DEV_FEAT = 0x010, DEV_FEAT_SEL = 0x014,
	DRV_FEAT = 0x020, DRV_FEAT_SEL = 0x024, QUEUE_SEL = 0x030, QUEUE_NUM_MAX = 0x034,
	QUEUE_NUM = 0x038, QUEUE_READY = 0x044, QUEUE_NOTIFY = 0x050, INT_STATUS = 0x060,
	INT_ACK = 0x064, STATUS = 0x070, DESC_LO = 0x080, DESC_HI = 0x084, DRIVER_LO = 0x090,
	DRIVER_HI = 0x094, DEVICE_LO = 0x0a0, DEVICE_HI = 0x0a4,
};

#define S_ACK 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define S_NEEDS_RESET 64

#define QSIZE 8
struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};
static struct desc descs[QSIZE] __attribute__((aligned(4096)));
static volatile uint16_t avail[2 + QSIZE + 1] __attribute__((aligned(4096)));
static volatile uint32_t used[1 + 2 * QSIZE + 1] __attribute__((aligned(4096)));
static uint8_t buf[4096] __attribute__((aligned(4096)));
static int failures;

static void check(int ok, const char *what)
{
	if (!ok) {
		puts_("HOSTILE FAIL: ");
		puts_(what);
		putc_('\n');
		failures++;
	}
}

/* Full driver init up to DRIVER_OK with queue 0 at our rings. */
static void init_device(void)
{
	R(STATUS) = 0;
	R(STATUS) = S_ACK;
	R(STATUS) = S_ACK | S_DRIVER;
	R(DRV_FEAT_SEL) = 1;
	R(DRV_FEAT) = 1; /* VIRTIO_F_VERSION_1 (bit 32) */
	R(DRV_FEAT_SEL) = 0;
	R(DRV_FEAT) = 0;
	R(STATUS) = S_ACK | S_DRIVER | S_FEATURES_OK;
	check(R(STATUS) & S_FEATURES_OK, "FEATURES_OK refused");
	for (int i = 0; i < QSIZE; i++)
		descs[i] = (struct desc){0, 0, 0, 0};
	for (unsigned i = 0; i < sizeof(avail) / 2; i++)
		avail[i] = 0;
	for (unsigned i = 0; i < sizeof(used) / 4; i++)
		used[i] = 0;
	R(QUEUE_SEL) = 0;
	R(QUEUE_NUM) = QSIZE;
	R(DESC_LO) = (uint32_t)(uintptr_t)descs;
	R(DESC_HI) = 0;
	R(DRIVER_LO) = (uint32_t)(uintptr_t)avail;
	R(DRIVER_HI) = 0;
	R(DEVICE_LO) = (uint32_t)(uintptr_t)used;
	R(DEVICE_HI) = 0;
	R(QUEUE_READY) = 1;
	R(STATUS) = S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK;
	check(R(STATUS) & S_DRIVER_OK, "DRIVER_OK refused");
}

/* Make head 0 available and kick; wait until the device reacts. */
static int kick_and_wait_broken(void)
{
	avail[1] = (uint16_t)(avail[1] + 1);
	R(QUEUE_NOTIFY) = 0;
	for (long i = 0; i < 50000000L; i++)
		if (R(STATUS) & S_NEEDS_RESET)
			return 1;
	return 0;
}

int guest_main(void)
{
	check(R(MAGIC) == 0x74726976, "magic");
	check(R(VERSION) == 2, "version");
	check(R(DEVICE_ID) == 4, "device id (virtio-rng)");

	/* B.13: out-of-range selectors and notifies are ignored */
	R(QUEUE_SEL) = 0x7fffffff;
	check(R(QUEUE_NUM_MAX) == 0, "QueueNumMax of a missing queue");
	R(QUEUE_SEL) = 0xffffffff;
	R(QUEUE_READY) = 1;
	R(QUEUE_NOTIFY) = 0xffffffff;
	R(QUEUE_NOTIFY) = 0x7fffffff;
	/* B.16: DRIVER_OK without FEATURES_OK is refused */
	R(STATUS) = 0;
	R(STATUS) = S_ACK | S_DRIVER | S_DRIVER_OK;
	check(!(R(STATUS) & S_DRIVER_OK), "DRIVER_OK without FEATURES_OK accepted");
	/* odd widths on registers are ignored */
	*(volatile uint8_t *)(MMIO_BASE + STATUS) = 0xff;
	*(volatile uint16_t *)(MMIO_BASE + QUEUE_NUM) = 0xffff;

	/* A.1: a descriptor chain that loops on itself */
	init_device();
	descs[0] = (struct desc){(uint64_t)(uintptr_t)buf, 16, 1 /* NEXT */ | 2 /* WRITE */, 0};
	avail[2] = 0;
	check(kick_and_wait_broken(), "cycle not detected");
	check(R(INT_STATUS) & 2, "no config interrupt status after breaking");
	R(INT_ACK) = 3;

	/* A.7: a buffer outside guest RAM */
	init_device();
	check(!(R(STATUS) & S_NEEDS_RESET), "reset did not clear DEVICE_NEEDS_RESET");
	descs[0] = (struct desc){0xfffffffff000ULL, 4096, 2, 0};
	avail[2] = 0;
	check(kick_and_wait_broken(), "buffer outside RAM not rejected");

	/* A.2: head index >= queue size */
	init_device();
	avail[2] = 0xffff;
	check(kick_and_wait_broken(), "head 0xffff not rejected");

	/* A.3: avail->idx jumps by more than the queue size */
	init_device();
	descs[0] = (struct desc){(uint64_t)(uintptr_t)buf, 16, 2, 0};
	avail[2] = 0;
	avail[1] = (uint16_t)(avail[1] + 100);
	check(kick_and_wait_broken(), "avail idx jump not detected");

	/* A.9: indirect descriptor with a length that is not a multiple of 16 */
	init_device();
	descs[0] = (struct desc){(uint64_t)(uintptr_t)buf, 17, 4 /* INDIRECT */, 0};
	avail[2] = 0;
	check(kick_and_wait_broken(), "bad indirect length not rejected");

	/* finally a well-formed request works after a reset: 64 random bytes */
	init_device();
	descs[0] = (struct desc){(uint64_t)(uintptr_t)buf, 64, 2, 0};
	avail[2] = 0;
	avail[1] = (uint16_t)(avail[1] + 1);
	R(QUEUE_NOTIFY) = 0;
	long spin = 0;
	while (used[0] >> 16 == 0 && spin < 50000000L)
		spin++;
	check(used[0] >> 16 == 1, "valid request not completed after reset");
	check(used[2] == 64, "valid request length");
	check(!(R(STATUS) & S_NEEDS_RESET), "device broken by a valid request");

	/* B.19: a notification storm.  Kicks with no new buffer (KVM signals
	 * the queue's eventfd in the kernel; the loop coalesces them), kicks
	 * with values no queue has (each one exits to visor's MMIO handler),
	 * and a burst of requests completed one after the other.  visor must
	 * neither hang nor break the device: the next request completes. */
	for (int i = 0; i < 20000; i++)
		R(QUEUE_NOTIFY) = 0;
	for (int i = 0; i < 5000; i++)
		R(QUEUE_NOTIFY) = 0x10000u + (uint32_t)i;
	int done = 0;
	for (int i = 0; i < 300; i++) {
		uint16_t want = (uint16_t)(avail[1] + 1);
		avail[2 + (want - 1) % QSIZE] = 0;
		avail[1] = want;
		R(QUEUE_NOTIFY) = 0;
		spin = 0;
		while ((uint16_t)(used[0] >> 16) != want && spin < 50000000L)
			spin++;
		done += (uint16_t)(used[0] >> 16) == want;
	}
	check(done == 300, "requests lost in a notification storm");
	check(!(R(STATUS) & S_NEEDS_RESET), "device broken by a notification storm");

	puts_(failures ? "HOSTILE FAILED\n" : "HOSTILE OK\n");
	return 0;
}
