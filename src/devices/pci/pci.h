/* SPDX-License-Identifier: MIT */
/*
 * pci.h - PCI bus 0 with a host bridge, a generic PCI function model and
 * MSI-X (PCI Local Bus 3.0, PCIe base ECAM, PCI 3.0 §6.8.2 MSI-X).
 *
 * The bus
 * -------
 * One segment, bus 0, up to PCI_MAX_SLOTS devices, function 0 only (every
 * header type reads 0x00: single-function).  Device 0 is the host bridge:
 * vendor PCI_HOST_BRIDGE_VENDOR:PCI_HOST_BRIDGE_DEVICE (0x1b36:0x0008,
 * the ID Red Hat assigned to QEMU's generic PCIe host bridge; visor owns
 * no PCI-SIG vendor ID and no Linux quirk matches it), class 0x060000, no
 * BARs.  Linux's type-1 probe (pci_check_type1 -> pci_sanity_check) needs
 * exactly this: CONFIG_ADDRESS reading back 0x80000000 and a device of
 * class "host bridge" on bus 0.
 *
 * Configuration space is reachable two ways, both under pb->lock:
 *
 *   pio_dev   I/O ports 0xcf8-0xcff (mechanism #1), register it at
 *             PORT_PCI_CONFIG, PORT_PCI_CONFIG_LEN:
 *     0xcf8  CONFIG_ADDRESS: only a 32-bit access at 0xcf8 reads/writes it
 *            (bit 31 enable, 23:16 bus, 15:11 device, 10:8 function, 7:2
 *            register; bits 30:24 and 1:0 read 0).  Byte and word accesses
 *            to 0xcf8-0xcfb are NOT address writes (Linux's probe writes a
 *            byte to 0xcfb first): writes are ignored, reads return 0xff
 *            bytes - except a 1-byte access at 0xcf9 (the ACPI reset
 *            register, which lives inside this range): a write is passed
 *            to the cf9_write callback, a read returns 0 (the value the
 *            ACPI PM device's reset register reads).
 *     0xcfc-0xcff  CONFIG_DATA: any width at any offset that stays inside
 *            the four ports; reaches register (address & 0xfc) + (port -
 *            0xcfc).  With the enable bit clear reads are all-ones and
 *            writes are dropped.  Accesses straddling 0xcfb/0xcfc read
 *            all-ones and are ignored.
 *   ecam_dev  ECAM window (register it on the MMIO bus at GPA_PCI_ECAM,
 *             PCI_ECAM_SIZE): offset = bus << 20 | device << 15 |
 *             function << 12 | register.  1, 2 and 4-byte naturally
 *             aligned accesses; an 8-byte aligned access is split into two
 *             dword accesses (low first); misaligned accesses read
 *             all-ones and writes are ignored.
 *
 * Absent buses/devices/functions, and registers 0x100-0xfff of a present
 * function (conventional PCI: 256 bytes, no PCIe capability, so no
 * extended space), read all-ones; writes there are ignored.
 *
 * The function model
 * ------------------
 * A device embeds struct pci_dev: 256 bytes of config space (cfg) and a
 * per-byte write mask (wmask): a config write changes only the bits set
 * in wmask, everything else is read-only.  Writable by default: command
 * bits MEMORY(1), MASTER(2), PARITY(6), SERR(8), INTX_DISABLE(10); cache
 * line size; interrupt line (a scratch register for software).  Interrupt
 * pin reads 0 (no INTx: MSI-X only, so no _PRT is needed).  Status has
 * only CAP_LIST (read-only); no error bits are ever set.  The expansion
 * ROM BAR reads 0 (sizing it gives 0: no ROM).
 *
 * BARs: 32-bit and 64-bit memory BARs (no I/O BARs), size a power of two
 * >= 16.  The address bits below the size are read-only zero and the type
 * bits read-only, so writing all-ones and reading back gives the size mask
 * (PCI 3.0 §6.2.5.1); the upper dword of a 64-bit BAR is fully writable
 * unless the size needs its bits.  pci_bus_add pre-assigns each BAR a
 * naturally aligned address in the bus's memory window, as firmware would;
 * the command register starts at 0 (the guest enables decoding).  A BAR is
 * mapped - its bus_dev registered on the MMIO bus at its address - exactly
 * while COMMAND.MEMORY is set and its address is non-zero and the BAR ends
 * below 2^64 (at the very top it would wrap the bus's window end); any
 * config write to the command register or a BAR re-evaluates
 * this, moving the window (bus_unregister + bus_register) and calling
 * ops->bar_mapped.  A placement that overlaps another window is refused
 * (logged, rate limited): the BAR then stays unmapped until reprogrammed.
 *
 * Capabilities: pci_add_cap appends to the list starting at 0x34 (offsets
 * 0x40.., dword aligned, next pointers chained, last next = 0, status
 * CAP_LIST set).  The list is built by the VMM only, so it is always
 * well-formed; guests cannot write the pointers.
 *
 * MSI-X (struct pci_msix)
 * -----------------------
 * Capability (id 0x11, 12 bytes): message control (table size - 1
 * read-only, bit 14 function mask and bit 15 enable writable), table and
 * PBA offset/BIR (read-only).  The table and PBA live in a BAR of the
 * device, whose ops forward accesses to pci_msix_table_read/write and
 * pci_msix_pba_read.  Table entries (16 bytes): address low (bits 1:0 read
 * 0), address high, data, vector control (bit 0 mask, others read 0);
 * after init every vector is masked with address/data 0.  Table accesses
 * must be 4 bytes dword-aligned or 8 bytes qword-aligned (PCI 3.0
 * §6.8.2: other sizes are undefined): anything else reads 0 and writes are
 * ignored; so do offsets past the last entry.  The PBA is read-only (4 or
 * 8-byte aligned reads; others read 0; writes ignored).
 *
 * Routes: pci_msix_init (boot time) allocates one platform MSI route per
 * vector (msi_alloc: an eventfd that delivers nothing until the route is
 * given a message).  A route is (re)programmed with msi_update only on
 * the event loop thread: when a table or control write (a vCPU) leaves a
 * deliverable vector - MSI-X enabled, function and vector unmasked - whose
 * route does not carry exactly the entry's message, the vCPU records
 * nothing more than that and queues m->work with platform defer(); the
 * loop then updates the routes of all deliverable vectors.  A vector
 * whose msi_update failed goes out with msi_send (on the loop) until the
 * guest changes its message.
 *
 * Delivery (pci_msix_notify, any thread): with MSI-X disabled the message
 * is dropped (there is no INTx to fall back to) and counted.  With the
 * function or the vector masked its pending bit is set.  Otherwise:
 *   - the route carries exactly the entry's message: its eventfd is
 *     written (KVM irqfd: no exit, no ioctl);
 *   - the route is stale (the guest rewrote the entry and the loop has
 *     not caught up) or missing: the vector is marked in m->deferred and
 *     the loop is woken.  The rule: an interrupt never goes through a
 *     stale route.  The loop first updates the route, then delivers the
 *     vector with the entry's message as it is then (the newest the guest
 *     wrote): through the route, or msi_send if there is none; if the
 *     guest has masked the vector meanwhile it becomes pending instead,
 *     if it disabled MSI-X the message is dropped.  Several interrupts of
 *     one vector waiting for the loop are delivered as one.
 * When a vector becomes deliverable (vector unmasked, function unmasked,
 * or MSI-X enabled) and its pending bit is set, the bit is cleared and
 * the vector is delivered as above.  So on a vCPU thread delivery is at
 * most an eventfd write; msi_alloc/update/free/send never run there.
 *
 * Without deferral (no platform, no loop, or defer unavailable: unit
 * tests) the calling thread updates the route and delivers at once.
 * Routes are freed by pci_msix_destroy.
 *
 * Locking and threads
 * -------------------
 * pb->lock serialises all config space accesses (both mechanisms) and BAR
 * (re)mapping; the device hooks cfg_read/cfg_write/bar_mapped run under
 * it, on whichever thread made the access - normally a vCPU, so they must
 * not do set-up themselves (no ioeventfd_add etc.): they record and defer
 * (platform.h).  BAR accesses (the fast path) do not take it:
 * bar_read/bar_write run on vCPU threads concurrently and the device
 * locks what it needs.  MSI-X state is under m->lock (held by the loop
 * across msi_update, so a concurrent table access waits for it).  Lock
 * order: pb->lock -> device locks -> m->lock -> platform locks.
 * pci_msix_notify may be called from any thread holding device locks,
 * never with m->lock held.
 */
#ifndef VISOR_DEVICES_PCI_PCI_H
#define VISOR_DEVICES_PCI_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../util/log.h"
#include "../bus.h"
#include "../platform.h"

/* Configuration space header, type 0 (PCI 3.0 §6.1) */
#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_REVISION_ID 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_CLASS_DEVICE 0x0a /* subclass, class */
#define PCI_CACHE_LINE_SIZE 0x0c
#define PCI_LATENCY_TIMER 0x0d
#define PCI_HEADER_TYPE 0x0e
#define PCI_BIST 0x0f
#define PCI_BASE_ADDRESS_0 0x10
#define PCI_CARDBUS_CIS 0x28
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID 0x2e
#define PCI_ROM_ADDRESS 0x30
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN 0x3d
#define PCI_MIN_GNT 0x3e
#define PCI_MAX_LAT 0x3f
#define PCI_CAP_START 0x40 /* first byte after the type 0 header */

#define PCI_COMMAND_IO (1u << 0)
#define PCI_COMMAND_MEMORY (1u << 1)
#define PCI_COMMAND_MASTER (1u << 2)
#define PCI_COMMAND_PARITY (1u << 6)
#define PCI_COMMAND_SERR (1u << 8)
#define PCI_COMMAND_INTX_DISABLE (1u << 10)
#define PCI_COMMAND_WMASK                                                               \
	(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY | PCI_COMMAND_SERR | \
	 PCI_COMMAND_INTX_DISABLE)
#define PCI_STATUS_CAP_LIST (1u << 4)

/* Memory BAR low bits (§6.2.5.1) */
#define PCI_BAR_MEM_TYPE_64 0x4u
#define PCI_BAR_MEM_PREFETCH 0x8u
#define PCI_BAR_MEM_MASK (~0xfull)

/* Capability IDs */
#define PCI_CAP_ID_VNDR 0x09
#define PCI_CAP_ID_MSIX 0x11

/* MSI-X capability (§6.8.2.1-3) */
#define PCI_MSIX_FLAGS 2   /* message control, from the capability start */
#define PCI_MSIX_TABLE 4   /* table offset | BIR */
#define PCI_MSIX_PBA 8     /* PBA offset | BIR */
#define PCI_MSIX_CAP_LEN 12
#define PCI_MSIX_FLAGS_QSIZE 0x07ffu
#define PCI_MSIX_FLAGS_MASKALL (1u << 14)
#define PCI_MSIX_FLAGS_ENABLE (1u << 15)
#define PCI_MSIX_ENTRY_SIZE 16
#define PCI_MSIX_ENTRY_ADDR_LO 0
#define PCI_MSIX_ENTRY_ADDR_HI 4
#define PCI_MSIX_ENTRY_DATA 8
#define PCI_MSIX_ENTRY_CTRL 12
#define PCI_MSIX_ENTRY_CTRL_MASK 1u
/* Most vectors one function may have here (the spec allows 2048). */
#define PCI_MSIX_MAX_VECTORS 64

/* Class codes (class << 16 | subclass << 8 | prog-if) */
#define PCI_CLASS_BRIDGE_HOST 0x060000u

/* The host bridge at 00:00.0 (see above). */
#define PCI_HOST_BRIDGE_VENDOR 0x1b36
#define PCI_HOST_BRIDGE_DEVICE 0x0008

#define PCI_CFG_SIZE 256      /* conventional configuration space */
#define PCI_ECAM_FN_SIZE 4096 /* ECAM window per function */
#define PCI_NUM_BARS 6
#define PCI_MAX_SLOTS 32
#define PCI_DEVFN(slot, fn) ((uint8_t)(((slot) << 3) | (fn)))

/* mapped_gpa of a BAR that is not on the MMIO bus */
#define PCI_BAR_UNMAPPED UINT64_MAX

enum pci_bar_type {
	PCI_BAR_NONE = 0,
	PCI_BAR_MEM32,
	PCI_BAR_MEM64, /* takes two BAR slots: bar and bar + 1 */
};

struct pci_dev;
struct pci_bus;
struct pci_msix;

struct pci_dev_ops {
	/* Access to BAR @bar at @off (len 1, 2, 4 or 8; inside the BAR).  A
	 * read must fill all of data.  Called on vCPU threads without
	 * pb->lock, and by devices themselves (e.g. virtio's PCI_CFG window). */
	void (*bar_read)(struct pci_dev *pd, int bar, uint64_t off, void *data, uint32_t len);
	void (*bar_write)(struct pci_dev *pd, int bar, uint64_t off, const void *data,
			  uint32_t len);
	/* Optional, under pb->lock: about to serve a read of cfg[reg, reg+len)
	 * - refresh dynamic bytes there. */
	void (*cfg_read)(struct pci_dev *pd, uint32_t reg, uint32_t len);
	/* Optional, under pb->lock: a write of cfg[reg, reg+len) was merged
	 * (through wmask) into cfg. */
	void (*cfg_write)(struct pci_dev *pd, uint32_t reg, uint32_t len);
	/* Optional, under pb->lock: BAR @bar moved from @old_gpa to @new_gpa
	 * on the MMIO bus (either may be PCI_BAR_UNMAPPED).  Runs on the
	 * thread of the config write, normally a vCPU: record the move and
	 * defer any set-up it needs (platform.h); the window itself is on
	 * the bus at @new_gpa already. */
	void (*bar_mapped)(struct pci_dev *pd, int bar, uint64_t old_gpa, uint64_t new_gpa);
};

struct pci_bar {
	struct pci_dev *pd;
	int idx;
	enum pci_bar_type type;
	bool prefetch;
	uint64_t size;       /* 0: BAR not implemented */
	uint64_t mapped_gpa; /* where bd is registered, or PCI_BAR_UNMAPPED */
	struct bus_dev bd;   /* the BAR's window on the MMIO bus */
};

struct pci_dev {
	const struct pci_dev_ops *ops;
	const char *name;
	struct pci_bus *bus; /* set by pci_bus_add */
	uint8_t devfn;
	uint8_t cap_last; /* offset of the last capability, 0: none yet */
	uint16_t cap_end; /* first free byte after the capabilities */
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE];
	struct pci_bar bars[PCI_NUM_BARS];
	struct pci_msix *msix; /* set by pci_msix_init */
};

struct pci_bus {
	struct bus_dev pio_dev;  /* ports PORT_PCI_CONFIG.. (8 ports) */
	struct bus_dev ecam_dev; /* ECAM window, one bus (1 MiB) */
	struct bus *mmio;        /* where BARs are mapped */
	pthread_mutex_t lock;
	uint32_t config_address; /* under lock */
	uint64_t mem_next, mem_end; /* BAR pre-assignment window [next, end) */
	void (*cf9_write)(void *ctx, uint8_t val);
	void *cf9_ctx;
	struct pci_dev *slots[PCI_MAX_SLOTS];
	struct pci_dev host; /* 00:00.0 */
	struct ratelimit rl;
};

/* ---- bus ---------------------------------------------------------------- */

/*
 * Initialise bus 0 with the host bridge in slot 0.  BARs are mapped on
 * @mmio and pre-assigned from [mem_base, mem_base + mem_size) (the window
 * the ACPI host bridge _CRS declares).  @cf9_write (may be NULL: byte
 * writes at 0xcf9 are then ignored and byte reads return 0xff) receives
 * byte writes to port 0xcf9, with @cf9_ctx; it is called without pb->lock.
 * The caller registers pb->pio_dev and pb->ecam_dev on its buses.
 * Returns 0 or -errno (-EINVAL: NULL @mmio, empty or wrapping window).
 */
int pci_bus_init(struct pci_bus *pb, struct bus *mmio, uint64_t mem_base, uint64_t mem_size,
		 void (*cf9_write)(void *ctx, uint8_t val), void *cf9_ctx);

/* Unmap every BAR of every device (bar_mapped hooks run), unplug them all
 * and release the lock.  The caller unregisters pio_dev/ecam_dev if the
 * buses outlive the PCI bus. */
void pci_bus_destroy(struct pci_bus *pb);

/*
 * Plug @pd (set up with pci_dev_init/pci_dev_add_bar/capabilities) into
 * @slot (1..31), or the lowest free slot if @slot is -1, and pre-assign
 * its BARs (natural alignment, 64-bit BARs too, in the 32-bit window).
 * Returns the slot, -EINVAL, -EBUSY (slot taken), -ENOSPC (no free slot,
 * or the window is exhausted).
 */
int pci_bus_add(struct pci_bus *pb, struct pci_dev *pd, int slot);

/* Unplug @pd: unmap its BARs (bar_mapped is called) and free its slot. */
void pci_bus_remove(struct pci_bus *pb, struct pci_dev *pd);

/*
 * Configuration access to bus @bus, @devfn, register @reg (0..4095),
 * @len 1, 2 or 4 bytes little-endian, [reg, reg+len) inside one dword.
 * Reads of anything absent or unimplemented return all-ones (in @len
 * bytes); writes there are ignored.  Takes pb->lock.  Used by the port
 * and ECAM windows; public for tests and device code.
 */
uint32_t pci_cfg_read(struct pci_bus *pb, uint8_t bus, uint8_t devfn, uint32_t reg, uint32_t len);
void pci_cfg_write(struct pci_bus *pb, uint8_t bus, uint8_t devfn, uint32_t reg, uint32_t len,
		   uint32_t val);

/* ---- function ----------------------------------------------------------- */

/* Reset @pd to a header with these identifiers, no BARs, no capabilities,
 * command 0, the default write masks.  @class_code = class << 16 |
 * subclass << 8 | prog-if. */
void pci_dev_init(struct pci_dev *pd, const struct pci_dev_ops *ops, const char *name,
		  uint16_t vendor, uint16_t device, uint32_t class_code, uint8_t revision,
		  uint16_t subsys_vendor, uint16_t subsys_id);

/* Declare BAR @bar (0..5; 0..4 for 64-bit, which also uses bar + 1) as a
 * memory BAR of @size bytes (power of two, >= 16; < 4 GiB for 32-bit).
 * Before pci_bus_add.  0 or -EINVAL (bad index/size, slot in use). */
int pci_dev_add_bar(struct pci_dev *pd, int bar, enum pci_bar_type type, uint64_t size,
		    bool prefetch);

/* The address BAR @bar is programmed with (whether mapped or not); 0 for
 * an unimplemented BAR.  Takes pb->lock if plugged. */
uint64_t pci_bar_address(struct pci_dev *pd, int bar);

/*
 * Append a capability of @len bytes (>= 2: id and next included) with ID
 * @id to the list; its body is zero and read-only until the caller fills
 * it with pci_set* and opens bits with pci_set_wmask*.  *@off (may be
 * NULL) receives its offset.  Before pci_bus_add.  Returns 0, -EINVAL
 * (len < 2) or -ENOSPC (no room below 0x100).
 */
int pci_add_cap(struct pci_dev *pd, uint8_t id, uint32_t len, uint8_t *off);

/* Direct little-endian access to cfg/wmask, for device set-up and for
 * hooks running under pb->lock.  Out-of-range offsets are ignored (reads
 * give 0). */
void pci_set8(struct pci_dev *pd, uint32_t off, uint8_t v);
void pci_set16(struct pci_dev *pd, uint32_t off, uint16_t v);
void pci_set32(struct pci_dev *pd, uint32_t off, uint32_t v);
uint8_t pci_get8(const struct pci_dev *pd, uint32_t off);
uint16_t pci_get16(const struct pci_dev *pd, uint32_t off);
uint32_t pci_get32(const struct pci_dev *pd, uint32_t off);
void pci_set_wmask8(struct pci_dev *pd, uint32_t off, uint8_t mask);
void pci_set_wmask16(struct pci_dev *pd, uint32_t off, uint16_t mask);
void pci_set_wmask32(struct pci_dev *pd, uint32_t off, uint32_t mask);

/* ---- MSI-X -------------------------------------------------------------- */

struct pci_msix_vector {
	uint32_t addr_lo, addr_hi, data, ctrl; /* the entry as the guest wrote it */
	int handle;          /* platform MSI route, -1: none (slow path) */
	int fd;              /* its eventfd (platform-owned), -1: none */
	bool routed;         /* the route delivers (route_addr, route_data) */
	bool route_failed;   /* msi_update failed for this message */
	uint64_t route_addr; /* what the route delivers, if routed */
	uint32_t route_data;
};

struct pci_msix {
	struct pci_dev *pd;
	struct platform *p;
	pthread_mutex_t lock;
	uint16_t nvec;
	uint8_t cap; /* capability offset */
	bool enabled, masked; /* control bits 15 / 14 */
	struct pci_msix_vector vec[PCI_MSIX_MAX_VECTORS];
	uint64_t pba[(PCI_MSIX_MAX_VECTORS + 63) / 64];
	/* vectors fired while their route was stale: the loop delivers them */
	uint64_t deferred[(PCI_MSIX_MAX_VECTORS + 63) / 64];
	struct platform_work work; /* route updates and deferred delivery */
	/* statistics (under lock); via_loop: interrupts handed to the loop */
	uint64_t delivered, pended, dropped, send_errors, via_loop;
	struct ratelimit rl;
};

/*
 * Add an MSI-X capability with @nvec (1..PCI_MSIX_MAX_VECTORS) vectors to
 * @pd, the table at @table_off and the PBA at @pba_off of BAR @bar (both
 * 8-byte aligned; the caller forwards its BAR accesses there), and
 * allocate every vector's MSI route (boot time: not on a vCPU thread).
 * @p may be NULL or have NULL msi ops (then messages cannot be delivered
 * and are counted as send errors); a failed msi_alloc is logged and the
 * vectors without a route use msi_send.  Before pci_bus_add.  0 or
 * -errno.
 */
int pci_msix_init(struct pci_msix *m, struct pci_dev *pd, struct platform *p, uint16_t nvec,
		  int bar, uint32_t table_off, uint32_t pba_off);
/* Cancel queued work and free the vectors' MSI routes.  On the loop
 * thread or with the loop stopped, and with no vCPU running. */
void pci_msix_destroy(struct pci_msix *m);

/* Table / PBA accesses, @off relative to the table / PBA start. */
void pci_msix_table_read(struct pci_msix *m, uint64_t off, void *data, uint32_t len);
void pci_msix_table_write(struct pci_msix *m, uint64_t off, const void *data, uint32_t len);
void pci_msix_pba_read(struct pci_msix *m, uint64_t off, void *data, uint32_t len);

/* Bytes the table / PBA occupy for @nvec vectors. */
#define PCI_MSIX_TABLE_SIZE(nvec) ((uint32_t)(nvec)*PCI_MSIX_ENTRY_SIZE)
#define PCI_MSIX_PBA_SIZE(nvec) ((((uint32_t)(nvec) + 63) / 64) * 8)

/*
 * Signal vector @vec (any thread; see "Delivery").  Returns 0 (delivered,
 * handed to the loop, or made pending), -ENODEV (MSI-X disabled:
 * dropped), -EINVAL (no such vector) or, without deferral, the
 * platform's error (message lost; with deferral the loop counts that in
 * send_errors).
 */
int pci_msix_notify(struct pci_msix *m, uint16_t vec);

/* MSI-X enable bit as last written by the guest. */
bool pci_msix_enabled(struct pci_msix *m);

/* ---- snapshot state ------------------------------------------------------- */

struct snap_writer;
struct snap_cursor;

/*
 * Snapshot state of one function (docs/snapshot-format.md, "PCI and virtio
 * transports"): its 256 bytes of configuration space as the guest sees
 * them (BAR addresses and COMMAND included, so where the BARs are mapped
 * follows) and, if it has MSI-X, every table entry as the guest wrote it
 * and the pending bits.  MSI-X enable and function mask are bits of the
 * control word in the configuration space.  The MSI routes (handles,
 * eventfds, what the platform was last told) are host resources: never
 * saved; put brings them up to date as a table write does.
 *
 *   pci_dev_state_get     copy it out (pb->lock, then the MSI-X lock).  An
 *                         interrupt still waiting for the loop (m->deferred)
 *                         is saved as pending (dropped if MSI-X is off, as
 *                         the loop would), so put delivers it;
 *   pci_dev_state_encode  field by field: cfg[256], u16 vector count (0: no
 *                         MSI-X), per vector u32 addr_lo, addr_hi, data,
 *                         ctrl, then the PBA as ceil(count / 64) u64 words;
 *   pci_dev_state_decode  read and check against the live function @pd
 *                         (pure; the caller checks the cursor at the end):
 *                         every bit the guest cannot write (wmask 0) equals
 *                         @pd's - identifiers, read-only command and status
 *                         bits, BAR types and sizes, capability list and
 *                         contents, MSI-X table size/BIR/offsets - the
 *                         vector count is @pd's, an entry's address bits 1:0
 *                         and control bits 31:1 are 0 (what a table write
 *                         leaves) and no pending bit is set at or above the
 *                         vector count.  0 or -EINVAL with a message naming
 *                         the field;
 *   pci_dev_state_put     make @pd hold it (no vCPU running): the config
 *                         space is copied and then treated as a guest's
 *                         config write would be - BARs mapped where the
 *                         BAR registers and COMMAND say (the device's
 *                         bar_mapped hook runs), the MSI-X control word
 *                         applied - the table entries and pending bits
 *                         restored, the routes of deliverable vectors
 *                         brought up to date (on the loop through m->work,
 *                         or here without deferral) and a pending vector
 *                         that is deliverable fired.  The device's cfg_write
 *                         hook is not called (it would replay an access such
 *                         as virtio's PCI_CFG window).  0, or -EINVAL for a
 *                         state not decoded against @pd.
 */
struct pci_msix_vector_state {
	uint32_t addr_lo, addr_hi, data, ctrl;
};

struct pci_dev_state {
	uint8_t cfg[PCI_CFG_SIZE];
	uint16_t nvec; /* MSI-X vectors, 0: no MSI-X */
	struct pci_msix_vector_state vec[PCI_MSIX_MAX_VECTORS];
	uint64_t pba[(PCI_MSIX_MAX_VECTORS + 63) / 64];
};

void pci_dev_state_get(struct pci_dev *pd, struct pci_dev_state *st);
void pci_dev_state_encode(const struct pci_dev_state *st, struct snap_writer *w);
int pci_dev_state_decode(struct snap_cursor *c, const struct pci_dev *pd, struct pci_dev_state *st,
			 char *err, size_t errlen);
int pci_dev_state_put(struct pci_dev *pd, const struct pci_dev_state *st);

/*
 * Snapshot state of the bus itself: CONFIG_ADDRESS (a guest may be paused
 * between its write to 0xcf8 and its access to 0xcfc) and the host
 * bridge's function state (its command, cache line size and interrupt
 * line are writable).  Encoding: u32 CONFIG_ADDRESS, then the host
 * bridge's pci_dev_state.  Decode checks that only the bits CONFIG_ADDRESS
 * keeps are set (bit 31, 23:2) and the host bridge as above.
 */
struct pci_bus_state {
	uint32_t config_address;
	struct pci_dev_state host;
};

void pci_bus_state_get(struct pci_bus *pb, struct pci_bus_state *st);
void pci_bus_state_encode(const struct pci_bus_state *st, struct snap_writer *w);
int pci_bus_state_decode(struct snap_cursor *c, const struct pci_bus *pb,
			 struct pci_bus_state *st, char *err, size_t errlen);
int pci_bus_state_put(struct pci_bus *pb, const struct pci_bus_state *st);

#endif
