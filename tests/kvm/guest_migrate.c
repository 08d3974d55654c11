/* Live migration (issue 11).  Run with --memory 64M --rng transport=mmio.
 *
 * The guest writes a pattern over all of [16 MiB, 62 MiB) again and again,
 * a new generation each sweep: the first and last 16 bytes of every page
 * hold (magic, generation, page number, ~generation).  After each sweep it
 * checks every page holds the generation just written, so a page the
 * migration left stale at the destination (a dirty page not sent again)
 * shows as "MIG FAIL page ...".
 *
 * Meanwhile it keeps one virtio-rng request in flight (slot 0): the
 * buffer is filled with a marker before it is posted, and when the used
 * ring returns it the buffer must no longer be all marker.  That is memory
 * only the VMM writes (the random bytes and the used ring): if the
 * migration lost such a page, the guest at the destination sees its
 * request answered with the marker still there, or never answered.
 *
 * Prints "MIG READY" once the first sweep is done, "MIG S n" every 8
 * sweeps.  When a byte arrives on its console it finishes: the request in
 * flight must come back, then "MIG OK sweeps=N rng=M" (or "MIG FAILED")
 * and power-off. */
#include "guest.h"

#define RNG 0xf0000000UL
#define R(dev, off) (*(volatile uint32_t *)((dev) + (off)))

enum {
	MAGIC = 0x000, DEVICE_ID = 0x008, DRV_FEAT = 0x020, DRV_FEAT_SEL = 0x024,
	QUEUE_SEL = 0x030, QUEUE_NUM_MAX = 0x034, QUEUE_NUM = 0x038, QUEUE_READY = 0x044,
	QUEUE_NOTIFY = 0x050, STATUS = 0x070, DESC_LO = 0x080, DESC_HI = 0x084,
	DRIVER_LO = 0x090, DRIVER_HI = 0x094, DEVICE_LO = 0x0a0, DEVICE_HI = 0x0a4,
};

#define S_ACK 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8

#define QSIZE 8
#define LO (16UL << 20)
#define HI (62UL << 20)
#define PMAGIC 0x4d49475041474521ULL /* "MIGPAGE!" */
#define MARK 0x5a

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

static struct desc desc[QSIZE] __attribute__((aligned(4096)));
static volatile uint16_t avail[3 + QSIZE] __attribute__((aligned(4096)));
/* A page of its own, all of it: a variable the guest writes placed beside
 * the ring would put the page in KVM's dirty log, and a used-ring write
 * the VMM failed to mark would go unnoticed (it did: session 10). */
static volatile uint32_t used[1024] __attribute__((aligned(4096)));
static uint8_t rbuf[QSIZE][4096] __attribute__((aligned(4096)));
static uint16_t avail_idx, used_seen;
static int failures;
static uint64_t served;

static void fail(const char *what, uint64_t v)
{
	if (failures++ < 8) {
		puts_("MIG FAIL ");
		puts_(what);
		putc_(' ');
		puthex(v);
		putc_('\n');
	}
}

static void putdec(uint64_t v)
{
	char b[24];
	int n = 0;
	do {
		b[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		putc_(b[--n]);
}

static void rng_setup(void)
{
	if (R(RNG, MAGIC) != 0x74726976 || R(RNG, DEVICE_ID) != 4) {
		fail("no virtio-rng in slot 0", 0);
		return;
	}
	R(RNG, STATUS) = 0;
	R(RNG, STATUS) = S_ACK | S_DRIVER;
	R(RNG, DRV_FEAT_SEL) = 1;
	R(RNG, DRV_FEAT) = 1; /* VIRTIO_F_VERSION_1 */
	R(RNG, DRV_FEAT_SEL) = 0;
	R(RNG, DRV_FEAT) = 0;
	R(RNG, STATUS) = S_ACK | S_DRIVER | S_FEATURES_OK;
	R(RNG, QUEUE_SEL) = 0;
	R(RNG, QUEUE_NUM) = QSIZE;
	uint64_t a[3] = {(uint64_t)(uintptr_t)desc, (uint64_t)(uintptr_t)avail,
			 (uint64_t)(uintptr_t)used};
	R(RNG, DESC_LO) = (uint32_t)a[0];
	R(RNG, DESC_HI) = (uint32_t)(a[0] >> 32);
	R(RNG, DRIVER_LO) = (uint32_t)a[1];
	R(RNG, DRIVER_HI) = (uint32_t)(a[1] >> 32);
	R(RNG, DEVICE_LO) = (uint32_t)a[2];
	R(RNG, DEVICE_HI) = (uint32_t)(a[2] >> 32);
	R(RNG, QUEUE_READY) = 1;
	R(RNG, STATUS) = S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK;
	if (R(RNG, STATUS) != (S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK))
		fail("virtio-rng did not go live", R(RNG, STATUS));
}

/* Post the next request: a marker-filled buffer (each slot its own page). */
static void rng_post(void)
{
	uint16_t slot = (uint16_t)(avail_idx % QSIZE);
	uint8_t *b = rbuf[slot];
	for (int i = 0; i < 4096; i++)
		b[i] = MARK;
	desc[slot] = (struct desc){(uint64_t)(uintptr_t)b, 4096, 2 /* WRITE */, 0};
	avail[2 + slot] = slot;
	avail_idx++;
	__asm__ volatile("mfence" ::: "memory");
	avail[1] = avail_idx;
	R(RNG, QUEUE_NOTIFY) = 0;
}

/* Look at the used ring: every request returned must have random bytes
 * (not all marker).  Returns 1 if one came back. */
static int rng_poll(void)
{
	uint16_t idx = (uint16_t)(used[0] >> 16);
	if (idx == used_seen)
		return 0;
	while (used_seen != idx) {
		uint16_t u = (uint16_t)(used_seen % QSIZE);
		uint32_t head = used[1 + 2 * u], len = used[2 + 2 * u];
		if (head >= QSIZE || len == 0 || len > 4096) {
			fail("rng used element", ((uint64_t)head << 32) | len);
		} else {
			const uint8_t *b = rbuf[head];
			uint32_t marks = 0;
			for (uint32_t i = 0; i < len; i++)
				marks += b[i] == MARK;
			if (marks == len)
				fail("rng buffer still all marker (a VMM write was lost)", served);
		}
		used_seen++;
		served++;
	}
	return 1;
}

static int console_byte(void)
{
	if (!(inb(COM1 + 5) & 0x01))
		return 0;
	(void)inb(COM1);
	return 1;
}

int guest_main(void)
{
	rng_setup();
	if (failures) {
		puts_("MIG FAILED\n");
		poweroff();
	}
	rng_post();
	uint64_t gen = 0;
	for (;;) {
		gen++;
		for (uint64_t p = LO; p < HI; p += 4096) {
			volatile uint64_t *w = (volatile uint64_t *)p;
			w[0] = PMAGIC;
			w[1] = gen ^ (p >> 12);
			w[510] = p >> 12;
			w[511] = ~gen;
			if (!(p & 0xfffff) && rng_poll())
				rng_post();
		}
		for (uint64_t p = LO; p < HI; p += 4096) {
			volatile uint64_t *w = (volatile uint64_t *)p;
			if (w[0] != PMAGIC || w[1] != (gen ^ (p >> 12)) || w[510] != p >> 12 ||
			    w[511] != ~gen) {
				/* which page, and the generation it holds against this one */
				fail("page", p);
				if (failures <= 8) {
					puts_("  holds generation ");
					puthex(w[1] ^ (p >> 12));
					puts_(" of ");
					puthex(gen);
					putc_('\n');
				}
			}
		}
		if (gen == 1)
			puts_("MIG READY\n");
		if (!(gen % 8)) {
			puts_("MIG S ");
			putdec(gen);
			putc_('\n');
		}
		if (failures || console_byte())
			break;
	}
	/* the request in flight must come back */
	long i;
	for (i = 0; i < 200000000L && !rng_poll(); i++)
		;
	if (i == 200000000L)
		fail("the rng request in flight never came back", served);
	if (failures) {
		puts_("MIG FAILED\n");
	} else {
		puts_("MIG OK sweeps=");
		putdec(gen);
		puts_(" rng=");
		putdec(served);
		putc_('\n');
	}
	poweroff();
	for (;;)
		__asm__ volatile("hlt");
}
