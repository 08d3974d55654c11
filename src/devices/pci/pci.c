/* SPDX-License-Identifier: MIT */
/*
 * pci.c - PCI bus 0, configuration mechanism #1 and ECAM, the generic
 * function model (config space with write masks, memory BARs mapped on the
 * MMIO bus, capability list) and MSI-X.  See pci.h for the contract.
 */
#include "pci.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../../snapshot/format.h"
#include "../../util/bytes.h"
#include "../../util/str.h"

/* CONFIG_ADDRESS (PCI 3.0 §3.2.2.3.2): bit 31 enable, 23:16 bus, 15:11
 * device, 10:8 function, 7:2 register; 30:24 reserved, 1:0 read 0. */
#define CONFIG_ADDRESS_ENABLE 0x80000000u
#define CONFIG_ADDRESS_MASK 0x80fffffcu
/* Offsets inside the 8-port window */
#define PIO_ADDRESS 0 /* 0xcf8 */
#define PIO_CF9 1     /* 0xcf9: ACPI reset register */
#define PIO_DATA 4    /* 0xcfc */
#define PIO_LEN 8

static uint32_t ones(uint32_t len)
{
	return len >= 4 ? 0xffffffffu : (1u << (8 * len)) - 1;
}

static bool overlaps(uint32_t a, uint32_t alen, uint32_t b, uint32_t blen)
{
	return a < b + blen && b < a + alen;
}

/* ---- config space byte helpers ------------------------------------------ */

/* Store the low n bytes of v little-endian at arr[off..off+n) (cfg or
 * wmask), dropping the bytes that fall outside config space. */
static void cfg_put(uint8_t arr[PCI_CFG_SIZE], uint32_t off, uint32_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++, off++)
		if (off < PCI_CFG_SIZE)
			arr[off] = (uint8_t)(v >> (8 * i));
}

void pci_set8(struct pci_dev *pd, uint32_t off, uint8_t v)
{
	cfg_put(pd->cfg, off, v, 1);
}

void pci_set16(struct pci_dev *pd, uint32_t off, uint16_t v)
{
	cfg_put(pd->cfg, off, v, 2);
}

void pci_set32(struct pci_dev *pd, uint32_t off, uint32_t v)
{
	cfg_put(pd->cfg, off, v, 4);
}

uint8_t pci_get8(const struct pci_dev *pd, uint32_t off)
{
	return off < PCI_CFG_SIZE ? pd->cfg[off] : 0;
}

uint16_t pci_get16(const struct pci_dev *pd, uint32_t off)
{
	return (uint16_t)(pci_get8(pd, off) | pci_get8(pd, off + 1) << 8);
}

uint32_t pci_get32(const struct pci_dev *pd, uint32_t off)
{
	return (uint32_t)pci_get16(pd, off) | (uint32_t)pci_get16(pd, off + 2) << 16;
}

void pci_set_wmask8(struct pci_dev *pd, uint32_t off, uint8_t mask)
{
	cfg_put(pd->wmask, off, mask, 1);
}

void pci_set_wmask16(struct pci_dev *pd, uint32_t off, uint16_t mask)
{
	cfg_put(pd->wmask, off, mask, 2);
}

void pci_set_wmask32(struct pci_dev *pd, uint32_t off, uint32_t mask)
{
	cfg_put(pd->wmask, off, mask, 4);
}

/* ---- function model ----------------------------------------------------- */

static void bar_bus_read(struct bus_dev *bd, uint64_t off, void *data, uint32_t len)
{
	struct pci_bar *b = container_of(bd, struct pci_bar, bd);
	struct pci_dev *pd = b->pd;
	if (pd->ops && pd->ops->bar_read)
		pd->ops->bar_read(pd, b->idx, off, data, len);
	else
		memset(data, 0xff, len);
}

static void bar_bus_write(struct bus_dev *bd, uint64_t off, const void *data, uint32_t len)
{
	struct pci_bar *b = container_of(bd, struct pci_bar, bd);
	struct pci_dev *pd = b->pd;
	if (pd->ops && pd->ops->bar_write)
		pd->ops->bar_write(pd, b->idx, off, data, len);
}

static const struct bus_dev_ops bar_bus_ops = {.read = bar_bus_read, .write = bar_bus_write};

void pci_dev_init(struct pci_dev *pd, const struct pci_dev_ops *ops, const char *name,
		  uint16_t vendor, uint16_t device, uint32_t class_code, uint8_t revision,
		  uint16_t subsys_vendor, uint16_t subsys_id)
{
	memset(pd, 0, sizeof(*pd));
	pd->ops = ops;
	pd->name = name ? name : "pci";
	pd->cap_end = PCI_CAP_START;
	pci_set16(pd, PCI_VENDOR_ID, vendor);
	pci_set16(pd, PCI_DEVICE_ID, device);
	pci_set8(pd, PCI_REVISION_ID, revision);
	pci_set8(pd, PCI_CLASS_PROG, (uint8_t)class_code);
	pci_set16(pd, PCI_CLASS_DEVICE, (uint16_t)(class_code >> 8));
	pci_set8(pd, PCI_HEADER_TYPE, 0); /* type 0, single function */
	pci_set16(pd, PCI_SUBSYSTEM_VENDOR_ID, subsys_vendor);
	pci_set16(pd, PCI_SUBSYSTEM_ID, subsys_id);
	pci_set8(pd, PCI_INTERRUPT_PIN, 0); /* no INTx */
	pci_set_wmask16(pd, PCI_COMMAND, PCI_COMMAND_WMASK);
	pci_set_wmask8(pd, PCI_CACHE_LINE_SIZE, 0xff);
	pci_set_wmask8(pd, PCI_INTERRUPT_LINE, 0xff);
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &pd->bars[i];
		b->pd = pd;
		b->idx = i;
		b->mapped_gpa = PCI_BAR_UNMAPPED;
		b->bd.ops = &bar_bus_ops;
		b->bd.name = pd->name;
	}
}

/* Is BAR slot @bar the upper half of a 64-bit BAR? */
static bool bar_is_upper(const struct pci_dev *pd, int bar)
{
	return bar > 0 && pd->bars[bar - 1].type == PCI_BAR_MEM64;
}

int pci_dev_add_bar(struct pci_dev *pd, int bar, enum pci_bar_type type, uint64_t size,
		    bool prefetch)
{
	if (!pd || pd->bus || bar < 0 || bar >= PCI_NUM_BARS || size < 16 || (size & (size - 1)))
		return -EINVAL;
	if (type != PCI_BAR_MEM32 && type != PCI_BAR_MEM64)
		return -EINVAL;
	if (pd->bars[bar].size || bar_is_upper(pd, bar))
		return -EINVAL;
	if (type == PCI_BAR_MEM32 && size > 0x80000000ULL)
		return -EINVAL;
	if (type == PCI_BAR_MEM64 && (bar + 1 >= PCI_NUM_BARS || pd->bars[bar + 1].size))
		return -EINVAL;
	struct pci_bar *b = &pd->bars[bar];
	b->type = type;
	b->size = size;
	b->prefetch = prefetch;
	uint32_t reg = PCI_BASE_ADDRESS_0 + 4 * (uint32_t)bar;
	uint64_t addr_mask = ~(size - 1) & PCI_BAR_MEM_MASK;
	uint32_t low = (type == PCI_BAR_MEM64 ? PCI_BAR_MEM_TYPE_64 : 0) |
		       (prefetch ? PCI_BAR_MEM_PREFETCH : 0);
	pci_set32(pd, reg, low);
	pci_set_wmask32(pd, reg, (uint32_t)addr_mask);
	if (type == PCI_BAR_MEM64) {
		pci_set32(pd, reg + 4, 0);
		pci_set_wmask32(pd, reg + 4, (uint32_t)(addr_mask >> 32));
	}
	return 0;
}

/* The address programmed into BAR @bar (cfg as it is now). */
static uint64_t bar_addr(const struct pci_dev *pd, int bar)
{
	const struct pci_bar *b = &pd->bars[bar];
	if (!b->size)
		return 0;
	uint32_t reg = PCI_BASE_ADDRESS_0 + 4 * (uint32_t)bar;
	uint64_t a = pci_get32(pd, reg) & PCI_BAR_MEM_MASK;
	if (b->type == PCI_BAR_MEM64)
		a |= (uint64_t)pci_get32(pd, reg + 4) << 32;
	return a;
}

uint64_t pci_bar_address(struct pci_dev *pd, int bar)
{
	if (!pd || bar < 0 || bar >= PCI_NUM_BARS)
		return 0;
	struct pci_bus *pb = pd->bus;
	if (pb)
		pthread_mutex_lock(&pb->lock);
	uint64_t a = bar_addr(pd, bar);
	if (pb)
		pthread_mutex_unlock(&pb->lock);
	return a;
}

int pci_add_cap(struct pci_dev *pd, uint8_t id, uint32_t len, uint8_t *off)
{
	if (!pd || pd->bus || len < 2)
		return -EINVAL;
	uint32_t start = (pd->cap_end + 3u) & ~3u;
	if (start + len > PCI_CFG_SIZE)
		return -ENOSPC;
	memset(&pd->cfg[start], 0, len);
	memset(&pd->wmask[start], 0, len);
	pd->cfg[start] = id;
	pd->cfg[start + 1] = 0; /* end of list */
	if (pd->cap_last)
		pd->cfg[pd->cap_last + 1] = (uint8_t)start;
	else
		pd->cfg[PCI_CAPABILITY_LIST] = (uint8_t)start;
	pci_set16(pd, PCI_STATUS, pci_get16(pd, PCI_STATUS) | PCI_STATUS_CAP_LIST);
	pd->cap_last = (uint8_t)start;
	pd->cap_end = (uint16_t)(start + len);
	if (off)
		*off = (uint8_t)start;
	return 0;
}

/* Put every BAR where cfg says it should be (pb->lock held). */
static void update_bars(struct pci_bus *pb, struct pci_dev *pd, bool force_off)
{
	bool mem_on = !force_off && (pci_get16(pd, PCI_COMMAND) & PCI_COMMAND_MEMORY);
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &pd->bars[i];
		if (!b->size)
			continue;
		uint64_t a = bar_addr(pd, i);
		uint64_t want = PCI_BAR_UNMAPPED;
		/* the window [a, a + size) must end below 2^64, as every bus
		 * window does (bus_register refuses one that would not) */
		if (mem_on && a != 0 && a + b->size > a)
			want = a;
		if (want == b->mapped_gpa)
			continue;
		uint64_t old = b->mapped_gpa;
		if (old != PCI_BAR_UNMAPPED)
			bus_unregister(pb->mmio, &b->bd);
		b->mapped_gpa = PCI_BAR_UNMAPPED;
		if (want != PCI_BAR_UNMAPPED) {
			int r = bus_register(pb->mmio, &b->bd, want, b->size);
			if (r)
				log_ratelimited(&pb->rl, LOG_WARN,
						"pci %s: BAR%d at 0x%llx (0x%llx bytes) not mapped: %s",
						pd->name, i, (unsigned long long)want,
						(unsigned long long)b->size, strerror(-r));
			else
				b->mapped_gpa = want;
		}
		if (b->mapped_gpa != old && pd->ops && pd->ops->bar_mapped)
			pd->ops->bar_mapped(pd, i, old, b->mapped_gpa);
	}
}

/* ---- configuration access ----------------------------------------------- */

static struct pci_dev *lookup(struct pci_bus *pb, uint8_t bus, uint8_t devfn)
{
	if (bus != 0 || (devfn & 7))
		return NULL; /* bus 0, function 0 only */
	return pb->slots[devfn >> 3];
}

static bool cfg_access_ok(uint32_t reg, uint32_t len)
{
	return (len == 1 || len == 2 || len == 4) && reg < PCI_ECAM_FN_SIZE &&
	       (reg & 3) + len <= 4;
}

static void msix_control_written(struct pci_msix *m);

uint32_t pci_cfg_read(struct pci_bus *pb, uint8_t bus, uint8_t devfn, uint32_t reg, uint32_t len)
{
	if (!cfg_access_ok(reg, len))
		return 0xffffffffu;
	uint32_t v = ones(len);
	pthread_mutex_lock(&pb->lock);
	struct pci_dev *pd = lookup(pb, bus, devfn);
	if (pd && reg + len <= PCI_CFG_SIZE) {
		if (pd->ops && pd->ops->cfg_read)
			pd->ops->cfg_read(pd, reg, len);
		v = (uint32_t)get_le(&pd->cfg[reg], len);
	}
	pthread_mutex_unlock(&pb->lock);
	return v;
}

void pci_cfg_write(struct pci_bus *pb, uint8_t bus, uint8_t devfn, uint32_t reg, uint32_t len,
		   uint32_t val)
{
	if (!cfg_access_ok(reg, len))
		return;
	pthread_mutex_lock(&pb->lock);
	struct pci_dev *pd = lookup(pb, bus, devfn);
	if (!pd || reg + len > PCI_CFG_SIZE) {
		pthread_mutex_unlock(&pb->lock);
		return;
	}
	for (uint32_t i = 0; i < len; i++) {
		uint8_t wm = pd->wmask[reg + i];
		uint8_t b = (uint8_t)(val >> (8 * i));
		pd->cfg[reg + i] = (uint8_t)((pd->cfg[reg + i] & ~wm) | (b & wm));
	}
	if (overlaps(reg, len, PCI_COMMAND, 2) ||
	    overlaps(reg, len, PCI_BASE_ADDRESS_0, 4 * PCI_NUM_BARS))
		update_bars(pb, pd, false);
	if (pd->msix && overlaps(reg, len, pd->msix->cap + PCI_MSIX_FLAGS, 2))
		msix_control_written(pd->msix);
	if (pd->ops && pd->ops->cfg_write)
		pd->ops->cfg_write(pd, reg, len);
	pthread_mutex_unlock(&pb->lock);
}

/* Ports 0xcf8-0xcff (see pci.h for the rules). */
static void pio_read(struct bus_dev *bd, uint64_t off, void *data, uint32_t len)
{
	struct pci_bus *pb = container_of(bd, struct pci_bus, pio_dev);
	uint64_t v = 0xffffffffffffffffull;
	if (off == PIO_ADDRESS && len == 4) {
		v = __atomic_load_n(&pb->config_address, __ATOMIC_RELAXED);
	} else if (off >= PIO_DATA && off + len <= PIO_LEN) {
		uint32_t ca = __atomic_load_n(&pb->config_address, __ATOMIC_RELAXED);
		if (ca & CONFIG_ADDRESS_ENABLE)
			v = pci_cfg_read(pb, (uint8_t)(ca >> 16), (uint8_t)(ca >> 8),
					 (ca & 0xfc) + (uint32_t)(off - PIO_DATA), len);
	} else if (off == PIO_CF9 && len == 1 && pb->cf9_write) {
		v = 0; /* the reset register reads 0 */
	}
	put_le(data, v, len);
}

static void pio_write(struct bus_dev *bd, uint64_t off, const void *data, uint32_t len)
{
	struct pci_bus *pb = container_of(bd, struct pci_bus, pio_dev);
	uint32_t v = (uint32_t)get_le(data, len);
	if (off == PIO_ADDRESS && len == 4) {
		__atomic_store_n(&pb->config_address, v & CONFIG_ADDRESS_MASK, __ATOMIC_RELAXED);
	} else if (off >= PIO_DATA && off + len <= PIO_LEN) {
		uint32_t ca = __atomic_load_n(&pb->config_address, __ATOMIC_RELAXED);
		if (ca & CONFIG_ADDRESS_ENABLE)
			pci_cfg_write(pb, (uint8_t)(ca >> 16), (uint8_t)(ca >> 8),
				      (ca & 0xfc) + (uint32_t)(off - PIO_DATA), len, v);
	} else if (off == PIO_CF9 && len == 1 && pb->cf9_write) {
		pb->cf9_write(pb->cf9_ctx, (uint8_t)v);
	}
	/* anything else (byte/word at 0xcf8-0xcfb, straddling): ignored */
}

static const struct bus_dev_ops pio_ops = {.read = pio_read, .write = pio_write};

/* ECAM: offset = bus << 20 | devfn << 12 | reg. */
static void ecam_read(struct bus_dev *bd, uint64_t off, void *data, uint32_t len)
{
	struct pci_bus *pb = container_of(bd, struct pci_bus, ecam_dev);
	uint8_t bus = (uint8_t)(off >> 20), devfn = (uint8_t)(off >> 12);
	uint32_t reg = (uint32_t)(off & (PCI_ECAM_FN_SIZE - 1));
	uint64_t v = 0xffffffffffffffffull;
	if (off >> 28) {
		/* beyond 256 buses: cannot happen with a <= 256 MiB window */
	} else if (len == 8 && !(reg & 7)) {
		v = pci_cfg_read(pb, bus, devfn, reg, 4) |
		    (uint64_t)pci_cfg_read(pb, bus, devfn, reg + 4, 4) << 32;
	} else if ((len == 1 || len == 2 || len == 4) && !(reg & (len - 1))) {
		v = pci_cfg_read(pb, bus, devfn, reg, len);
	}
	put_le(data, v, len);
}

static void ecam_write(struct bus_dev *bd, uint64_t off, const void *data, uint32_t len)
{
	struct pci_bus *pb = container_of(bd, struct pci_bus, ecam_dev);
	uint8_t bus = (uint8_t)(off >> 20), devfn = (uint8_t)(off >> 12);
	uint32_t reg = (uint32_t)(off & (PCI_ECAM_FN_SIZE - 1));
	uint64_t v = get_le(data, len);
	if (off >> 28)
		return;
	if (len == 8 && !(reg & 7)) {
		pci_cfg_write(pb, bus, devfn, reg, 4, (uint32_t)v);
		pci_cfg_write(pb, bus, devfn, reg + 4, 4, (uint32_t)(v >> 32));
	} else if ((len == 1 || len == 2 || len == 4) && !(reg & (len - 1))) {
		pci_cfg_write(pb, bus, devfn, reg, len, (uint32_t)v);
	}
}

static const struct bus_dev_ops ecam_ops = {.read = ecam_read, .write = ecam_write};

/* ---- bus ---------------------------------------------------------------- */

int pci_bus_init(struct pci_bus *pb, struct bus *mmio, uint64_t mem_base, uint64_t mem_size,
		 void (*cf9_write)(void *ctx, uint8_t val), void *cf9_ctx)
{
	if (!pb || !mmio || mem_size == 0 || mem_base + mem_size < mem_base)
		return -EINVAL;
	memset(pb, 0, sizeof(*pb));
	int r = pthread_mutex_init(&pb->lock, NULL);
	if (r)
		return -r;
	pb->mmio = mmio;
	pb->mem_next = mem_base;
	pb->mem_end = mem_base + mem_size;
	pb->cf9_write = cf9_write;
	pb->cf9_ctx = cf9_ctx;
	pb->pio_dev.ops = &pio_ops;
	pb->pio_dev.name = "pci-config";
	pb->ecam_dev.ops = &ecam_ops;
	pb->ecam_dev.name = "pci-ecam";
	pci_dev_init(&pb->host, NULL, "pci-host", PCI_HOST_BRIDGE_VENDOR, PCI_HOST_BRIDGE_DEVICE,
		     PCI_CLASS_BRIDGE_HOST, 0, 0, 0);
	pb->host.bus = pb;
	pb->host.devfn = PCI_DEVFN(0, 0);
	pb->slots[0] = &pb->host;
	return 0;
}

void pci_bus_destroy(struct pci_bus *pb)
{
	if (!pb || !pb->mmio)
		return;
	pthread_mutex_lock(&pb->lock);
	for (int s = 0; s < PCI_MAX_SLOTS; s++) {
		struct pci_dev *pd = pb->slots[s];
		if (!pd)
			continue;
		update_bars(pb, pd, true);
		pd->bus = NULL; /* a later pci_bus_remove/virtio_pci_destroy skips it */
		pb->slots[s] = NULL;
	}
	pthread_mutex_unlock(&pb->lock);
	pthread_mutex_destroy(&pb->lock);
	pb->mmio = NULL;
}

int pci_bus_add(struct pci_bus *pb, struct pci_dev *pd, int slot)
{
	if (!pb || !pd || pd->bus || slot < -1 || slot == 0 || slot >= PCI_MAX_SLOTS)
		return -EINVAL;
	int r = 0;
	pthread_mutex_lock(&pb->lock);
	if (slot < 0) {
		for (int s = 1; s < PCI_MAX_SLOTS && slot < 0; s++)
			if (!pb->slots[s])
				slot = s;
		if (slot < 0) {
			r = -ENOSPC;
			goto out;
		}
	} else if (pb->slots[slot]) {
		r = -EBUSY;
		goto out;
	}
	/* Pre-assign BARs like firmware: naturally aligned, in order. */
	uint64_t next = pb->mem_next, addr[PCI_NUM_BARS] = {0};
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		uint64_t size = pd->bars[i].size;
		if (!size)
			continue;
		uint64_t a = (next + size - 1) & ~(size - 1);
		if (a < next || a > pb->mem_end || size > pb->mem_end - a) {
			r = -ENOSPC;
			goto out;
		}
		addr[i] = a;
		next = a + size;
	}
	for (int i = 0; i < PCI_NUM_BARS; i++) {
		if (!pd->bars[i].size)
			continue;
		uint32_t reg = PCI_BASE_ADDRESS_0 + 4 * (uint32_t)i;
		pci_set32(pd, reg, (pci_get32(pd, reg) & ~(uint32_t)PCI_BAR_MEM_MASK) |
					   ((uint32_t)addr[i] & (uint32_t)PCI_BAR_MEM_MASK));
		if (pd->bars[i].type == PCI_BAR_MEM64)
			pci_set32(pd, reg + 4, (uint32_t)(addr[i] >> 32));
	}
	pb->mem_next = next;
	pd->bus = pb;
	pd->devfn = PCI_DEVFN(slot, 0);
	pb->slots[slot] = pd;
	update_bars(pb, pd, false); /* nothing while COMMAND.MEMORY is 0 */
	r = slot;
out:
	pthread_mutex_unlock(&pb->lock);
	return r;
}

void pci_bus_remove(struct pci_bus *pb, struct pci_dev *pd)
{
	if (!pb || !pd || pd->bus != pb || pd == &pb->host)
		return;
	pthread_mutex_lock(&pb->lock);
	update_bars(pb, pd, true);
	pb->slots[pd->devfn >> 3] = NULL;
	pd->bus = NULL;
	pthread_mutex_unlock(&pb->lock);
}

/* ---- MSI-X -------------------------------------------------------------- */

/*
 * Routes and threads (see pci.h, "Delivery"): every vector gets its route
 * at init; a route is brought up to date (msi_update) only by the loop
 * thread through m->work - or by the calling thread when the platform
 * cannot defer.  The route's eventfd is written only while the route
 * delivers exactly the entry's message; an interrupt that finds it stale
 * is marked in m->deferred and delivered by the loop after the update.
 */

static bool bit_get(const uint64_t *bits, uint16_t v)
{
	return (bits[v / 64] >> (v % 64)) & 1;
}

static void bit_set(uint64_t *bits, uint16_t v, bool on)
{
	if (on)
		bits[v / 64] |= 1ull << (v % 64);
	else
		bits[v / 64] &= ~(1ull << (v % 64));
}

static bool deliverable(const struct pci_msix *m, uint16_t v)
{
	return m->enabled && !m->masked && !(m->vec[v].ctrl & PCI_MSIX_ENTRY_CTRL_MASK);
}

static uint64_t vec_addr(const struct pci_msix_vector *e)
{
	return (uint64_t)e->addr_hi << 32 | e->addr_lo;
}

/* Does the route deliver exactly the entry's message now? */
static bool route_current(const struct pci_msix_vector *e)
{
	return e->handle >= 0 && e->routed && e->route_addr == vec_addr(e) &&
	       e->route_data == e->data;
}

/* Should the route be reprogrammed for the entry? */
static bool needs_update(const struct pci_msix *m, const struct pci_msix_vector *e)
{
	return e->handle >= 0 && !route_current(e) && !e->route_failed && m->p && m->p->ops &&
	       m->p->ops->msi_update;
}

/* Send vector @v's message the slow way (m->lock held; the loop thread,
 * or the calling thread without deferral). */
static int send_locked(struct pci_msix *m, uint16_t v)
{
	struct pci_msix_vector *e = &m->vec[v];
	int r = -ENOSYS;
	if (m->p && m->p->ops && m->p->ops->msi_send)
		r = m->p->ops->msi_send(m->p, vec_addr(e), e->data);
	if (r) {
		m->send_errors++;
		log_ratelimited(&m->rl, LOG_WARN, "pci %s: MSI-X vector %u not delivered: %s",
				m->pd->name, v, strerror(-r));
	} else {
		m->delivered++;
	}
	return r;
}

/* Write vector @v's route eventfd (the route is current; m->lock held;
 * any thread).  False if the eventfd could not be written. */
static bool write_route(struct pci_msix *m, uint16_t v)
{
	uint64_t one = 1;
	ssize_t n = write(m->vec[v].fd, &one, sizeof(one));
	/* EAGAIN: the counter is saturated, an interrupt is due anyway */
	if (n == (ssize_t)sizeof(one) || (n < 0 && errno == EAGAIN)) {
		m->delivered++;
		return true;
	}
	return false;
}

/* Program vector @v's route with its entry (m->lock held; the loop
 * thread, or the calling thread without deferral).  A failure is logged
 * and remembered until the entry changes; the vector then goes out with
 * msi_send. */
static void update_route_locked(struct pci_msix *m, uint16_t v)
{
	struct pci_msix_vector *e = &m->vec[v];
	if (!needs_update(m, e))
		return;
	int r = m->p->ops->msi_update(m->p, e->handle, vec_addr(e), e->data);
	if (r) {
		e->route_failed = true;
		log_ratelimited(&m->rl, LOG_WARN,
				"pci %s: MSI route of vector %u not updated (%s); using slow path",
				m->pd->name, v, strerror(-r));
		return;
	}
	e->routed = true;
	e->route_addr = vec_addr(e);
	e->route_data = e->data;
}

/* Deliver vector @v now: through its route when that is current, else
 * msi_send (m->lock held; the loop thread, or the calling thread without
 * deferral). */
static int deliver_locked(struct pci_msix *m, uint16_t v)
{
	if (route_current(&m->vec[v]) && write_route(m, v))
		return 0;
	return send_locked(m, v);
}

/* The loop's part (m->lock held): update the routes of deliverable
 * vectors, then deliver what waited for that - with the entry's message
 * as it is now (the newest the guest wrote), or make it pending if the
 * guest masked the vector meanwhile, or drop it if MSI-X is off. */
static void sync_locked(struct pci_msix *m)
{
	for (uint16_t v = 0; v < m->nvec; v++) {
		bool waiting = bit_get(m->deferred, v);
		if (waiting || deliverable(m, v))
			update_route_locked(m, v);
		if (!waiting)
			continue;
		bit_set(m->deferred, v, false);
		if (!m->enabled) {
			m->dropped++;
		} else if (!deliverable(m, v)) {
			bit_set(m->pba, v, true);
			m->pended++;
		} else {
			deliver_locked(m, v);
		}
	}
}

static void msix_work(struct platform_work *w)
{
	struct pci_msix *m = container_of(w, struct pci_msix, work);
	pthread_mutex_lock(&m->lock);
	sync_locked(m);
	pthread_mutex_unlock(&m->lock);
}

/* After a table or control write (m->lock held, a vCPU): a deliverable
 * vector whose route is stale gets it updated - by the loop, or here
 * without deferral - so that its next interrupt finds it current. */
static void kick_locked(struct pci_msix *m)
{
	bool stale = false;
	for (uint16_t v = 0; v < m->nvec && !stale; v++)
		stale = deliverable(m, v) && needs_update(m, &m->vec[v]);
	if (stale && platform_defer(m->p, &m->work))
		for (uint16_t v = 0; v < m->nvec; v++)
			if (deliverable(m, v))
				update_route_locked(m, v);
}

/* Deliver vector @v, which is deliverable (m->lock held; any thread).
 * Only an eventfd write: through the route if it is current, else the
 * loop is asked to update it and deliver (the rule above).  Without
 * deferral the route is updated and the message sent right here. */
static int fire_locked(struct pci_msix *m, uint16_t v)
{
	if (route_current(&m->vec[v]) && write_route(m, v))
		return 0;
	bool was = bit_get(m->deferred, v);
	bit_set(m->deferred, v, true);
	if (platform_defer(m->p, &m->work) == 0) {
		m->via_loop++;
		return 0;
	}
	bit_set(m->deferred, v, was);
	update_route_locked(m, v);
	return deliver_locked(m, v);
}

/* Fire what became deliverable and is pending (m->lock held). */
static void flush_pending_locked(struct pci_msix *m)
{
	for (uint16_t v = 0; v < m->nvec; v++) {
		if (bit_get(m->pba, v) && deliverable(m, v)) {
			bit_set(m->pba, v, false);
			fire_locked(m, v);
		}
	}
}

/* Take enable and function mask from the control word in config space,
 * then bring routes up to date and fire what became deliverable (pb->lock
 * and m->lock held). */
static void control_apply_locked(struct pci_msix *m)
{
	uint16_t ctl = pci_get16(m->pd, m->cap + PCI_MSIX_FLAGS);
	m->enabled = ctl & PCI_MSIX_FLAGS_ENABLE;
	m->masked = ctl & PCI_MSIX_FLAGS_MASKALL;
	kick_locked(m);
	flush_pending_locked(m);
}

/* The guest wrote the message control word (pb->lock held). */
static void msix_control_written(struct pci_msix *m)
{
	pthread_mutex_lock(&m->lock);
	control_apply_locked(m);
	pthread_mutex_unlock(&m->lock);
}

int pci_msix_init(struct pci_msix *m, struct pci_dev *pd, struct platform *p, uint16_t nvec,
		  int bar, uint32_t table_off, uint32_t pba_off)
{
	if (!m || !pd || pd->bus || nvec == 0 || nvec > PCI_MSIX_MAX_VECTORS || bar < 0 ||
	    bar >= PCI_NUM_BARS || !pd->bars[bar].size || (table_off & 7) || (pba_off & 7))
		return -EINVAL;
	uint64_t size = pd->bars[bar].size;
	if ((uint64_t)table_off + PCI_MSIX_TABLE_SIZE(nvec) > size ||
	    (uint64_t)pba_off + PCI_MSIX_PBA_SIZE(nvec) > size ||
	    overlaps(table_off, PCI_MSIX_TABLE_SIZE(nvec), pba_off, PCI_MSIX_PBA_SIZE(nvec)))
		return -EINVAL;
	memset(m, 0, sizeof(*m));
	uint8_t cap;
	int r = pci_add_cap(pd, PCI_CAP_ID_MSIX, PCI_MSIX_CAP_LEN, &cap);
	if (r)
		return r;
	r = pthread_mutex_init(&m->lock, NULL);
	if (r)
		return -r;
	m->pd = pd;
	m->p = p;
	m->nvec = nvec;
	m->cap = cap;
	m->work.fn = msix_work;
	for (int i = 0; i < PCI_MSIX_MAX_VECTORS; i++) {
		m->vec[i].ctrl = PCI_MSIX_ENTRY_CTRL_MASK;
		m->vec[i].handle = -1;
		m->vec[i].fd = -1;
	}
	pci_set16(pd, cap + PCI_MSIX_FLAGS, (uint16_t)(nvec - 1));
	pci_set_wmask16(pd, cap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	pci_set32(pd, cap + PCI_MSIX_TABLE, table_off | (uint32_t)bar);
	pci_set32(pd, cap + PCI_MSIX_PBA, pba_off | (uint32_t)bar);
	pd->msix = m;
	/* Every route now (boot time), delivering nothing until the loop
	 * gives it the entry's message.  Without one a vector still works,
	 * through msi_send on the loop. */
	for (uint16_t v = 0; v < nvec && p && p->ops && p->ops->msi_alloc; v++) {
		int h = -1, fd = -1;
		r = p->ops->msi_alloc(p, &h, &fd);
		if (r) {
			log_warn("pci %s: no MSI route for vectors %u-%u (%s); using the slow path",
				 pd->name, v, nvec - 1, strerror(-r));
			break;
		}
		m->vec[v].handle = h;
		m->vec[v].fd = fd;
	}
	return 0;
}

void pci_msix_destroy(struct pci_msix *m)
{
	if (!m || !m->pd)
		return;
	platform_defer_cancel(m->p, &m->work);
	for (int i = 0; i < m->nvec; i++) {
		if (m->vec[i].handle >= 0 && m->p && m->p->ops && m->p->ops->msi_free)
			m->p->ops->msi_free(m->p, m->vec[i].handle);
		m->vec[i].handle = -1;
		m->vec[i].fd = -1;
	}
	pthread_mutex_destroy(&m->lock);
	if (m->pd->msix == m)
		m->pd->msix = NULL;
	m->pd = NULL;
}

/* Table and PBA accept dword-aligned dwords and qword-aligned qwords. */
static bool msix_access_ok(uint64_t off, uint32_t len)
{
	return (len == 4 && !(off & 3)) || (len == 8 && !(off & 7));
}

static uint32_t table_read32(const struct pci_msix *m, uint64_t off)
{
	uint64_t e = off / PCI_MSIX_ENTRY_SIZE;
	if (e >= m->nvec)
		return 0;
	const struct pci_msix_vector *v = &m->vec[e];
	switch (off % PCI_MSIX_ENTRY_SIZE) {
	case PCI_MSIX_ENTRY_ADDR_LO:
		return v->addr_lo;
	case PCI_MSIX_ENTRY_ADDR_HI:
		return v->addr_hi;
	case PCI_MSIX_ENTRY_DATA:
		return v->data;
	default:
		return v->ctrl;
	}
}

static void table_write32(struct pci_msix *m, uint64_t off, uint32_t val)
{
	uint64_t e = off / PCI_MSIX_ENTRY_SIZE;
	if (e >= m->nvec)
		return;
	struct pci_msix_vector *v = &m->vec[e];
	uint64_t addr = vec_addr(v);
	uint32_t data = v->data;
	switch (off % PCI_MSIX_ENTRY_SIZE) {
	case PCI_MSIX_ENTRY_ADDR_LO:
		v->addr_lo = val & ~3u; /* dword aligned (§6.8.2.4) */
		break;
	case PCI_MSIX_ENTRY_ADDR_HI:
		v->addr_hi = val;
		break;
	case PCI_MSIX_ENTRY_DATA:
		v->data = val;
		break;
	default:
		v->ctrl = val & PCI_MSIX_ENTRY_CTRL_MASK;
		break;
	}
	if (vec_addr(v) != addr || v->data != data)
		v->route_failed = false; /* a new message: worth another try */
}

void pci_msix_table_read(struct pci_msix *m, uint64_t off, void *data, uint32_t len)
{
	uint64_t v = 0;
	if (msix_access_ok(off, len)) {
		pthread_mutex_lock(&m->lock);
		v = table_read32(m, off);
		if (len == 8)
			v |= (uint64_t)table_read32(m, off + 4) << 32;
		pthread_mutex_unlock(&m->lock);
	}
	put_le(data, v, len);
}

void pci_msix_table_write(struct pci_msix *m, uint64_t off, const void *data, uint32_t len)
{
	if (!msix_access_ok(off, len))
		return;
	uint64_t v = get_le(data, len);
	pthread_mutex_lock(&m->lock);
	table_write32(m, off, (uint32_t)v);
	if (len == 8)
		table_write32(m, off + 4, (uint32_t)(v >> 32));
	kick_locked(m);
	flush_pending_locked(m);
	pthread_mutex_unlock(&m->lock);
}

void pci_msix_pba_read(struct pci_msix *m, uint64_t off, void *data, uint32_t len)
{
	uint64_t v = 0;
	if (msix_access_ok(off, len) && off < PCI_MSIX_PBA_SIZE(m->nvec)) {
		pthread_mutex_lock(&m->lock);
		v = m->pba[off / 8];
		pthread_mutex_unlock(&m->lock);
		if (len == 4)
			v = (uint32_t)(v >> (8 * (off & 4)));
	}
	put_le(data, v, len);
}

int pci_msix_notify(struct pci_msix *m, uint16_t vec)
{
	if (!m || vec >= m->nvec)
		return -EINVAL;
	int r = 0;
	pthread_mutex_lock(&m->lock);
	if (!m->enabled) {
		m->dropped++;
		r = -ENODEV;
	} else if (!deliverable(m, vec)) {
		bit_set(m->pba, vec, true);
		m->pended++;
	} else {
		r = fire_locked(m, vec);
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

bool pci_msix_enabled(struct pci_msix *m)
{
	if (!m)
		return false;
	pthread_mutex_lock(&m->lock);
	bool on = m->enabled;
	pthread_mutex_unlock(&m->lock);
	return on;
}

/* ---- snapshot state ------------------------------------------------------- */

#define PBA_WORDS(nvec) (((uint32_t)(nvec) + 63) / 64)

/* Eight bytes of a configuration space (or its write mask) from @off. */
_Static_assert(PCI_CFG_SIZE % 8 == 0, "configuration space in 8-byte words");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "a word's lowest byte is its first");
static uint64_t cfg_word(const uint8_t *b, uint32_t off)
{
	uint64_t v;
	memcpy(&v, b + off, sizeof(v));
	return v;
}

void pci_dev_state_get(struct pci_dev *pd, struct pci_dev_state *st)
{
	memset(st, 0, sizeof(*st));
	struct pci_bus *pb = pd->bus;
	if (pb)
		pthread_mutex_lock(&pb->lock);
	memcpy(st->cfg, pd->cfg, PCI_CFG_SIZE);
	struct pci_msix *m = pd->msix;
	if (m) {
		pthread_mutex_lock(&m->lock);
		st->nvec = m->nvec;
		for (uint16_t v = 0; v < m->nvec; v++) {
			st->vec[v].addr_lo = m->vec[v].addr_lo;
			st->vec[v].addr_hi = m->vec[v].addr_hi;
			st->vec[v].data = m->vec[v].data;
			st->vec[v].ctrl = m->vec[v].ctrl;
		}
		for (uint32_t i = 0; i < PBA_WORDS(m->nvec); i++)
			st->pba[i] = m->pba[i];
		/* an interrupt waiting for the loop: the loop would deliver it
		 * (or make it pending) unless MSI-X is off, when it drops it;
		 * saved as pending, put delivers it */
		for (uint16_t v = 0; v < m->nvec && m->enabled; v++)
			if (bit_get(m->deferred, v))
				bit_set(st->pba, v, true);
		pthread_mutex_unlock(&m->lock);
	}
	if (pb)
		pthread_mutex_unlock(&pb->lock);
}

void pci_dev_state_encode(const struct pci_dev_state *st, struct snap_writer *w)
{
	snap_put_bytes(w, st->cfg, PCI_CFG_SIZE);
	snap_put_u16(w, st->nvec);
	for (uint16_t v = 0; v < st->nvec && v < PCI_MSIX_MAX_VECTORS; v++) {
		snap_put_u32(w, st->vec[v].addr_lo);
		snap_put_u32(w, st->vec[v].addr_hi);
		snap_put_u32(w, st->vec[v].data);
		snap_put_u32(w, st->vec[v].ctrl);
	}
	for (uint32_t i = 0; i < PBA_WORDS(st->nvec) && i < PBA_WORDS(PCI_MSIX_MAX_VECTORS); i++)
		snap_put_u64(w, st->pba[i]);
}

/* Name config byte @off of @pd for a message ("device ID", "BAR2",
 * "capability 0x11 at 0x40", ...). */
static void cfg_field_name(const struct pci_dev *pd, uint32_t off, char *buf, size_t n)
{
	static const struct {
		uint8_t off, len;
		const char *name;
	} hdr[] = {
		{PCI_VENDOR_ID, 2, "vendor ID"},
		{PCI_DEVICE_ID, 2, "device ID"},
		{PCI_COMMAND, 2, "command"},
		{PCI_STATUS, 2, "status"},
		{PCI_REVISION_ID, 1, "revision ID"},
		{PCI_CLASS_PROG, 3, "class code"},
		{PCI_CACHE_LINE_SIZE, 1, "cache line size"},
		{PCI_LATENCY_TIMER, 1, "latency timer"},
		{PCI_HEADER_TYPE, 1, "header type"},
		{PCI_BIST, 1, "BIST"},
		{PCI_CARDBUS_CIS, 4, "CardBus CIS pointer"},
		{PCI_SUBSYSTEM_VENDOR_ID, 2, "subsystem vendor ID"},
		{PCI_SUBSYSTEM_ID, 2, "subsystem ID"},
		{PCI_ROM_ADDRESS, 4, "expansion ROM BAR"},
		{PCI_CAPABILITY_LIST, 1, "capability pointer"},
		{PCI_INTERRUPT_LINE, 1, "interrupt line"},
		{PCI_INTERRUPT_PIN, 1, "interrupt pin"},
		{PCI_MIN_GNT, 1, "min grant"},
		{PCI_MAX_LAT, 1, "max latency"},
	};
	if (off >= PCI_BASE_ADDRESS_0 && off < PCI_BASE_ADDRESS_0 + 4 * PCI_NUM_BARS) {
		snprintf(buf, n, "BAR%u", (off - PCI_BASE_ADDRESS_0) / 4);
		return;
	}
	for (size_t i = 0; i < sizeof(hdr) / sizeof(hdr[0]); i++) {
		if (off >= hdr[i].off && off < (uint32_t)hdr[i].off + hdr[i].len) {
			snprintf(buf, n, "%s", hdr[i].name);
			return;
		}
	}
	if (off < PCI_CAP_START) {
		snprintf(buf, n, "reserved header byte");
		return;
	}
	/* capabilities were appended in ascending order (pci_add_cap): the
	 * one holding @off is the last starting at or before it */
	uint32_t cap = 0;
	for (uint32_t p = pd->cfg[PCI_CAPABILITY_LIST], hops = 0;
	     p >= PCI_CAP_START && p + 1 < PCI_CFG_SIZE && hops < PCI_CFG_SIZE / 4;
	     p = pd->cfg[p + 1], hops++)
		if (p <= off)
			cap = p;
	if (cap && off < pd->cap_end)
		snprintf(buf, n, "capability 0x%02x at 0x%02x", pd->cfg[cap], cap);
	else
		snprintf(buf, n, "unused");
}

int pci_dev_state_decode(struct snap_cursor *c, const struct pci_dev *pd, struct pci_dev_state *st,
			 char *err, size_t errlen)
{
	memset(st, 0, sizeof(*st));
	snap_get_bytes(c, st->cfg, PCI_CFG_SIZE);
	st->nvec = snap_get_u16(c);
	if (c->overrun)
		return err_set(err, errlen, -EINVAL, "pci config space truncated");
	uint16_t nvec = pd->msix ? pd->msix->nvec : 0;
	if (st->nvec != nvec)
		return err_set(err, errlen, -EINVAL, "MSI-X: %u vectors saved, this device has %u",
			       st->nvec, nvec);
	for (uint16_t v = 0; v < st->nvec; v++) {
		st->vec[v].addr_lo = snap_get_u32(c);
		st->vec[v].addr_hi = snap_get_u32(c);
		st->vec[v].data = snap_get_u32(c);
		st->vec[v].ctrl = snap_get_u32(c);
	}
	for (uint32_t i = 0; i < PBA_WORDS(st->nvec); i++)
		st->pba[i] = snap_get_u64(c);
	if (c->overrun)
		return err_set(err, errlen, -EINVAL, "MSI-X state truncated");
	/* only what config writes can change: the bits of wmask (eight
	 * bytes at a time; the first differing byte is named: the lowest
	 * set bit's, the words being little-endian) */
	for (uint32_t w = 0; w < PCI_CFG_SIZE; w += 8) {
		uint64_t bad = (cfg_word(st->cfg, w) ^ cfg_word(pd->cfg, w)) &
			       ~cfg_word(pd->wmask, w);
		if (!bad)
			continue;
		uint32_t off = w + (uint32_t)__builtin_ctzll(bad) / 8;
		char name[48];
		cfg_field_name(pd, off, name, sizeof(name));
		return err_set(err, errlen, -EINVAL,
			       "pci config byte 0x%02x (%s) is 0x%02x: its read-only bits (0x%02x) "
			       "differ from this device's 0x%02x",
			       off, name, st->cfg[off], (uint8_t)~pd->wmask[off], pd->cfg[off]);
	}
	/* entries as a table write leaves them */
	for (uint16_t v = 0; v < st->nvec; v++) {
		if (st->vec[v].addr_lo & 3u)
			return err_set(err, errlen, -EINVAL,
				       "MSI-X vector %u: message address low 0x%08x has bits 1:0 set", v,
				       st->vec[v].addr_lo);
		if (st->vec[v].ctrl & ~PCI_MSIX_ENTRY_CTRL_MASK)
			return err_set(err, errlen, -EINVAL,
				       "MSI-X vector %u: vector control 0x%08x has reserved bits set", v,
				       st->vec[v].ctrl);
	}
	for (uint32_t i = 0; i < PBA_WORDS(st->nvec); i++) {
		uint32_t below = st->nvec - 64 * i; /* vectors this word covers */
		uint64_t valid = below >= 64 ? ~0ull : (1ull << below) - 1;
		if (st->pba[i] & ~valid)
			return err_set(err, errlen, -EINVAL,
				       "MSI-X PBA word %u: pending bits 0x%016llx at or above vector %u",
				       i, (unsigned long long)(st->pba[i] & ~valid), st->nvec);
	}
	return 0;
}

int pci_dev_state_put(struct pci_dev *pd, const struct pci_dev_state *st)
{
	struct pci_msix *m = pd->msix;
	if (st->nvec != (m ? m->nvec : 0))
		return -EINVAL;
	struct pci_bus *pb = pd->bus;
	if (pb)
		pthread_mutex_lock(&pb->lock);
	/* through the write mask, like a guest's config write: read-only
	 * bits stay this device's whatever @st holds */
	for (uint32_t w = 0; w < PCI_CFG_SIZE; w += 8) {
		uint64_t wm = cfg_word(pd->wmask, w);
		uint64_t v = (cfg_word(pd->cfg, w) & ~wm) | (cfg_word(st->cfg, w) & wm);
		memcpy(pd->cfg + w, &v, sizeof(v));
	}
	if (pb)
		update_bars(pb, pd, false);
	if (m) {
		pthread_mutex_lock(&m->lock);
		for (uint16_t v = 0; v < m->nvec; v++) {
			struct pci_msix_vector *e = &m->vec[v];
			e->addr_lo = st->vec[v].addr_lo & ~3u;
			e->addr_hi = st->vec[v].addr_hi;
			e->data = st->vec[v].data;
			e->ctrl = st->vec[v].ctrl & PCI_MSIX_ENTRY_CTRL_MASK;
			e->route_failed = false; /* a new message: worth a try */
		}
		for (uint32_t i = 0; i < PBA_WORDS(PCI_MSIX_MAX_VECTORS); i++) {
			m->pba[i] = i < PBA_WORDS(m->nvec) ? st->pba[i] : 0;
			m->deferred[i] = 0;
		}
		for (uint16_t v = m->nvec; v < 64 * PBA_WORDS(m->nvec); v++)
			bit_set(m->pba, v, false);
		/* as after a control write: routes of deliverable vectors
		 * updated (the loop, or here), pending deliverable ones fired */
		control_apply_locked(m);
		pthread_mutex_unlock(&m->lock);
	}
	if (pb)
		pthread_mutex_unlock(&pb->lock);
	return 0;
}

void pci_bus_state_get(struct pci_bus *pb, struct pci_bus_state *st)
{
	memset(st, 0, sizeof(*st));
	st->config_address = __atomic_load_n(&pb->config_address, __ATOMIC_RELAXED);
	pci_dev_state_get(&pb->host, &st->host);
}

void pci_bus_state_encode(const struct pci_bus_state *st, struct snap_writer *w)
{
	snap_put_u32(w, st->config_address);
	pci_dev_state_encode(&st->host, w);
}

int pci_bus_state_decode(struct snap_cursor *c, const struct pci_bus *pb,
			 struct pci_bus_state *st, char *err, size_t errlen)
{
	memset(st, 0, sizeof(*st));
	st->config_address = snap_get_u32(c);
	if (c->overrun)
		return err_set(err, errlen, -EINVAL, "pci bus state truncated");
	if (st->config_address & ~CONFIG_ADDRESS_MASK)
		return err_set(err, errlen, -EINVAL,
			       "pci CONFIG_ADDRESS 0x%08x has bits set that the register keeps 0",
			       st->config_address);
	return pci_dev_state_decode(c, &pb->host, &st->host, err, errlen);
}

int pci_bus_state_put(struct pci_bus *pb, const struct pci_bus_state *st)
{
	__atomic_store_n(&pb->config_address, st->config_address & CONFIG_ADDRESS_MASK,
			 __ATOMIC_RELAXED);
	return pci_dev_state_put(&pb->host, &st->host);
}
