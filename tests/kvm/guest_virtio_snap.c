/* Virtio over MMIO across a snapshot (issue 10).  Run with --rng
 * transport=mmio --balloon transport=mmio (slots 0 and 1).  First the
 * guest leaves the two devices in the two states a snapshot must carry with
 * the queue geometry kept only in the virtio core:
 *
 *   virtio-rng: live, queue 0 (8 entries) active, 3 requests served;
 *   virtio-balloon: half set up - features accepted, queue 0 (8 entries)
 *   enabled, queue 1 (4 entries) written but not enabled, QueueSel 1, no
 *   DRIVER_OK.
 *
 * Then it prints "VSNAP WAIT" and waits until the balloon's target
 * (config num_pages) is not 0: the test snapshots it meanwhile, kills it,
 * restores the snapshot in a new process and only then sets a target
 * (PATCH /balloon), so the rest runs in the restored VM whatever the
 * timing.  It carries on where it left off: 12 more random requests (the
 * ring wraps: a lost queue size or index shows), then QueueReady = 1 on
 * the balloon's queue 1 (it must read back 1), DRIVER_OK (activation must
 * succeed: the rings must be the ones written before the snapshot), 10
 * inflates and 6 deflates (both rings wrap).  Prints "VSNAP OK" if every
 * check held, else "VSNAP FAIL: ..." lines and "VSNAP FAILED". */
#include "guest.h"

#define RNG 0xf0000000UL
#define BAL 0xf0001000UL
#define R(dev, off) (*(volatile uint32_t *)((dev) + (off)))

enum {
	MAGIC = 0x000, DEVICE_ID = 0x008, DRV_FEAT = 0x020, DRV_FEAT_SEL = 0x024,
	QUEUE_SEL = 0x030, QUEUE_NUM_MAX = 0x034, QUEUE_NUM = 0x038, QUEUE_READY = 0x044,
	QUEUE_NOTIFY = 0x050, STATUS = 0x070, DESC_LO = 0x080, DESC_HI = 0x084,
	DRIVER_LO = 0x090, DRIVER_HI = 0x094, DEVICE_LO = 0x0a0, DEVICE_HI = 0x0a4,
	BALLOON_NUM_PAGES = 0x100,
};

#define S_ACK 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define S_NEEDS_RESET 64

#define QMAX 8

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

/* One split ring of up to QMAX entries, each part on its own page. */
struct ring {
	struct desc desc[QMAX] __attribute__((aligned(4096)));
	volatile uint16_t avail[3 + QMAX] __attribute__((aligned(4096)));
	volatile uint32_t used[1 + 2 * QMAX + 1] __attribute__((aligned(4096)));
};

/* Driver side of one queue: its ring, size, and the next avail index. */
struct q {
	uint64_t dev;
	uint32_t index, size;
	struct ring *r;
	uint16_t avail_idx;
};

static struct ring rng_ring, bal_ring0, bal_ring1;
static uint8_t buf[4096] __attribute__((aligned(4096)));
static uint8_t page[4096] __attribute__((aligned(4096))); /* goes into the balloon */
static uint32_t pfn;
static int failures;

static void check(int ok, const char *what)
{
	if (!ok) {
		puts_("VSNAP FAIL: ");
		puts_(what);
		putc_('\n');
		failures++;
	}
}

static void negotiate(uint64_t dev)
{
	R(dev, STATUS) = 0;
	R(dev, STATUS) = S_ACK;
	R(dev, STATUS) = S_ACK | S_DRIVER;
	R(dev, DRV_FEAT_SEL) = 1;
	R(dev, DRV_FEAT) = 1; /* VIRTIO_F_VERSION_1 (bit 32) only */
	R(dev, DRV_FEAT_SEL) = 0;
	R(dev, DRV_FEAT) = 0;
	R(dev, STATUS) = S_ACK | S_DRIVER | S_FEATURES_OK;
	check(R(dev, STATUS) & S_FEATURES_OK, "FEATURES_OK refused");
}

/* Write queue @q's size and ring addresses; enable it if @enable. */
static void queue_setup(struct q *q, int enable)
{
	uint64_t a[3] = {(uint64_t)(uintptr_t)q->r->desc, (uint64_t)(uintptr_t)q->r->avail,
			 (uint64_t)(uintptr_t)q->r->used};
	R(q->dev, QUEUE_SEL) = q->index;
	check(R(q->dev, QUEUE_NUM_MAX) >= q->size, "QueueNumMax below the size wanted");
	check(R(q->dev, QUEUE_READY) == 0, "a queue ready before it was enabled");
	R(q->dev, QUEUE_NUM) = q->size;
	R(q->dev, DESC_LO) = (uint32_t)a[0];
	R(q->dev, DESC_HI) = (uint32_t)(a[0] >> 32);
	R(q->dev, DRIVER_LO) = (uint32_t)a[1];
	R(q->dev, DRIVER_HI) = (uint32_t)(a[1] >> 32);
	R(q->dev, DEVICE_LO) = (uint32_t)a[2];
	R(q->dev, DEVICE_HI) = (uint32_t)(a[2] >> 32);
	if (enable) {
		R(q->dev, QUEUE_READY) = 1;
		check(R(q->dev, QUEUE_READY) == 1, "QueueReady did not read 1 after enabling");
	}
}

/* One buffer (@write: device-writable) through queue @q, using descriptor
 * avail_idx % size; waits for the device to return it.  Returns the used
 * length, or -1 if it was not returned (or returned as another head). */
static long request(struct q *q, const void *p, uint32_t len, int write)
{
	uint16_t head = (uint16_t)(q->avail_idx % q->size);
	q->r->desc[head] = (struct desc){(uint64_t)(uintptr_t)p, len, write ? 2 : 0, 0};
	q->r->avail[2 + q->avail_idx % q->size] = head;
	q->avail_idx++;
	__asm__ volatile("mfence" ::: "memory");
	q->r->avail[1] = q->avail_idx;
	R(q->dev, QUEUE_NOTIFY) = q->index;
	for (long i = 0; i < 50000000L; i++) {
		if ((uint16_t)(q->r->used[0] >> 16) == q->avail_idx) {
			uint16_t slot = (uint16_t)((q->avail_idx - 1) % q->size);
			if (q->r->used[1 + 2 * slot] != head)
				return -1;
			return q->r->used[2 + 2 * slot];
		}
	}
	return -1;
}

int guest_main(void)
{
	struct q rng = {RNG, 0, QMAX, &rng_ring, 0};
	struct q inflate = {BAL, 0, QMAX, &bal_ring0, 0};
	struct q deflate = {BAL, 1, 4, &bal_ring1, 0};
	pfn = (uint32_t)((uintptr_t)page >> 12);

	check(R(RNG, MAGIC) == 0x74726976 && R(RNG, DEVICE_ID) == 4, "no virtio-rng in slot 0");
	check(R(BAL, MAGIC) == 0x74726976 && R(BAL, DEVICE_ID) == 5,
	      "no virtio-balloon in slot 1");
	if (failures) {
		puts_("VSNAP FAILED\n");
		poweroff();
	}
	/* virtio-rng live with 3 requests served */
	negotiate(RNG);
	queue_setup(&rng, 1);
	R(RNG, STATUS) = S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK;
	check(R(RNG, STATUS) == (S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK),
	      "virtio-rng did not go live");
	for (int i = 0; i < 3; i++)
		check(request(&rng, buf, 64, 1) == 64, "random request before the snapshot");
	/* virtio-balloon half set up */
	negotiate(BAL);
	queue_setup(&inflate, 1);
	queue_setup(&deflate, 0); /* leaves QueueSel 1 */
	if (failures) {
		puts_("VSNAP FAILED\n");
		poweroff();
	}
	puts_("VSNAP WAIT\n");
	while (R(BAL, BALLOON_NUM_PAGES) == 0)
		;
	puts_("VSNAP TARGET\n");

	for (int i = 0; i < 12; i++)
		check(request(&rng, buf, 64, 1) == 64, "random request after the restore");
	check(!(R(RNG, STATUS) & S_NEEDS_RESET), "virtio-rng needs a reset");
	check(R(BAL, QUEUE_READY) == 0, "balloon queue 1 ready before it was enabled");
	R(BAL, QUEUE_READY) = 1;
	check(R(BAL, QUEUE_READY) == 1, "balloon queue 1 not enabled");
	R(BAL, QUEUE_SEL) = 0;
	check(R(BAL, QUEUE_READY) == 1, "balloon queue 0 no longer ready");
	R(BAL, STATUS) = S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK;
	check(R(BAL, STATUS) == (S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK),
	      "virtio-balloon did not go live (its rings were refused)");
	for (int i = 0; i < 10; i++)
		check(request(&inflate, &pfn, 4, 0) == 0, "inflate");
	for (int i = 0; i < 6; i++)
		check(request(&deflate, &pfn, 4, 0) == 0, "deflate");
	check(!(R(BAL, STATUS) & S_NEEDS_RESET), "virtio-balloon needs a reset");
	puts_(failures ? "VSNAP FAILED\n" : "VSNAP OK\n");
	poweroff();
	for (;;)
		__asm__ volatile("hlt");
}
