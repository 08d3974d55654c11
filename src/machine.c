/* SPDX-License-Identifier: MIT */
#include "machine.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "arch/x86/acpi.h"
#include "arch/x86/aml.h"
#include "arch/x86/boot.h"
#include "arch/x86/cpu.h"
#include "arch/x86/layout.h"
#include "arch/x86/mptable.h"
#include "console.h"
#include "devices/acpi_pm.h"
#include "devices/vmgenid.h"
#include "devices/bootdev.h"
#include "devices/bus.h"
#include "devices/i8042.h"
#include "devices/irq.h"
#include "devices/pci/pci.h"
#include "devices/pvpanic.h"
#include "devices/registry.h"
#include "devices/rtc.h"
#include "devices/serial.h"
#include "devices/virtio/virtio_balloon.h"
#include "devices/virtio/virtio_blk.h"
#include "devices/virtio/virtio_mmio.h"
#include "devices/virtio/virtio_net.h"
#include "devices/virtio/virtio_pci.h"
#include "devices/virtio/virtio_rng.h"
#include "devices/virtio/virtio_vsock.h"
#include "event/loop.h"
#include "kvm/dirty_ring.h"
#include "kvm/kvm.h"
#include "kvm/platform_kvm.h"
#include "arch/x86/vcpu_state.h"
#include "arch/x86/vm_state.h"
#include "mem/guest_mem.h"
#include "mem/uffd.h"
#include "metrics.h"
#include "snapshot/config_section.h"
#include "snapshot/format.h"
#include "snapshot/mem_section.h"
#include "util/file.h"
#include "util/log.h"
#include "vcpu_exit.h"
#include "util/str.h"
#include "seccomp.h"

_Static_assert(CONFIG_MAX_MMIO_DEVS == VIRTIO_MMIO_MAX_DEVS, "one GSI per virtio-mmio device");

/* Stack of a vCPU thread: ample for exit handling, smaller than a 2 MiB huge page. */
#define VCPU_STACK_SIZE ((size_t)256 << 10)
#define MAX_VIRTIO (CONFIG_MAX_DISKS + CONFIG_MAX_NICS + 3)

struct vcpu {
	struct kvm_vcpu kv;
	struct dirty_ring ring; /* KVM's dirty ring of this vCPU (under ring_lock) */
	pthread_t thread;
	bool started;
	struct machine *vm;
};

struct machine {
	const struct file_image *kernel_pre; /* read ahead; only during machine_create */
	struct vm_config cfg;
	struct machine_hooks hooks;
	uint64_t start_ns;
	struct kvm kvm;
	struct guest_mem mem;
	struct uffd_link uffd; /* restored through a page-fault handler (Uffd backend) */
	struct boot_image img;
	struct bus pio, mmio;
	struct irq_line irq_com1, irq_rtc, irq_sci, irq_kbd, irq_aux;

	struct serial serial;
	struct rtc rtc;
	struct i8042 i8042;
	struct acpi_pm pm;
	struct pvpanic pvpanic;
	struct bootdev bootdev;
	struct vmgenid vmgenid;
	bool legacy_ready;

	struct kvm_platform kp;
	bool kp_ready;
	struct pci_bus pci;
	bool pci_ready;

	/* every device, in creation order */
	struct dev_registry reg;
	uint32_t nvpci, nvmmio;
	struct virtio_pci vpci[MAX_VIRTIO];
	struct virtio_mmio vmmio[VIRTIO_MMIO_MAX_DEVS];
	uint8_t mmio_aml[2048];
	size_t mmio_aml_len;
	uint32_t nmmio_planned;

	struct vcpu *vcpus;
	uint32_t ncpus;

	/* pause rendezvous: the loop sets pause_req and kicks; each vCPU
	 * parks (parked counts them) until pause_req is cleared */
	pthread_mutex_t park_lock;
	pthread_cond_t park_cond;
	_Atomic bool pause_req;
	_Atomic bool stop_req;
	uint32_t parked;
	uint32_t running_threads; /* vCPU threads that have not returned */
	bool paused;
	bool restoring;        /* built from a snapshot: no kernel, no boot registers */
	bool incoming;         /* built for an incoming migration (its state comes later) */
	_Atomic uint32_t throttle_pct; /* live migration: share of vCPU time taken away */
	int throttle_tfd;      /* kicks the vCPUs while throttled */
	uint64_t paused_clock; /* kvmclock when paused */
	bool have_clock;
	/* the memory identity of the last snapshot taken or loaded (all
	 * zero: none since the VM booted), the base of the next Diff */
	uint8_t last_mem_id[SNAP_MEM_ID_LEN];

	struct loop *loop;
	struct console console;
	int rx_efd;       /* the UART made room for console input */
	int rtc_tfd;      /* drives the RTC's update/alarm/periodic interrupts */
	bool in_paused;
	bool in_eof;
	bool in_watched;
	uint8_t pending[512];
	size_t pending_len;

	/* Dirty pages through KVM's dirty ring (ring_entries per vCPU; 0: KVM's
	 * bitmap).  ring_lock serializes every harvest, the collector's and a
	 * vCPU's own (collect_dirty_log says why that loses no page);
	 * ring_reset_pending: entries were marked harvested but
	 * KVM_RESET_DIRTY_RINGS failed, so the next harvest calls it anyway. */
	uint32_t ring_entries;
	pthread_mutex_t ring_lock;
	bool ring_lock_ready;
	bool ring_reset_pending;
	_Atomic uint64_t ring_full_exits, ring_pages, ring_ignored;

	_Atomic int exit_code; /* -1 while running */
	bool started;
	/* vCPU exits by kind, for metrics (relaxed atomics) */
	_Atomic uint64_t exit_io_in, exit_io_out, exit_mmio_read, exit_mmio_write, exit_hlt,
		exit_other, exit_fails;
	bool console_ready;
};


/* ---- stopping ----------------------------------------------------------- */

/* Record why the VM ends (first reason wins) and tell the owner. */
static void vmm_request_exit(struct machine *vm, int code)
{
	int expected = -1;
	if (atomic_compare_exchange_strong(&vm->exit_code, &expected, code)) {
		if (vm->hooks.on_exit)
			vm->hooks.on_exit(vm->hooks.ctx, code);
	}
}

void machine_request_exit(struct machine *m, int code)
{
	vmm_request_exit(m, code);
}

int machine_exit_code(struct machine *m)
{
	return atomic_load(&m->exit_code);
}

static void kick_signal(int sig)
{
	(void)sig; /* only interrupts KVM_RUN */
}

/* Make every vCPU leave KVM_RUN soon: immediate_exit covers a vCPU that is
 * about to enter, the signal one that is inside (KVM_CAP_IMMEDIATE_EXIT). */
static void kick_vcpus(struct machine *vm)
{
	for (uint32_t i = 0; i < vm->ncpus; i++) {
		struct vcpu *c = &vm->vcpus[i];
		if (!c->started)
			continue;
		c->kv.run->immediate_exit = 1;
		pthread_kill(c->thread, SIGUSR1);
	}
}

/* ---- device callbacks (called on vCPU threads) ------------------------- */

static void irq_set(void *ctx, uint32_t gsi, int level)
{
	struct machine *vm = ctx;
	int r = kvm_irq_line(&vm->kvm, gsi, level);
	if (r) {
		static struct ratelimit rl;
		log_ratelimited(&rl, LOG_WARN, "KVM_IRQ_LINE %u: %s", gsi, strerror(-r));
	}
}

static void on_poweroff(void *ctx)
{
	log_debug("guest powered off");
	vmm_request_exit(ctx, VMM_EXIT_POWEROFF);
}

static void on_reset(void *ctx)
{
	log_info("guest requested a reset: exiting with status %d", VMM_EXIT_REBOOT);
	vmm_request_exit(ctx, VMM_EXIT_REBOOT);
}

static void on_panic(void *ctx)
{
	log_error("guest kernel panicked (pvpanic): exiting with status %d", VMM_EXIT_PANIC);
	vmm_request_exit(ctx, VMM_EXIT_PANIC);
}

/* A new VM generation ID is in guest memory: GPE -> Notify (VGEN, 0x80). */
static void on_vmgenid(void *ctx)
{
	struct machine *vm = ctx;
	acpi_pm_raise_gpe(&vm->pm, ACPI_GPE_VMGENID);
}

static void on_booted(void *ctx)
{
	struct machine *vm = ctx;
	uint64_t ns = now_ns() - vm->start_ns;
	log_info("guest boot time: %llu.%03llu ms since visor start",
		 (unsigned long long)(ns / 1000000), (unsigned long long)(ns / 1000 % 1000));
}

static void on_serial_tx(void *ctx, const uint8_t *buf, size_t len)
{
	struct machine *vm = ctx;
	console_write(&vm->console, buf, len);
}

/* ---- vCPU threads ------------------------------------------------------- */

static void count_exit(struct machine *vm, const struct kvm_run *run)
{
	_Atomic uint64_t *c;
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		c = run->io.direction == KVM_EXIT_IO_IN ? &vm->exit_io_in : &vm->exit_io_out;
		break;
	case KVM_EXIT_MMIO:
		c = run->mmio.is_write ? &vm->exit_mmio_write : &vm->exit_mmio_read;
		break;
	case KVM_EXIT_HLT:
		c = &vm->exit_hlt;
		break;
	case KVM_EXIT_SHUTDOWN:
	case KVM_EXIT_FAIL_ENTRY:
	case KVM_EXIT_INTERNAL_ERROR:
		c = &vm->exit_fails;
		break;
	default:
		c = &vm->exit_other;
	}
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static bool vcpu_should_run(struct machine *vm)
{
	return atomic_load(&vm->exit_code) < 0 && !atomic_load(&vm->stop_req);
}

/* Park at the pause rendezvous until the loop resumes or stops the VM. */
static void vcpu_park(struct vcpu *c)
{
	struct machine *vm = c->vm;
	/* Finish the instruction whose port/MMIO access the last exit
	 * handled: KVM_RUN with immediate_exit set completes pending
	 * operations and returns -EINTR without entering the guest (KVM
	 * api.rst, immediate_exit), so a parked vCPU's registers are
	 * architecturally complete (what a snapshot will save). */
	c->kv.run->immediate_exit = 1;
	int r = ioctl(c->kv.fd, KVM_RUN, 0);
	(void)r;
	c->kv.run->immediate_exit = 0;
	pthread_mutex_lock(&vm->park_lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->park_cond);
	while (atomic_load(&vm->pause_req) && vcpu_should_run(vm))
		pthread_cond_wait(&vm->park_cond, &vm->park_lock);
	vm->parked--;
	pthread_mutex_unlock(&vm->park_lock);
}

/* A live migration whose guest dirties memory faster than the link
 * carries it takes a share of vCPU time away: the loop kicks every vCPU
 * each THROTTLE_PERIOD_NS and each sleeps its share of the period. */
#define THROTTLE_PERIOD_NS (20ULL * 1000000ULL)

static void vcpu_throttle(struct vcpu *c)
{
	uint32_t pct = atomic_load_explicit(&c->vm->throttle_pct, memory_order_relaxed);
	if (!pct || atomic_load(&c->vm->pause_req))
		return;
	uint64_t ns = THROTTLE_PERIOD_NS * pct / 100;
	struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ns};
	nanosleep(&ts, NULL);
}

static int harvest_rings_locked(struct machine *vm, struct vcpu *only);

/* KVM_EXIT_DIRTY_RING_FULL: this vCPU's ring reached its soft limit.  The
 * vCPU thread harvests its own ring, under the lock the collector takes
 * (a ring has one consumer at a time), and KVM_RESET_DIRTY_RINGS gives the
 * entries back.  Work on this thread: memory writes to the ring and the
 * bitmaps, the futex of ring_lock, and one ioctl(vm_fd,
 * KVM_RESET_DIRTY_RINGS) (docs/architecture.md, "Dirty ring").  True to
 * run on; false when there is no ring or KVM refused the reset. */
static bool vcpu_ring_full(struct vcpu *c)
{
	struct machine *vm = c->vm;
	atomic_fetch_add_explicit(&vm->ring_full_exits, 1, memory_order_relaxed);
	if (!vm->ring_entries) {
		log_error("vcpu %d: KVM_EXIT_DIRTY_RING_FULL without a dirty ring", c->kv.id);
		return false;
	}
	pthread_mutex_lock(&vm->ring_lock);
	/* the reset is due even if the collector took the entries first: it
	 * costs one ioctl, and the vCPU must not come back here at once */
	vm->ring_reset_pending = true;
	int r = harvest_rings_locked(vm, c);
	pthread_mutex_unlock(&vm->ring_lock);
	if (r) {
		log_error("vcpu %d: KVM_RESET_DIRTY_RINGS failed: %s", c->kv.id, strerror(-r));
		return false;
	}
	return true;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *c = arg;
	struct machine *vm = c->vm;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	char name[16];
	snprintf(name, sizeof(name), "vcpu%d", c->kv.id);
	pthread_setname_np(pthread_self(), name);

	while (vcpu_should_run(vm)) {
		if (atomic_load(&vm->pause_req)) {
			vcpu_park(c);
			continue;
		}
		int r = ioctl(c->kv.fd, KVM_RUN, 0);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				c->kv.run->immediate_exit = 0;
				vcpu_throttle(c);
				continue;
			}
			log_error("vcpu %d: KVM_RUN failed: %s", c->kv.id, strerror(errno));
			vmm_request_exit(vm, VMM_EXIT_CRASH);
			break;
		}
		struct kvm_run *run = c->kv.run;
		count_exit(vm, run);
		enum vcpu_exit_action a = vcpu_handle_exit(run, (size_t)c->kv.run_size, &vm->pio, &vm->mmio);
		switch (a) {
		case VCPU_CONTINUE:
			if (run->exit_reason == KVM_EXIT_IO && run->io.port == PORT_PVPANIC &&
			    run->io.direction == KVM_EXIT_IO_OUT &&
			    atomic_load(&vm->exit_code) == VMM_EXIT_PANIC) {
				/* this vCPU is in the guest's panic path: show where */
				log_error("vcpu %d reported the panic; its state:", c->kv.id);
				x86_dump_vcpu(&c->kv, &vm->mem);
			}
			continue;
		case VCPU_DIRTY_RING_FULL:
			/* KVM lets this vCPU in again only once its ring has
			 * room: harvest it here, before the next KVM_RUN */
			if (vcpu_ring_full(c))
				continue;
			vmm_request_exit(vm, VMM_EXIT_CRASH);
			break;
		case VCPU_POWEROFF:
			vmm_request_exit(vm, VMM_EXIT_POWEROFF);
			break;
		case VCPU_RESET:
			on_reset(vm);
			break;
		case VCPU_SHUTDOWN:
			log_error("vcpu %d: guest triple-faulted (KVM_EXIT_SHUTDOWN)", c->kv.id);
			x86_dump_vcpu(&c->kv, &vm->mem);
			vmm_request_exit(vm, VMM_EXIT_CRASH);
			break;
		case VCPU_CRASH:
			if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR) {
				log_error("vcpu %d: KVM internal error, suberror %u%s", c->kv.id,
					  run->internal.suberror,
					  run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
						  ? " (instruction emulation failed)"
						  : "");
				if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION &&
				    (run->emulation_failure.flags &
				     KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
					char hex[16 * 3 + 1] = "";
					uint8_t n = run->emulation_failure.insn_size;
					for (uint8_t i = 0; i < n && i < 15; i++)
						snprintf(hex + i * 3, 4, "%02x ",
							 run->emulation_failure.insn_bytes[i]);
					log_error("  instruction bytes: %s", hex);
				}
			} else if (run->exit_reason == KVM_EXIT_FAIL_ENTRY) {
				log_error("vcpu %d: VM entry failed, hardware reason 0x%llx", c->kv.id,
					  (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
			} else {
				log_error("vcpu %d: unexpected exit %u (%s)", c->kv.id, run->exit_reason,
					  vcpu_exit_name(run->exit_reason));
			}
			x86_dump_vcpu(&c->kv, &vm->mem);
			vmm_request_exit(vm, VMM_EXIT_CRASH);
			break;
		}
		break;
	}
	pthread_mutex_lock(&vm->park_lock);
	vm->running_threads--;
	pthread_cond_broadcast(&vm->park_cond);
	pthread_mutex_unlock(&vm->park_lock);
	return NULL;
}

/* ---- console input (event loop thread) ---------------------------------- */

static void flush_pending(struct machine *vm)
{
	if (vm->pending_len) {
		size_t n = serial_input(&vm->serial, vm->pending, vm->pending_len);
		memmove(vm->pending, vm->pending + n, vm->pending_len - n);
		vm->pending_len -= n;
	}
	if (vm->pending_len) {
		/* The UART's FIFO is full: stop reading input until the guest
		 * drains it (the rx-ready callback then writes rx_efd). */
		if (!vm->in_paused && !vm->in_eof)
			loop_mod(vm->loop, vm->console.in_fd, 0);
		vm->in_paused = true;
	} else if (vm->in_paused) {
		if (!vm->in_eof)
			loop_mod(vm->loop, vm->console.in_fd, EPOLLIN);
		vm->in_paused = false;
	}
}

/* vCPU thread: the guest read from a UART FIFO that had refused input. */
static void on_serial_rx_ready(void *ctx)
{
	struct machine *vm = ctx;
	uint64_t one = 1;
	ssize_t r = write(vm->rx_efd, &one, sizeof(one));
	(void)r;
}

static void on_stdin(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct machine *vm = ctx;
	uint8_t buf[sizeof(vm->pending) / 2];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		/* EOF or error: the guest keeps running without input */
		loop_del(l, fd);
		vm->in_eof = true;
		return;
	}
	bool quit;
	size_t m = console_filter_input(&vm->console, buf, (size_t)n,
					vm->pending + vm->pending_len, &quit);
	vm->pending_len += m;
	if (quit) {
		log_info("quit requested (Ctrl-A x)");
		vmm_request_exit(vm, VMM_EXIT_QUIT);
		return;
	}
	flush_pending(vm);
}

static void on_retry(struct loop *l, int fd, uint32_t events, void *ctx)
{
	uint64_t ticks;
	ssize_t r = read(fd, &ticks, sizeof(ticks));
	(void)r;
	flush_pending(ctx);
}

/* The RTC has no clock of its own: the loop evaluates it when it asks to
 * be (periodic/alarm/update interrupts) and at least once a second, which
 * also notices interrupts the guest enabled in the meantime. */
static void on_rtc_timer(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct machine *vm = ctx;
	uint64_t ticks;
	ssize_t rd = read(fd, &ticks, sizeof(ticks));
	(void)rd;
	/* a paused VM's devices raise no interrupts: look again later */
	uint64_t ns = vm->paused ? 1000000000ULL : rtc_tick(&vm->rtc);
	if (ns > 1000000000ULL)
		ns = 1000000000ULL;
	if (ns < 100000)
		ns = 100000;
	struct itimerspec its = {.it_value = {.tv_sec = (time_t)(ns / 1000000000ULL),
					      .tv_nsec = (long)(ns % 1000000000ULL)}};
	timerfd_settime(fd, 0, &its, NULL);
}

/* ---- assembly ------------------------------------------------------------ */

/* A regular file the user named, opened without blocking on a FIFO
 * (util/file.h); one error line on failure.  -1 on error. */
static int open_regular(const char *what, const char *path, uint64_t *size)
{
	int fd = file_open_regular(path, size);
	if (fd == -EINVAL)
		log_error("%s '%s' is not a regular file", what, path);
	else if (fd < 0)
		log_error("cannot open %s '%s': %s", what, path, strerror(-fd));
	return fd < 0 ? -1 : fd;
}

/* The kernel image: the one read when the boot source was set if the path
 * still names that unchanged file, else read now (into @own).  One error
 * line on failure. */
static const struct file_image *kernel_image(struct machine *vm, struct file_image *own)
{
	const char *path = vm->cfg.kernel;
	if (vm->kernel_pre && file_image_current(vm->kernel_pre, path))
		return vm->kernel_pre;
	int r = file_image_load(own, path, MACHINE_MAX_KERNEL_SIZE);
	if (r == -EINVAL)
		log_error("kernel '%s' is not a regular file", path);
	else if (r == -EFBIG)
		log_error("kernel '%s' has an implausible size (0 or over %llu MiB)", path,
			  MACHINE_MAX_KERNEL_SIZE >> 20);
	else if (r == -EIO)
		log_error("cannot read kernel '%s': short read", path);
	else if (r)
		log_error("cannot open kernel '%s': %s", path, strerror(-r));
	return r ? NULL : own;
}

static int load_initrd(struct machine *vm, uint64_t *gpa, uint64_t *size)
{
	const char *path = vm->cfg.initrd;
	uint64_t len;
	int fd = open_regular("initrd", path, &len);
	if (fd < 0)
		return -1;
	if (len == 0) {
		log_error("initrd '%s' is not a non-empty regular file", path);
		close(fd);
		return -1;
	}
	char err[256];
	if (boot_place_initrd(&vm->mem, &vm->img, len, gpa, err, sizeof(err))) {
		log_error("%s", err);
		close(fd);
		return -1;
	}
	/* straight into guest RAM: no intermediate copy */
	uint8_t *dst = gpa_to_hva(&vm->mem, *gpa, len);
	int r = dst ? file_read_all(fd, dst, (size_t)len) : -EFAULT;
	close(fd);
	if (r) {
		log_error("cannot read initrd '%s': %s", path, r == -EIO ? "short read" : strerror(-r));
		return -1;
	}
	*size = len;
	return 0;
}

static int check_host_memory(uint64_t want)
{
	struct sysinfo si;
	if (sysinfo(&si) == 0) {
		uint64_t total = (uint64_t)si.totalram * si.mem_unit;
		if (want > total) {
			log_error("--memory %llu MiB is more than this host's RAM (%llu MiB)",
				  (unsigned long long)(want >> 20), (unsigned long long)(total >> 20));
			return -1;
		}
	}
	return 0;
}

static int setup_guest_image(struct machine *vm)
{
	char err[256];
	struct file_image own = {0};
	const struct file_image *k = kernel_image(vm, &own);
	if (!k)
		return -1;
	int r = boot_load_kernel(k->data, k->size, &vm->mem, &vm->img, err, sizeof(err));
	file_image_free(&own);
	if (r) {
		log_error("kernel '%s': %s", vm->cfg.kernel, err);
		return -1;
	}
	/* A guest booted without ACPI learns about virtio-mmio devices from
	 * the command line (kernels with VIRTIO_MMIO_CMDLINE_DEVICES); with
	 * ACPI the DSDT describes them and a second description would clash. */
	char cmdline[CMDLINE_AREA_MAX];
	size_t clen = (size_t)snprintf(cmdline, sizeof(cmdline), "%s", vm->cfg.cmdline);
	if (clen < sizeof(cmdline) && strstr(cmdline, "acpi=off")) {
		for (uint32_t i = 0; i < vm->nmmio_planned && clen < sizeof(cmdline) - 1; i++) {
			cmdline[clen++] = ' ';
			int w = virtio_mmio_cmdline(cmdline + clen, sizeof(cmdline) - clen,
						    VIRTIO_MMIO_DEV_BASE(i), VIRTIO_MMIO_DEV_GSI(i));
			clen = w < 0 ? sizeof(cmdline) : clen + (size_t)w;
		}
	}
	if (clen > vm->img.cmdline_max || clen >= sizeof(cmdline)) {
		log_error("kernel command line is %zu bytes; this kernel accepts at most %u", clen,
			  vm->img.cmdline_max);
		return -1;
	}
	if (guest_write(&vm->mem, GPA_CMDLINE, cmdline, clen + 1))
		return -1;
	struct boot_params_in in = {.cmdline_gpa = GPA_CMDLINE, .cmdline_len = (uint32_t)clen};
	if (vm->cfg.initrd[0] && load_initrd(vm, &in.initrd_gpa, &in.initrd_size))
		return -1;

	/* Firmware tables: ACPI in the BIOS area, MP table in the EBDA. */
	uint8_t *acpi = gpa_to_hva(&vm->mem, GPA_ACPI_TABLES, ACPI_TABLES_MAX);
	struct acpi_config ac = {
		.ncpus = vm->ncpus,
		.pci = true,
		.sb_extra_aml = vm->mmio_aml_len ? vm->mmio_aml : NULL,
		.sb_extra_aml_len = vm->mmio_aml_len,
		.vmgenid_gpa = GPA_VMGENID,
	};
	uint64_t rsdp = 0;
	int n = acpi ? acpi_build(acpi, ACPI_TABLES_MAX, GPA_ACPI_TABLES, &ac, &rsdp) : -EFAULT;
	if (n < 0) {
		log_error("cannot build ACPI tables: %s", strerror(-n));
		return -1;
	}
	in.rsdp_gpa = rsdp;
	uint8_t *mp = gpa_to_hva(&vm->mem, GPA_MPTABLE, GPA_EBDA_END - GPA_MPTABLE);
	n = mp ? mptable_build(mp, GPA_EBDA_END - GPA_MPTABLE, GPA_MPTABLE, vm->ncpus) : -EFAULT;
	if (n < 0)
		log_warn("no MP table (%s); kernels without ACPI will see one CPU", strerror(-n));

	if (x86_write_boot_tables(&vm->mem))
		return -1;
	if (vm->img.kind == BOOT_PVH) {
		r = boot_build_pvh(&vm->mem, &in);
	} else {
		uint8_t *zp = gpa_to_hva(&vm->mem, GPA_ZERO_PAGE, BP_SIZE);
		r = zp ? boot_build_params(zp, &vm->img, &vm->mem, &in) : -EFAULT;
	}
	if (r) {
		log_error("cannot write boot information: %s", strerror(-r));
		return -1;
	}
	return 0;
}

/* KVM's dirty ring, where the host has it and the config asks for it
 * (dirty_ring, default 4096 entries): enabled on the VM before any vCPU
 * exists (KVM refuses it later), whether or not anything tracks pages
 * yet, so the VM can log dirty pages into it whenever a snapshot's
 * tracking or a migration turns logging on (KVM_MEM_LOG_DIRTY_PAGES on the
 * slots, as with the bitmap).  A host without it (e.g. a PVM /dev/kvm)
 * uses the bitmap.  A size the host refuses is an error when the config
 * named it, else the bitmap again. */
static int setup_dirty_ring(struct machine *vm)
{
	uint32_t want = vm->cfg.dirty_ring;
	bool named = vm->cfg.dirty_ring_set;
	if (!want) {
		log_debug("dirty pages: KVM's dirty bitmap (dirty ring 0)");
		return 0;
	}
	long cap;
	uint64_t max = kvm_dirty_ring_max(&vm->kvm, &cap);
	uint64_t bytes = (uint64_t)want * sizeof(struct kvm_dirty_gfn);
	if (!max) {
		log_debug("dirty pages: KVM's dirty bitmap (this host's KVM has no dirty ring)");
		return 0;
	}
	int r = bytes > max ? -E2BIG : kvm_dirty_ring_enable(&vm->kvm, cap, want);
	if (r && named) {
		if (r == -E2BIG)
			log_error("dirty ring of %u entries (--dirty-ring, dirty_ring_entries): this "
				  "host's KVM allows at most %llu entries per vCPU; give fewer, or 0 "
				  "for KVM's dirty bitmap",
				  want, (unsigned long long)(max / sizeof(struct kvm_dirty_gfn)));
		else
			log_error("KVM refused a dirty ring of %u entries (--dirty-ring, "
				  "dirty_ring_entries): %s; its smallest ring on this host may be "
				  "larger (Intel's PML needs at least 1024), or 0 gives KVM's dirty "
				  "bitmap",
				  want, strerror(-r));
		return -1;
	}
	if (r) {
		log_warn("KVM refused a dirty ring of %u entries (%s): dirty pages go to KVM's "
			 "dirty bitmap",
			 want, strerror(-r));
		return 0;
	}
	vm->ring_entries = want;
	log_debug("dirty pages: KVM's dirty ring, %u entries per vCPU (%s)", want,
		  cap == KVM_CAP_DIRTY_LOG_RING_ACQ_REL ? "KVM_CAP_DIRTY_LOG_RING_ACQ_REL"
							: "KVM_CAP_DIRTY_LOG_RING");
	return 0;
}

static int open_kvm(struct machine *vm)
{
	char err[512];
	int r = kvm_open(&vm->kvm, vm->cfg.kvm_path, err, sizeof(err));
	if (r) {
		log_error("%s", err);
		return -1;
	}
	bool pvm;
	if (!x86_host_has_hw_virt(&pvm) && !vm->cfg.allow_software_kvm) {
		if (pvm)
			log_error("%s is PVM (the kvm_pvm software hypervisor), not VT-x/AMD-V: a "
				  "guest kernel runs about 1000x slower there and a stock Linux "
				  "kernel does not boot in useful time. Run on a host with hardware "
				  "virtualization, or use the nested lab (`make run` does this "
				  "automatically); --allow-software-kvm runs anyway",
				  vm->cfg.kvm_path);
		else
			log_error("this CPU reports no VT-x/AMD-V, so %s cannot run guests at "
				  "hardware speed. Enable virtualization (or nested virtualization "
				  "for a VM), or use the nested lab (`make run`); "
				  "--allow-software-kvm runs anyway",
				  vm->cfg.kvm_path);
		return -1;
	}
	if (vm->ncpus > (uint32_t)vm->kvm.max_vcpus) {
		log_error("--cpus %u is more than KVM allows on this host (%d)", vm->ncpus,
			  vm->kvm.max_vcpus);
		return -1;
	}
	if ((r = kvm_create_vm(&vm->kvm)) || (r = x86_vm_setup(&vm->kvm))) {
		log_error("cannot create the VM: %s", strerror(-r));
		return -1;
	}
	if (setup_dirty_ring(vm))
		return -1;
	for (int i = 0; i < vm->mem.nregions; i++) {
		struct guest_region *g = &vm->mem.regions[i];
		if ((r = kvm_set_memory(&vm->kvm, (uint32_t)i, g->gpa, g->size, g->hva,
					guest_mem_tracking(&vm->mem)))) {
			log_error("cannot register guest memory with KVM: %s", strerror(-r));
			return -1;
		}
	}
	return 0;
}

static int setup_devices(struct machine *vm)
{
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	vm->irq_com1 = (struct irq_line){irq_set, vm, IRQ_COM1};
	vm->irq_rtc = (struct irq_line){irq_set, vm, IRQ_RTC};
	vm->irq_sci = (struct irq_line){irq_set, vm, IRQ_ACPI_SCI};
	vm->irq_kbd = (struct irq_line){irq_set, vm, IRQ_KBD};
	vm->irq_aux = (struct irq_line){irq_set, vm, IRQ_AUX};
	int r = 0;
	if ((r = serial_init(&vm->serial, &vm->irq_com1, on_serial_tx, vm)) ||
	    (r = rtc_init(&vm->rtc, &vm->irq_rtc)) ||
	    (r = i8042_init(&vm->i8042, on_reset, vm)) ||
	    (r = acpi_pm_init(&vm->pm, &vm->irq_sci, on_poweroff, on_reset, vm)) ||
	    (r = pvpanic_init(&vm->pvpanic, on_panic, vm)) ||
	    (r = bootdev_init(&vm->bootdev, on_booted, vm)) ||
	    (r = vmgenid_init(&vm->vmgenid, gpa_to_hva(&vm->mem, GPA_VMGENID, VMGENID_LEN),
			      GPA_VMGENID, on_vmgenid, vm))) {
		log_error("cannot initialise devices: %s", strerror(-r));
		return -1;
	}
	i8042_set_irqs(&vm->i8042, &vm->irq_kbd, &vm->irq_aux);
	struct {
		struct bus_dev *dev;
		uint64_t base, len;
	} map[] = {
		{&vm->serial.bus, PORT_COM1, PORT_COM1_LEN},
		{&vm->rtc.bus, PORT_RTC, PORT_RTC_LEN},
		{&vm->i8042.data_bus, PORT_I8042_DATA, 1},
		{&vm->i8042.cmd_bus, PORT_I8042_CMD, 1},
		{&vm->pm.evt_bus, PORT_ACPI_PM1A_EVT, PORT_ACPI_PM1A_EVT_LEN},
		{&vm->pm.cnt_bus, PORT_ACPI_PM1A_CNT, PORT_ACPI_PM1A_CNT_LEN},
		{&vm->pm.tmr_bus, PORT_ACPI_PM_TMR, PORT_ACPI_PM_TMR_LEN},
		{&vm->pm.gpe_bus, PORT_ACPI_GPE0, PORT_ACPI_GPE0_LEN},
		{&vm->pvpanic.bus, PORT_PVPANIC, 1},
		{&vm->bootdev.bus, PORT_BOOTDEV, 1},
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if ((r = bus_register(&vm->pio, map[i].dev, map[i].base, map[i].len))) {
			log_error("cannot place device at port 0x%llx: %s",
				  (unsigned long long)map[i].base, strerror(-r));
			return -1;
		}
	}
	return 0;
}

static int setup_vcpus(struct machine *vm)
{
	vm->vcpus = calloc(vm->ncpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return -1;
	for (uint32_t i = 0; i < vm->ncpus; i++) {
		struct vcpu *c = &vm->vcpus[i];
		c->vm = vm;
		c->kv.fd = -1;
		int r = kvm_create_vcpu(&vm->kvm, (int)i, &c->kv);
		if (!r && vm->ring_entries && !c->kv.ring)
			r = -ENOMEM;
		if (!r)
			c->ring = (struct dirty_ring){.gfns = c->kv.ring, .entries = vm->ring_entries};
		if (!r)
			r = x86_vcpu_init(&vm->kvm, &c->kv, vm->ncpus);
		if (!r && i == 0 && !vm->restoring)
			r = x86_vcpu_set_boot_regs(&c->kv, &vm->img);
		if (r) {
			log_error("cannot set up vCPU %u: %s", i, strerror(-r));
			return -1;
		}
	}
	return 0;
}

/* ---- devices: one table of types, one registry of instances -------------- */

/* What a device type's constructor gets: where it lives. */
struct dev_env {
	struct machine *vm;
	const struct guest_mem *mem;
	struct loop *loop;
};

/* A device type the config can ask for.  count() says how many instances
 * the config has, create() makes instance @i and fills the record (id,
 * dev, vdev, transport, ops).  Adding a device type: its own file(s) and
 * one entry in dev_types[] below. */
struct dev_type {
	const char *name;
	uint32_t (*count)(const struct vm_config *c);
	int (*create)(const struct dev_env *env, const struct vm_config *c, uint32_t i,
		      struct dev_record *rec, char *err, size_t errlen);
};

static void virtio_rec_pause(struct dev_record *r)
{
	virtio_dev_pause(r->vdev);
}

static void virtio_rec_resume(struct dev_record *r)
{
	virtio_dev_resume(r->vdev);
}

/* The transport goes first: it unregisters ioeventfds and MSI routes,
 * which needs the VM, and stops the guest reaching the device. */
static void transport_destroy(struct dev_record *r)
{
	if (!r->tdev)
		return;
	if (r->transport == TRANSPORT_MMIO)
		virtio_mmio_destroy(r->tdev);
	else
		virtio_pci_destroy(r->tdev);
	r->tdev = NULL;
}

/* ---- virtio devices' snapshot state ----
 * One section per device: the transport's state, the virtio core's (status,
 * features, queues), the device's own, in that order.  Load decodes all
 * three and checks them against the live device and against each other
 * before anything is applied; apply puts them in the same order and then
 * restarts the device (activation, a look at every queue). */

union transport_state {
	struct virtio_pci_state pci;
	struct virtio_mmio_state mmio;
};

static int transport_save(struct dev_record *r, union transport_state *t, struct snap_writer *w)
{
	int rc;
	if (r->transport == TRANSPORT_MMIO) {
		if (!(rc = virtio_mmio_state_get(r->tdev, &t->mmio)))
			virtio_mmio_state_encode(&t->mmio, w);
	} else {
		if (!(rc = virtio_pci_state_get(r->tdev, &t->pci)))
			virtio_pci_state_encode(&t->pci, w);
	}
	return rc;
}

static int transport_load(struct dev_record *r, struct snap_cursor *c, union transport_state *t,
			  char *err, size_t errlen)
{
	return r->transport == TRANSPORT_MMIO
		       ? virtio_mmio_state_decode(c, r->tdev, &t->mmio, err, errlen)
		       : virtio_pci_state_decode(c, r->tdev, &t->pci, err, errlen);
}

static int transport_check(struct dev_record *r, const union transport_state *t,
			   const struct virtio_dev_state *core, char *err, size_t errlen)
{
	return r->transport == TRANSPORT_MMIO ? virtio_mmio_state_check(&t->mmio, core, err, errlen)
					      : 0;
}

static int transport_put(struct dev_record *r, const union transport_state *t)
{
	return r->transport == TRANSPORT_MMIO ? virtio_mmio_state_put(r->tdev, &t->mmio)
					      : virtio_pci_state_put(r->tdev, &t->pci);
}

/* save/load/apply of virtio device type fn (struct type, fn##_state_*). */
#define VIRTIO_STATE_OPS(fn, T)                                                           \
	struct fn##_rec_state {                                                              \
		union transport_state t;                                                     \
		struct virtio_dev_state core;                                                \
		struct fn##_state dev;                                                       \
	};                                                                                   \
	static int fn##_rec_save(struct dev_record *r, struct snap_writer *w)               \
	{                                                                                    \
		struct fn##_rec_state *st = calloc(1, sizeof(*st));                          \
		if (!st)                                                                     \
			return -ENOMEM;                                                      \
		int rc = transport_save(r, &st->t, w);                                       \
		if (!rc && !(rc = virtio_dev_state_get(r->vdev, &st->core)))                 \
			virtio_dev_state_encode(&st->core, w);                               \
		if (!rc && !(rc = fn##_state_get((T *)r->dev, &st->dev)))                 \
			fn##_state_encode(&st->dev, w);                                      \
		free(st);                                                                    \
		return rc;                                                                   \
	}                                                                                    \
	static int fn##_rec_load(struct dev_record *r, const uint8_t *p, size_t len,         \
				 uint32_t v, void *state, char *err, size_t errlen)           \
	{                                                                                    \
		struct fn##_rec_state *st = state;                                           \
		if (v != fn##_STATE_VERSION_)                                                \
			return err_set(err, errlen, -EINVAL, "state version %u (this visor " \
				       "reads %u)", v, fn##_STATE_VERSION_);                 \
		struct snap_cursor c;                                                        \
		snap_cursor_init(&c, p, len);                                                \
		int rc;                                                                      \
		if ((rc = transport_load(r, &c, &st->t, err, errlen)) ||                     \
		    (rc = virtio_dev_state_decode(&c, r->vdev, &st->core, err, errlen)) ||   \
		    (rc = fn##_state_decode(&c, (const T *)r->dev, &st->dev, err,         \
					    errlen)) ||                                      \
		    (rc = snap_cursor_done(&c, r->type, err, errlen)) ||                     \
		    (rc = transport_check(r, &st->t, &st->core, err, errlen)))               \
			return rc;                                                           \
		return fn##_state_check(&st->dev, &st->core, err, errlen);                   \
	}                                                                                    \
	static int fn##_rec_apply(struct dev_record *r, const void *state, char *err,        \
				  size_t errlen)                                              \
	{                                                                                    \
		const struct fn##_rec_state *st = state;                                     \
		int rc;                                                                      \
		if ((rc = transport_put(r, &st->t)))                                         \
			return err_set(err, errlen, rc, "transport: %s", strerror(-rc));     \
		if ((rc = virtio_dev_state_put(r->vdev, &st->core)))                         \
			return err_set(err, errlen, rc, "queues: %s", strerror(-rc));        \
		if ((rc = fn##_state_put((T *)r->dev, &st->dev)))                         \
			return err_set(err, errlen, rc, "device: %s", strerror(-rc));        \
		virtio_dev_state_restart(r->vdev);                                           \
		return 0;                                                                    \
	}

#define virtio_blk_STATE_VERSION_ VIRTIO_BLK_STATE_VERSION
#define virtio_net_STATE_VERSION_ VIRTIO_NET_STATE_VERSION
#define virtio_vsock_STATE_VERSION_ VIRTIO_VSOCK_STATE_VERSION
#define virtio_rng_STATE_VERSION_ VIRTIO_RNG_STATE_VERSION
#define virtio_balloon_STATE_VERSION_ VIRTIO_BALLOON_STATE_VERSION
VIRTIO_STATE_OPS(virtio_blk, struct virtio_blk)
VIRTIO_STATE_OPS(virtio_net, struct virtio_net)
VIRTIO_STATE_OPS(virtio_vsock, struct virtio_vsock)
VIRTIO_STATE_OPS(virtio_rng, struct virtio_rng)
VIRTIO_STATE_OPS(virtio_balloon, struct virtio_balloon)

#define VIRTIO_DESTROY(fn, type)                                                             \
	static void fn##_rec_destroy(struct dev_record *r)                                  \
	{                                                                                   \
		transport_destroy(r);                                                       \
		fn##_destroy((type *)r->dev);                                               \
		free(r->dev);                                                               \
	}                                                                                   \
	static const struct dev_ops fn##_ops = {                                            \
		.pause = virtio_rec_pause,                                                  \
		.resume = virtio_rec_resume,                                                \
		.destroy = fn##_rec_destroy,                                                \
		.state_version = fn##_STATE_VERSION_,                                       \
		.state_size = sizeof(struct fn##_rec_state),                                \
		.save = fn##_rec_save,                                                      \
		.load = fn##_rec_load,                                                      \
		.apply = fn##_rec_apply}

/* virtio-blk: after the core's gate is closed, wait for the requests in
 * flight to complete and be pushed (virtio_blk_quiesce). */
static void blk_rec_pause(struct dev_record *r)
{
	virtio_dev_pause(r->vdev);
	virtio_blk_quiesce(r->dev);
}

static void blk_rec_resume(struct dev_record *r)
{
	virtio_blk_unquiesce(r->dev);
	virtio_dev_resume(r->vdev);
}

static void virtio_blk_rec_destroy(struct dev_record *r)
{
	transport_destroy(r);
	virtio_blk_destroy(r->dev);
	free(r->dev);
}

static int blk_rec_sync(struct dev_record *r)
{
	return virtio_blk_sync(r->dev);
}

static const struct dev_ops virtio_blk_ops = {.pause = blk_rec_pause,
					      .resume = blk_rec_resume,
					      .destroy = virtio_blk_rec_destroy,
					      .state_version = VIRTIO_BLK_STATE_VERSION,
					      .state_size = sizeof(struct virtio_blk_rec_state),
					      .sync = blk_rec_sync,
					      .save = virtio_blk_rec_save,
					      .load = virtio_blk_rec_load,
					      .apply = virtio_blk_rec_apply};
VIRTIO_DESTROY(virtio_net, struct virtio_net);
VIRTIO_DESTROY(virtio_vsock, struct virtio_vsock);
VIRTIO_DESTROY(virtio_rng, struct virtio_rng);
VIRTIO_DESTROY(virtio_balloon, struct virtio_balloon);

static uint32_t count_disks(const struct vm_config *c)
{
	return c->ndisks;
}

static int create_blk(const struct dev_env *env, const struct vm_config *c, uint32_t i,
		      struct dev_record *rec, char *err, size_t errlen)
{
	const struct disk_config *dc = &c->disks[i];
	struct virtio_blk *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	/* the guest reads the drive id as its serial (at most 20 bytes) */
	char serial[21];
	snprintf(serial, sizeof(serial), "%s", dc->id);
	char e[256];
	int r = virtio_blk_create(b, dc->path, dc->readonly, serial, env->mem, env->loop, e, sizeof(e));
	if (r) {
		err_set(err, errlen, 0, "drive '%s': %s", dc->id, e);
		free(b);
		return r;
	}
	r = virtio_blk_set_rate_limiter(b, &dc->rl);
	if (r) {
		err_set(err, errlen, 0, "drive '%s': rate limiter: %s", dc->id, strerror(-r));
		virtio_blk_destroy(b);
		free(b);
		return r;
	}
	snprintf(rec->id, sizeof(rec->id), "%s", dc->id);
	rec->dev = b;
	rec->vdev = &b->vdev;
	rec->transport = dc->transport;
	rec->ops = &virtio_blk_ops;
	return 0;
}

static uint32_t count_nics(const struct vm_config *c)
{
	return c->nnics;
}

static int create_net(const struct dev_env *env, const struct vm_config *c, uint32_t i,
		      struct dev_record *rec, char *err, size_t errlen)
{
	const struct net_config *nc = &c->nics[i];
	uint8_t mac[6];
	if (nc->mac[0]) {
		if (config_parse_mac(nc->mac, mac)) {
			err_set(err, errlen, 0, "network interface '%s': '%s' is not a unicast MAC address",
				nc->id, nc->mac);
			return -EINVAL;
		}
	} else {
		net_default_mac(nc->tap, i, mac);
	}
	struct virtio_net *n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	char e[256];
	int r = virtio_net_create(n, nc->tap, mac, env->mem, env->loop, e, sizeof(e));
	if (r) {
		err_set(err, errlen, 0, "network interface '%s' (tap %s): %s", nc->id, nc->tap, e);
		free(n);
		return r;
	}
	if ((nc->mtu && (r = virtio_net_set_mtu(n, (uint16_t)nc->mtu))) ||
	    (r = virtio_net_set_rate_limiters(n, &nc->rx_rl, &nc->tx_rl))) {
		err_set(err, errlen, 0, "network interface '%s': %s: %s", nc->id,
			nc->mtu ? "mtu or rate limiter" : "rate limiter", strerror(-r));
		virtio_net_destroy(n);
		free(n);
		return r;
	}
	snprintf(rec->id, sizeof(rec->id), "%s", nc->id);
	rec->dev = n;
	rec->vdev = &n->vdev;
	rec->transport = nc->transport;
	rec->ops = &virtio_net_ops;
	return 0;
}

static uint32_t count_vsock(const struct vm_config *c)
{
	return c->vsock.enabled;
}

static int create_vsock(const struct dev_env *env, const struct vm_config *c, uint32_t i,
			struct dev_record *rec, char *err, size_t errlen)
{
	struct virtio_vsock *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	char e[256];
	int r = virtio_vsock_create(v, c->vsock.cid, c->vsock.uds, env->mem, env->loop, e, sizeof(e));
	if (r) {
		err_set(err, errlen, 0, "vsock: %s", e);
		free(v);
		return r;
	}
	snprintf(rec->id, sizeof(rec->id), "%s", c->vsock.id[0] ? c->vsock.id : "vsock");
	rec->dev = v;
	rec->vdev = &v->vdev;
	rec->transport = c->vsock.transport;
	rec->ops = &virtio_vsock_ops;
	return 0;
}

static uint32_t count_rng(const struct vm_config *c)
{
	return c->rng.enabled;
}

static int create_rng(const struct dev_env *env, const struct vm_config *c, uint32_t i,
		      struct dev_record *rec, char *err, size_t errlen)
{
	struct virtio_rng *g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	int r = virtio_rng_init(g, env->mem, env->loop);
	if (r) {
		err_set(err, errlen, 0, "cannot create the entropy device: %s", strerror(-r));
		free(g);
		return r;
	}
	r = virtio_rng_set_rate_limiter(g, &c->rng.rl);
	if (r) {
		err_set(err, errlen, 0, "entropy device: rate limiter: %s", strerror(-r));
		virtio_rng_destroy(g);
		free(g);
		return r;
	}
	snprintf(rec->id, sizeof(rec->id), "rng");
	rec->dev = g;
	rec->vdev = &g->vdev;
	rec->transport = c->rng.transport;
	rec->ops = &virtio_rng_ops;
	return 0;
}

static uint32_t count_balloon(const struct vm_config *c)
{
	return c->balloon.enabled;
}

static int create_balloon(const struct dev_env *env, const struct vm_config *c, uint32_t i,
			  struct dev_record *rec, char *err, size_t errlen)
{
	const struct balloon_config *bc = &c->balloon;
	struct virtio_balloon *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	int r = virtio_balloon_create(b, bc->size & ~0xfffULL, bc->deflate_on_oom, bc->stats_period,
				      env->mem, env->loop);
	if (r) {
		err_set(err, errlen, 0, "cannot create the balloon device: %s", strerror(-r));
		free(b);
		return r;
	}
	if (bc->no_reporting)
		virtio_balloon_disable_reporting(b);
	snprintf(rec->id, sizeof(rec->id), "balloon");
	rec->dev = b;
	rec->vdev = &b->vdev;
	rec->transport = bc->transport;
	rec->ops = &virtio_balloon_ops;
	return 0;
}

/* Creation order is the guest-visible order (PCI slots, MMIO windows). */
static const struct dev_type dev_types[] = {
	{"virtio-blk", count_disks, create_blk},
	{"virtio-net", count_nics, create_net},
	{"virtio-vsock", count_vsock, create_vsock},
	{"virtio-rng", count_rng, create_rng},
	{"virtio-balloon", count_balloon, create_balloon},
};

/* How many devices sit on virtio-mmio; their ACPI description (it goes
 * into the DSDT, which is built before the devices are attached). */
static int plan_virtio_mmio(struct machine *vm)
{
	uint32_t n = config_mmio_devices(&vm->cfg);
	if (n > VIRTIO_MMIO_MAX_DEVS) { /* config_validate refused this already */
		log_error("at most %d devices can use transport=mmio (%u requested)",
			  VIRTIO_MMIO_MAX_DEVS, n);
		return -1;
	}
	struct aml a;
	aml_init(&a, vm->mmio_aml, sizeof(vm->mmio_aml));
	for (uint32_t i = 0; i < n; i++)
		virtio_mmio_acpi_aml(&a, (int)i, VIRTIO_MMIO_DEV_BASE(i), VIRTIO_MMIO_DEV_GSI(i));
	if (a.err) {
		log_error("cannot describe virtio-mmio devices in ACPI: %s", strerror(-a.err));
		return -1;
	}
	vm->mmio_aml_len = a.len;
	vm->nmmio_planned = n;
	return 0;
}

/* Open disk images, taps, sockets and create the virtio devices (no KVM
 * needed yet, so bad device settings are reported before the host check). */
static int create_virtio_devices(struct machine *vm)
{
	struct dev_env env = {vm, &vm->mem, vm->loop};
	for (size_t t = 0; t < sizeof(dev_types) / sizeof(dev_types[0]); t++) {
		uint32_t n = dev_types[t].count(&vm->cfg);
		for (uint32_t i = 0; i < n; i++) {
			struct dev_record rec;
			memset(&rec, 0, sizeof(rec));
			rec.type = dev_types[t].name;
			rec.cls = DEV_VIRTIO;
			char err[512];
			int r = dev_types[t].create(&env, &vm->cfg, i, &rec, err, sizeof(err));
			if (r) {
				log_error("%s", err);
				return -1;
			}
			if (!registry_add(&vm->reg, &rec)) {
				log_error("%s '%s': duplicate id or too many devices", rec.type, rec.id);
				rec.ops->destroy(&rec);
				return -1;
			}
		}
	}
	return 0;
}

static int attach_virtio(struct machine *vm, struct dev_record *rec)
{
	int r;
	struct virtio_dev *d = rec->vdev;
	if (rec->transport == TRANSPORT_MMIO) {
		uint32_t i = vm->nvmmio;
		r = virtio_mmio_init(&vm->vmmio[i], d, &vm->kp.p, VIRTIO_MMIO_DEV_BASE(i),
				     VIRTIO_MMIO_DEV_GSI(i));
		if (!r) {
			rec->tdev = &vm->vmmio[i];
			vm->nvmmio++;
		}
	} else {
		r = virtio_pci_create(&vm->vpci[vm->nvpci], &vm->pci, d, &vm->kp.p, -1);
		if (r >= 0) {
			rec->tdev = &vm->vpci[vm->nvpci];
			vm->nvpci++;
			r = 0;
		}
	}
	if (r)
		log_error("cannot attach %s '%s' over %s: %s", rec->type, rec->id,
			  rec->transport == TRANSPORT_MMIO ? "MMIO" : "PCI", strerror(-r));
	return r;
}

static void on_cf9_write(void *ctx, uint8_t val)
{
	struct machine *vm = ctx;
	acpi_pm_reset_write(&vm->pm, val);
}

static int setup_pci_and_virtio(struct machine *vm)
{
	int r = pci_bus_init(&vm->pci, &vm->mmio, GPA_PCI_MMIO32, PCI_MMIO32_SIZE, on_cf9_write, vm);
	if (r) {
		log_error("cannot create the PCI bus: %s", strerror(-r));
		return -1;
	}
	vm->pci_ready = true;
	if ((r = bus_register(&vm->pio, &vm->pci.pio_dev, PORT_PCI_CONFIG, PORT_PCI_CONFIG_LEN)) ||
	    (r = bus_register(&vm->mmio, &vm->pci.ecam_dev, GPA_PCI_ECAM, PCI_ECAM_SIZE))) {
		log_error("cannot place the PCI host bridge: %s", strerror(-r));
		return -1;
	}
	for (uint32_t i = 0; i < vm->reg.n; i++)
		if (vm->reg.r[i].cls == DEV_VIRTIO && attach_virtio(vm, &vm->reg.r[i]))
			return -1;
	return 0;
}

/* ---- legacy devices in the registry ---------------------------------------- */

/* A legacy device with snapshot state: its fn_state_get/encode/decode/put
 * (the pattern of devices/serial.h) become the record's save/load/apply. */
#define LEGACY_OPS(fn, type, version) LEGACY_OPS_PR(fn, type, version, NULL, NULL)
#define LEGACY_OPS_PR(fn, type, version, pause_fn, resume_fn)                                \
	static void fn##_rec_destroy(struct dev_record *r)                                  \
	{                                                                                   \
		fn##_destroy((type *)r->dev);                                               \
	}                                                                                   \
	static int fn##_rec_save(struct dev_record *r, struct snap_writer *w)               \
	{                                                                                   \
		struct fn##_state st;                                                       \
		fn##_state_get((type *)r->dev, &st);                                        \
		fn##_state_encode(&st, w);                                                  \
		return 0;                                                                   \
	}                                                                                   \
	static int fn##_rec_load(struct dev_record *r, const uint8_t *p, size_t len,        \
				 uint32_t v, void *state, char *err, size_t errlen)          \
	{                                                                                   \
		(void)r;                                                                    \
		return fn##_state_decode(p, len, v, state, err, errlen);                    \
	}                                                                                   \
	static int fn##_rec_apply(struct dev_record *r, const void *state, char *err,       \
				  size_t errlen)                                             \
	{                                                                                   \
		(void)err;                                                                  \
		(void)errlen;                                                               \
		fn##_state_put((type *)r->dev, state);                                      \
		return 0;                                                                   \
	}                                                                                   \
	static const struct dev_ops fn##_ops = {.pause = (pause_fn),                        \
						.resume = (resume_fn),                      \
						.destroy = fn##_rec_destroy,                \
						.state_version = (version),                 \
						.state_size = sizeof(struct fn##_state),    \
						.save = fn##_rec_save,                      \
						.load = fn##_rec_load,                      \
						.apply = fn##_rec_apply}

LEGACY_OPS(serial, struct serial, SERIAL_STATE_VERSION);
LEGACY_OPS(rtc, struct rtc, RTC_STATE_VERSION);
LEGACY_OPS(i8042, struct i8042, I8042_STATE_VERSION);
/* the PM timer stops while the VM is paused */
static void acpi_pm_rec_pause(struct dev_record *r)
{
	acpi_pm_pause(r->dev);
}
static void acpi_pm_rec_resume(struct dev_record *r)
{
	acpi_pm_resume(r->dev);
}
LEGACY_OPS_PR(acpi_pm, struct acpi_pm, ACPI_PM_STATE_VERSION, acpi_pm_rec_pause,
	      acpi_pm_rec_resume);
/* pvpanic: nothing the guest can observe but the events it supports */
static void pvpanic_rec_destroy(struct dev_record *r)
{
	pvpanic_destroy(r->dev);
}
static const struct dev_ops pvpanic_ops = {.destroy = pvpanic_rec_destroy};
static const struct dev_ops bootdev_ops = {.destroy = NULL}; /* nothing to free */
/* vmgenid: its state is checked against the address this machine uses, and
 * applying it writes a new ID (vmgenid.h) */
static int vmgenid_rec_save(struct dev_record *r, struct snap_writer *w)
{
	struct vmgenid_state st;
	vmgenid_state_get(r->dev, &st);
	vmgenid_state_encode(&st, w);
	return 0;
}
static int vmgenid_rec_load(struct dev_record *r, const uint8_t *p, size_t len, uint32_t v,
			    void *state, char *err, size_t errlen)
{
	const struct vmgenid *g = r->dev;
	return vmgenid_state_decode(p, len, v, g->gpa, state, err, errlen);
}
static int vmgenid_rec_apply(struct dev_record *r, const void *state, char *err, size_t errlen)
{
	int rc = vmgenid_state_put(r->dev, state);
	if (rc)
		return err_set(err, errlen, rc, "no new generation ID: %s", strerror(-rc));
	return 0;
}
static const struct dev_ops vmgenid_ops = {.state_version = VMGENID_STATE_VERSION,
					   .state_size = sizeof(struct vmgenid_state),
					   .save = vmgenid_rec_save,
					   .load = vmgenid_rec_load,
					   .apply = vmgenid_rec_apply};

static int register_legacy(struct machine *vm)
{
	const struct {
		const char *id, *type;
		void *dev;
		const struct dev_ops *ops;
	} l[] = {
		{"com1", "serial", &vm->serial, &serial_ops},
		{"rtc", "rtc", &vm->rtc, &rtc_ops},
		{"i8042", "i8042", &vm->i8042, &i8042_ops},
		{"pm", "acpi-pm", &vm->pm, &acpi_pm_ops},
		{"pvpanic", "pvpanic", &vm->pvpanic, &pvpanic_ops},
		{"bootdev", "bootdev", &vm->bootdev, &bootdev_ops},
		{"vmgenid", "vmgenid", &vm->vmgenid, &vmgenid_ops},
	};
	for (size_t i = 0; i < sizeof(l) / sizeof(l[0]); i++) {
		struct dev_record rec;
		memset(&rec, 0, sizeof(rec));
		snprintf(rec.id, sizeof(rec.id), "%s", l[i].id);
		rec.type = l[i].type;
		rec.cls = DEV_LEGACY;
		rec.dev = l[i].dev;
		rec.ops = l[i].ops;
		if (!registry_add(&vm->reg, &rec)) {
			log_error("too many devices");
			return -1;
		}
	}
	return 0;
}

/* ---- the machine ------------------------------------------------------------ */

static int restore_state(struct machine *vm, const struct snap_reader *rd, bool clock_realtime,
			 char *err, size_t errlen);
static void dirty_mark_devices(struct machine *vm);

/* Build a machine: booted from cfg's kernel (@rd NULL) or restored from
 * the snapshot @rd with guest memory from @mem_fd, or (@uffd_sock set)
 * anonymous and served by the page-fault handler listening there. */
static struct machine *machine_build(const struct vm_config *cfg, const struct file_image *kernel,
				     const struct snap_reader *rd, int mem_fd, const char *uffd_sock,
				     bool clock_realtime, bool incoming, struct loop *loop,
				     const struct machine_hooks *hooks, uint64_t start_ns, char *err,
				     size_t errlen)
{
	struct machine *vm = calloc(1, sizeof(*vm));
	if (!vm) {
		err_set(err, errlen, 0, "out of memory");
		return NULL;
	}
	log_clear_last_error();
	vm->cfg = *cfg;
	vm->kernel_pre = kernel;
	vm->hooks = *hooks;
	vm->loop = loop;
	vm->start_ns = start_ns;
	vm->ncpus = cfg->cpus;
	vm->kvm.fd = vm->kvm.vm_fd = -1;
	vm->uffd.uffd = vm->uffd.sock = -1;
	vm->rx_efd = vm->rtc_tfd = vm->throttle_tfd = -1;
	pthread_mutex_init(&vm->park_lock, NULL);
	pthread_cond_init(&vm->park_cond, NULL);
	pthread_mutex_init(&vm->ring_lock, NULL);
	vm->ring_lock_ready = true;
	atomic_store(&vm->exit_code, -1);

	/* Inputs first: a bad file or size is reported before touching KVM. */
	if (check_host_memory(cfg->mem_size))
		goto fail;
	bool from_file = rd && !uffd_sock;
	int r = from_file ? guest_mem_init_file(&vm->mem, mem_fd, cfg->mem_size, GPA_MMIO_HOLE,
						GPA_MMIO_HOLE_END)
		: incoming && mem_fd >= 0
			? guest_mem_init_shared(&vm->mem, mem_fd, cfg->mem_size, GPA_MMIO_HOLE,
						GPA_MMIO_HOLE_END)
		: cfg->mem_shared && !uffd_sock
			? guest_mem_init_memfd(&vm->mem, cfg->mem_size, GPA_MMIO_HOLE, GPA_MMIO_HOLE_END)
			: guest_mem_init(&vm->mem, cfg->mem_size, GPA_MMIO_HOLE, GPA_MMIO_HOLE_END);
	if (r == -ERANGE) {
		log_error("the memory file is not %llu MiB, the snapshot's memory size",
			  (unsigned long long)(cfg->mem_size >> 20));
		goto fail;
	} else if (r) {
		log_error("cannot %s %llu MiB of guest memory: %s", from_file ? "map" : "allocate",
			  (unsigned long long)(cfg->mem_size >> 20), strerror(-r));
		goto fail;
	}
	/* Uffd: the handler owns every page from here on, before anything
	 * (the restore below, KVM, a vCPU) touches guest memory */
	if (rd && uffd_sock) {
		char e[512];
		if (uffd_link_open(&vm->uffd, &vm->mem, uffd_sock, e, sizeof(e))) {
			log_error("%s", e);
			goto fail;
		}
		log_info("guest memory (%llu MiB) is served by the page-fault handler at %s",
			 (unsigned long long)(cfg->mem_size >> 20), uffd_sock);
	}
	/* dirty tracking before any device can write guest RAM */
	if (cfg->track_dirty_pages && (r = guest_mem_track_dirty(&vm->mem))) {
		log_error("cannot track dirty pages of %llu MiB of guest memory: %s",
			  (unsigned long long)(cfg->mem_size >> 20), strerror(-r));
		goto fail;
	}
	vm->restoring = rd != NULL || incoming;
	vm->incoming = incoming;
	if (plan_virtio_mmio(vm) || create_virtio_devices(vm) || (!vm->restoring && setup_guest_image(vm)) ||
	    open_kvm(vm))
		goto fail;
	/* Without its deferred-set-up eventfd the platform would have vCPU
	 * threads do set-up work themselves: refuse rather than run that way. */
	r = kvm_platform_init(&vm->kp, &vm->kvm, vm->loop, &vm->pio, &vm->mmio);
	vm->kp_ready = true;
	if (r) {
		log_error("cannot set up the interrupt and notification platform: %s", strerror(-r));
		goto fail;
	}
	if (setup_devices(vm))
		goto fail;
	vm->legacy_ready = true;
	/* a booted machine's first generation ID; a restored one gets a new
	 * ID when its state is applied */
	vm->vmgenid.keep_on_restore = incoming; /* the same VM carries on */
	if (!rd && !incoming && (r = vmgenid_new_id(&vm->vmgenid))) {
		log_error("cannot draw a VM generation ID: %s", strerror(-r));
		goto fail;
	}
	if (register_legacy(vm) || setup_pci_and_virtio(vm) || setup_vcpus(vm))
		goto fail;
	if (rd) {
		char e[512];
		if (restore_state(vm, rd, clock_realtime, e, sizeof(e))) {
			log_error("%s", e);
			goto fail;
		}
		/* the next Diff is relative to the memory file as loaded:
		 * what the restore wrote differs from it (the new generation
		 * ID), and what devices may still write is dirty */
		guest_mem_mark(&vm->mem, vm->vmgenid.hva, VMGENID_ID_LEN);
		dirty_mark_devices(vm);
	}
	/* The console last: it switches a terminal to raw mode. */
	r = console_init(&vm->console, STDIN_FILENO, STDOUT_FILENO);
	if (r) {
		log_error("cannot set up the console: %s", strerror(-r));
		goto fail;
	}
	vm->console_ready = true;
	if (cfg->serial_out[0]) {
		char e[256];
		if (console_set_output_path(&vm->console, cfg->serial_out, e, sizeof(e))) {
			log_error("serial output '%s': %s", cfg->serial_out, e);
			goto fail;
		}
	}
	return vm;
fail:
	err_set(err, errlen, 0, "%s", log_last_error()[0] ? log_last_error() : "cannot build the VM");
	machine_destroy(vm);
	return NULL;
}

struct machine *machine_create(const struct vm_config *cfg, const struct file_image *kernel,
			       struct loop *loop, const struct machine_hooks *hooks, uint64_t start_ns,
			       char *err, size_t errlen)
{
	return machine_build(cfg, kernel, NULL, -1, NULL, false, false, loop, hooks, start_ns, err,
			     errlen);
}

struct machine *machine_restore(const struct vm_config *cfg, const struct snap_reader *rd,
				int mem_fd, const char *uffd_sock, bool clock_realtime,
				struct loop *loop, const struct machine_hooks *hooks, uint64_t start_ns,
				char *err, size_t errlen)
{
	return machine_build(cfg, NULL, rd, mem_fd, uffd_sock, clock_realtime, false, loop, hooks,
			     start_ns, err, errlen);
}

struct machine *machine_incoming(const struct vm_config *cfg, int memfd, struct loop *loop,
				 const struct machine_hooks *hooks, uint64_t start_ns, char *err,
				 size_t errlen)
{
	return machine_build(cfg, NULL, NULL, memfd, NULL, false, true, loop, hooks, start_ns, err,
			     errlen);
}

int machine_start(struct machine *vm)
{
	if (vm->started)
		return -EALREADY;
	vm->rx_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vm->rtc_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (vm->rx_efd < 0 || vm->rtc_tfd < 0) {
		int r = -errno;
		log_error("cannot set up the event loop: %s", strerror(errno));
		return r;
	}
	loop_add(vm->loop, vm->rx_efd, EPOLLIN, on_retry, vm);
	serial_set_rx_ready_cb(&vm->serial, on_serial_rx_ready, vm);
	loop_add(vm->loop, vm->rtc_tfd, EPOLLIN, on_rtc_timer, vm);
	struct itimerspec first = {.it_value = {.tv_sec = 1}};
	timerfd_settime(vm->rtc_tfd, 0, &first, NULL);
	int r = loop_add(vm->loop, STDIN_FILENO, EPOLLIN, on_stdin, vm);
	if (r == -EPERM) {
		/* stdin is a regular file: epoll cannot watch it */
		log_debug("stdin is not pollable; console input disabled");
		vm->in_eof = true;
	} else if (r) {
		vm->in_eof = true;
	} else {
		vm->in_watched = true;
		if (vm->paused) /* restored: console input waits for the resume */
			loop_mod(vm->loop, vm->console.in_fd, 0);
	}

	/* vCPU threads get SIGUSR1 (the kick); every other thread blocks it. */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_signal;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	/* vCPU threads need little stack (exit handling and device
	 * registers).  glibc's default is 8 MiB, and with transparent huge
	 * pages set to "always" a stack mapping that covers an aligned 2 MiB
	 * block gets a whole huge page on its first touch: 2 MiB of RSS per
	 * vCPU for nothing.  A stack smaller than a huge page cannot. */
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, VCPU_STACK_SIZE);
	vm->started = true;
	for (uint32_t i = 0; i < vm->ncpus; i++) {
		struct vcpu *c = &vm->vcpus[i];
		pthread_mutex_lock(&vm->park_lock);
		vm->running_threads++;
		pthread_mutex_unlock(&vm->park_lock);
		if (sec_thread_create(SEC_VCPU, &c->thread, &attr, vcpu_thread, c)) {
			pthread_mutex_lock(&vm->park_lock);
			vm->running_threads--;
			pthread_mutex_unlock(&vm->park_lock);
			log_error("cannot start vCPU thread %u", i);
			vmm_request_exit(vm, VMM_EXIT_ERROR);
			break;
		}
		c->started = true;
	}
	pthread_attr_destroy(&attr);
	return 0;
}

/* How long pause waits for the vCPUs to reach the rendezvous.  A vCPU
 * leaves KVM_RUN within microseconds of the kick; only a vCPU stuck in a
 * device access could take longer, and then the pause fails cleanly. */
#define PAUSE_TIMEOUT_NS (5ULL * 1000000000ULL)

int machine_pause(struct machine *vm)
{
	if (!vm->started)
		return -EINVAL;
	if (vm->paused)
		return 0;
	atomic_store(&vm->pause_req, true);
	kick_vcpus(vm);
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	uint64_t t = (uint64_t)dl.tv_nsec + PAUSE_TIMEOUT_NS;
	dl.tv_sec += (time_t)(t / 1000000000ULL);
	dl.tv_nsec = (long)(t % 1000000000ULL);
	int r = 0;
	pthread_mutex_lock(&vm->park_lock);
	while (vm->parked < vm->running_threads && atomic_load(&vm->exit_code) < 0 && r == 0)
		r = pthread_cond_timedwait(&vm->park_cond, &vm->park_lock, &dl);
	bool ok = vm->parked == vm->running_threads && atomic_load(&vm->exit_code) < 0;
	pthread_mutex_unlock(&vm->park_lock);
	if (!ok) {
		/* undo: nobody stays parked */
		pthread_mutex_lock(&vm->park_lock);
		atomic_store(&vm->pause_req, false);
		pthread_cond_broadcast(&vm->park_cond);
		pthread_mutex_unlock(&vm->park_lock);
		if (atomic_load(&vm->exit_code) >= 0)
			return -ESHUTDOWN;
		log_error("pause: the vCPUs did not stop within %llu s",
			  (unsigned long long)(PAUSE_TIMEOUT_NS / 1000000000ULL));
		return -ETIMEDOUT;
	}
	/* Every vCPU is parked.  The guest's clock stops here. */
	vm->have_clock = kvm_get_clock(&vm->kvm, &vm->paused_clock) == 0;
	if (vm->in_watched && !vm->in_eof && !vm->in_paused)
		loop_mod(vm->loop, vm->console.in_fd, 0);
	registry_pause_all(&vm->reg);
	vm->paused = true;
	return 0;
}

int machine_resume(struct machine *vm)
{
	if (!vm->paused)
		return 0;
	/* Devices first (they may raise interrupts for work that arrived
	 * meanwhile), then the clock, then the vCPUs. */
	registry_resume_all(&vm->reg);
	/* A restored VM may run behind another switch port: its NICs
	 * announce themselves on its first resume. */
	if (vm->restoring) {
		vm->restoring = false;
		registry_announce_all(&vm->reg);
	}
	if (vm->in_watched && !vm->in_eof && !vm->in_paused)
		loop_mod(vm->loop, vm->console.in_fd, EPOLLIN);
	if (vm->have_clock) {
		int r = kvm_set_clock(&vm->kvm, vm->paused_clock);
		if (r)
			log_warn("resume: cannot restore the guest clock: %s", strerror(-r));
		for (uint32_t i = 0; i < vm->ncpus; i++)
			(void)kvm_kvmclock_ctrl(&vm->vcpus[i].kv); /* -EINVAL without kvmclock */
	}
	vm->paused = false;
	pthread_mutex_lock(&vm->park_lock);
	atomic_store(&vm->pause_req, false);
	pthread_cond_broadcast(&vm->park_cond);
	pthread_mutex_unlock(&vm->park_lock);
	return 0;
}

void machine_stop(struct machine *vm)
{
	if (!vm->started)
		return;
	pthread_mutex_lock(&vm->park_lock);
	atomic_store(&vm->stop_req, true);
	pthread_cond_broadcast(&vm->park_cond);
	pthread_mutex_unlock(&vm->park_lock);
	kick_vcpus(vm);
	for (uint32_t i = 0; i < vm->ncpus; i++) {
		if (vm->vcpus[i].started)
			pthread_join(vm->vcpus[i].thread, NULL);
		vm->vcpus[i].started = false;
	}
	vm->started = false;
	if (vm->in_watched && !vm->in_eof)
		loop_del(vm->loop, vm->console.in_fd);
	vm->in_watched = false;
}

/* Flush what the console can write without blocking and give the
 * terminal back. */
static void stop_console(struct machine *vm)
{
	if (!vm->console_ready)
		return;
	vm->console_ready = false;
	console_stop(&vm->console);
	console_restore();
	if (vm->console.out_dropped)
		log_warn("%llu bytes of console output were dropped",
			 (unsigned long long)vm->console.out_dropped);
}

void machine_destroy(struct machine *vm)
{
	if (!vm)
		return;
	machine_stop(vm);
	stop_console(vm);
	if (vm->vcpus) {
		for (uint32_t i = 0; i < vm->ncpus; i++)
			if (vm->vcpus[i].kv.fd >= 0 && vm->vcpus[i].kv.run)
				kvm_destroy_vcpu(&vm->vcpus[i].kv);
		free(vm->vcpus);
	}
	/* every device, newest first: each virtio record takes down its
	 * transport (ioeventfds, MSI routes: needs the VM) and then the
	 * device (waiting for I/O still in flight); then the PCI bus, KVM
	 * and guest memory */
	registry_destroy_all(&vm->reg);
	if (vm->pci_ready)
		pci_bus_destroy(&vm->pci);
	if (vm->kp_ready)
		kvm_platform_destroy(&vm->kp);
	kvm_close(&vm->kvm);
	guest_mem_destroy(&vm->mem);
	uffd_link_close(&vm->uffd); /* after the unmap: no fault can be pending */
	if (vm->rx_efd >= 0) {
		loop_del(vm->loop, vm->rx_efd);
		close(vm->rx_efd);
	}
	if (vm->rtc_tfd >= 0) {
		loop_del(vm->loop, vm->rtc_tfd);
		close(vm->rtc_tfd);
	}
	if (vm->throttle_tfd >= 0) {
		loop_del(vm->loop, vm->throttle_tfd);
		close(vm->throttle_tfd);
	}
	pthread_mutex_destroy(&vm->park_lock);
	pthread_cond_destroy(&vm->park_cond);
	if (vm->ring_lock_ready)
		pthread_mutex_destroy(&vm->ring_lock);
	free(vm);
}

/* ---- metrics (event-loop thread) ------------------------------------------- */

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define COUNTER(l, s, f) metrics_add_counter((l), #f, (s).f)

static void blk_metrics(struct metrics_line *l, const struct virtio_blk_metrics *b)
{
	COUNTER(l, *b, read_count);
	COUNTER(l, *b, write_count);
	COUNTER(l, *b, read_bytes);
	COUNTER(l, *b, write_bytes);
	COUNTER(l, *b, flush_count);
	COUNTER(l, *b, invalid_reqs_count);
	COUNTER(l, *b, no_avail_buffer);
	COUNTER(l, *b, rate_limiter_throttled_events);
	COUNTER(l, *b, io_engine_throttled_events);
	COUNTER(l, *b, update_count);
	COUNTER(l, *b, update_fails);
}

static void net_metrics(struct metrics_line *l, const struct virtio_net_metrics *n)
{
	COUNTER(l, *n, rx_bytes_count);
	COUNTER(l, *n, rx_packets_count);
	COUNTER(l, *n, rx_fails);
	COUNTER(l, *n, rx_queue_event_count);
	COUNTER(l, *n, no_rx_avail_buffer);
	COUNTER(l, *n, rx_rate_limiter_throttled);
	COUNTER(l, *n, tx_bytes_count);
	COUNTER(l, *n, tx_packets_count);
	COUNTER(l, *n, tx_fails);
	COUNTER(l, *n, tx_malformed_frames);
	COUNTER(l, *n, tx_queue_event_count);
	COUNTER(l, *n, tx_rate_limiter_throttled);
}

void machine_collect_metrics(struct machine *vm, struct metrics_line *l)
{
	metrics_group_begin(l, "vcpu");
	metrics_add_counter(l, "exit_io_in", LOAD(vm->exit_io_in));
	metrics_add_counter(l, "exit_io_out", LOAD(vm->exit_io_out));
	metrics_add_counter(l, "exit_mmio_read", LOAD(vm->exit_mmio_read));
	metrics_add_counter(l, "exit_mmio_write", LOAD(vm->exit_mmio_write));
	metrics_add_counter(l, "exit_hlt", LOAD(vm->exit_hlt));
	metrics_add_counter(l, "exit_other", LOAD(vm->exit_other));
	metrics_add_counter(l, "failures", LOAD(vm->exit_fails));
	metrics_group_end(l);
	/* how dirty pages are tracked: ring_entries 0 is KVM's bitmap */
	metrics_group_begin(l, "dirty_log");
	metrics_add_gauge(l, "ring_entries", vm->ring_entries);
	metrics_add_counter(l, "ring_full_exits", LOAD(vm->ring_full_exits));
	metrics_add_counter(l, "ring_pages", LOAD(vm->ring_pages));
	metrics_add_counter(l, "ring_ignored", LOAD(vm->ring_ignored));
	metrics_group_end(l);
	metrics_group_begin(l, "uart");
	metrics_add_counter(l, "missed_write_count", vm->console.out_dropped);
	metrics_group_end(l);
	metrics_group_begin(l, "i8042");
	metrics_add_counter(l, "missed_write_count", vm->i8042.keys_dropped);
	metrics_group_end(l);
	/* one group per device ("block_ID", "net_ID", ...), plus Firecracker's
	 * aggregate "block" and "net" groups */
	struct virtio_blk_metrics bsum;
	struct virtio_net_metrics nsum;
	memset(&bsum, 0, sizeof(bsum));
	memset(&nsum, 0, sizeof(nsum));
	char name[CONFIG_ID_MAX + 16];
	for (uint32_t i = 0; i < vm->reg.n; i++) {
		struct dev_record *r = &vm->reg.r[i];
		if (!strcmp(r->type, "virtio-blk")) {
			struct virtio_blk_metrics b;
			virtio_blk_get_metrics(r->dev, &b);
			snprintf(name, sizeof(name), "block_%s", r->id);
			metrics_group_begin(l, name);
			blk_metrics(l, &b);
			metrics_group_end(l);
			uint64_t *d = (uint64_t *)&bsum;
			const uint64_t *v = (const uint64_t *)&b;
			for (size_t k = 0; k < sizeof(b) / sizeof(uint64_t); k++)
				d[k] += v[k];
		} else if (!strcmp(r->type, "virtio-net")) {
			struct virtio_net_metrics n;
			virtio_net_get_metrics(r->dev, &n);
			snprintf(name, sizeof(name), "net_%s", r->id);
			metrics_group_begin(l, name);
			net_metrics(l, &n);
			metrics_group_end(l);
			uint64_t *d = (uint64_t *)&nsum;
			const uint64_t *v = (const uint64_t *)&n;
			for (size_t k = 0; k < sizeof(n) / sizeof(uint64_t); k++)
				d[k] += v[k];
		} else if (!strcmp(r->type, "virtio-rng")) {
			struct virtio_rng_metrics g;
			virtio_rng_get_metrics(r->dev, &g);
			metrics_group_begin(l, "entropy");
			COUNTER(l, g, entropy_bytes);
			COUNTER(l, g, entropy_requests);
			COUNTER(l, g, host_rng_fails);
			COUNTER(l, g, entropy_rate_limiter_throttled);
			metrics_group_end(l);
		} else if (!strcmp(r->type, "virtio-balloon")) {
			struct virtio_balloon_metrics b;
			virtio_balloon_get_metrics(r->dev, &b);
			metrics_group_begin(l, "balloon");
			COUNTER(l, b, inflate_count);
			COUNTER(l, b, deflate_count);
			COUNTER(l, b, stats_updates_count);
			COUNTER(l, b, stats_update_fails);
			COUNTER(l, b, free_page_report_count);
			COUNTER(l, b, free_page_report_freed);
			metrics_group_end(l);
		} else if (!strcmp(r->type, "virtio-vsock")) {
			struct virtio_vsock_metrics v;
			virtio_vsock_get_metrics(r->dev, &v);
			metrics_group_begin(l, "vsock");
			COUNTER(l, v, conns_added);
			COUNTER(l, v, conns_removed);
			COUNTER(l, v, conn_event_fails);
			COUNTER(l, v, rx_read_fails);
			COUNTER(l, v, tx_write_fails);
			metrics_group_end(l);
		}
	}
	metrics_group_begin(l, "block");
	blk_metrics(l, &bsum);
	metrics_group_end(l);
	metrics_group_begin(l, "net");
	net_metrics(l, &nsum);
	metrics_group_end(l);
}

/* ---- run-time requests (event-loop thread) ------------------------------- */

static struct dev_record *find_dev(struct machine *vm, const char *type, const char *id,
				   char *err, size_t errlen)
{
	struct dev_record *r = registry_find(&vm->reg, type, id);
	if (!r)
		err_set(err, errlen, 0, "no %s device '%s'", type, id);
	return r;
}

int machine_ctrl_alt_del(struct machine *vm, char *err, size_t errlen)
{
	i8042_send_ctrl_alt_del(&vm->i8042);
	return 0;
}

int machine_balloon_target(struct machine *vm, uint64_t bytes, char *err, size_t errlen)
{
	struct dev_record *r = find_dev(vm, "virtio-balloon", "balloon", err, errlen);
	if (!r)
		return -ENODEV;
	int rc = virtio_balloon_set_target(r->dev, bytes);
	if (rc)
		err_set(err, errlen, 0, "balloon: %s",
			rc == -EINVAL ? "the target must be smaller than guest memory" : strerror(-rc));
	return rc;
}

int machine_balloon_stats_period(struct machine *vm, uint32_t seconds, char *err, size_t errlen)
{
	struct dev_record *r = find_dev(vm, "virtio-balloon", "balloon", err, errlen);
	if (!r)
		return -ENODEV;
	int rc = virtio_balloon_set_stats_period(r->dev, seconds);
	if (rc == -EINVAL)
		err_set(err, errlen, 0, "Cannot enable or disable balloon statistics after boot "
				     "(only change a non-zero interval)");
	else if (rc)
		err_set(err, errlen, 0, "balloon: %s", strerror(-rc));
	return rc;
}

int machine_balloon_stats(struct machine *vm, struct balloon_stats_reply *out, char *err,
			  size_t errlen)
{
	struct dev_record *r = find_dev(vm, "virtio-balloon", "balloon", err, errlen);
	if (!r)
		return -ENODEV;
	struct virtio_balloon_info bi;
	struct virtio_balloon_stats st;
	if (virtio_balloon_get_info(r->dev, &bi)) {
		err_set(err, errlen, 0, "balloon: no information");
		return -EIO;
	}
	memset(out, 0, sizeof(*out));
	out->target_pages = bi.target_pages;
	out->actual_pages = bi.actual_pages;
	out->target_mib = bi.target_pages >> 8;
	out->actual_mib = bi.actual_pages >> 8;
	(void)virtio_balloon_request_stats(r->dev); /* fresher numbers next time */
	if (virtio_balloon_get_stats(r->dev, &st) == 0) {
		for (int i = 0; i < 16 && i < (int)(sizeof(st.val) / sizeof(st.val[0])); i++) {
			if (st.valid & (1u << i)) {
				out->valid |= 1u << i;
				out->val[i] = st.val[i];
			}
		}
	}
	return 0;
}

int machine_drive_update(struct machine *vm, const struct disk_config *d, bool path, bool rl,
			 char *err, size_t errlen)
{
	struct dev_record *r = find_dev(vm, "virtio-blk", d->id, err, errlen);
	if (!r)
		return -ENODEV;
	if (path) {
		char e[256];
		int rc = virtio_blk_swap_backing(r->dev, d->path, d->readonly, e, sizeof(e));
		if (rc) {
			err_set(err, errlen, 0, "drive '%s': %s", d->id, e);
			return rc;
		}
	}
	if (rl) {
		int rc = virtio_blk_set_rate_limiter(r->dev, &d->rl);
		if (rc) {
			err_set(err, errlen, 0, "drive '%s': rate limiter: %s", d->id, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

int machine_net_update(struct machine *vm, const struct net_config *n, bool rx, bool tx, char *err,
		       size_t errlen)
{
	struct dev_record *r = find_dev(vm, "virtio-net", n->id, err, errlen);
	if (!r)
		return -ENODEV;
	int rc = virtio_net_set_rate_limiters(r->dev, rx ? &n->rx_rl : NULL, tx ? &n->tx_rl : NULL);
	if (rc)
		err_set(err, errlen, 0, "network interface '%s': rate limiter: %s", n->id, strerror(-rc));
	return rc;
}

/* ---- snapshots (event-loop thread) ------------------------------------------ */

/* Every device that has guest-visible state must be able to save it: a
 * device that cannot would be restored fresh, which is not a snapshot. */
static int check_saveable(struct machine *vm, char *err, size_t errlen)
{
	for (uint32_t i = 0; i < vm->reg.n; i++) {
		const struct dev_record *r = &vm->reg.r[i];
		bool has = r->ops && r->ops->save && r->ops->load && r->ops->apply;
		if (!has && r->cls == DEV_VIRTIO)
			return err_set(err, errlen, -ENOTSUP,
				       "%s \"%s\" cannot be saved in a snapshot yet", r->type, r->id);
	}
	return 0;
}

/* The state file's contents: config, VM-wide state, every vCPU, every
 * device.  *buf (free it) / *len. */
static int build_state(struct machine *vm, const struct snap_mem_info *mi, uint8_t **buf,
		       size_t *len, char *err, size_t errlen)
{
	struct snap_writer w;
	snap_writer_init(&w);
	snap_config_write(&vm->cfg, &w);
	snap_mem_write(mi, &w);
	int rc = 0;
	struct x86_vm_state *vs = calloc(1, sizeof(*vs));
	struct x86_vcpu_state *cs = calloc(1, sizeof(*cs));
	if (!vs || !cs) {
		rc = err_set(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	char e[256];
	if ((rc = x86_vm_state_get(&vm->kvm, vs, e, sizeof(e)))) {
		err_set(err, errlen, rc, "%s", e);
		goto out;
	}
	/* the guest's clock stopped when the VM paused, not now */
	if (vm->have_clock) {
		if ((vs->clock_flags & KVM_CLOCK_REALTIME) && vs->clock >= vm->paused_clock)
			vs->clock_realtime -= vs->clock - vm->paused_clock;
		vs->clock = vm->paused_clock;
	}
	snap_writer_section_begin(&w, X86_VM_STATE_ID, X86_VM_STATE_VERSION);
	x86_vm_state_encode(vs, &w);
	snap_writer_section_end(&w);
	for (uint32_t i = 0; i < vm->ncpus; i++) {
		if ((rc = x86_vcpu_state_get(&vm->kvm, &vm->vcpus[i].kv, cs, e, sizeof(e)))) {
			err_set(err, errlen, rc, "vCPU %u: %s", i, e);
			goto out;
		}
		char id[SNAP_ID_FIELD];
		snprintf(id, sizeof(id), "vcpu.%u", i);
		snap_writer_section_begin(&w, id, X86_VCPU_STATE_VERSION);
		x86_vcpu_state_encode(cs, &w);
		snap_writer_section_end(&w);
	}
	if ((rc = registry_save_all(&vm->reg, &w, err, errlen)))
		goto out;
	if ((rc = snap_writer_finish(&w, buf, len)))
		err_set(err, errlen, rc, "%s", snap_writer_error(&w));
out:
	snap_writer_free(&w);
	free(vs);
	free(cs);
	return rc;
}

/* Harvest the dirty ring of @only, or of every vCPU (NULL), into the
 * bitmaps, then KVM_RESET_DIRTY_RINGS when anything was taken (or a
 * reset is still owed).  ring_lock held.  0 / -errno of the reset. */
static int harvest_rings_locked(struct machine *vm, struct vcpu *only)
{
	uint64_t ignored = 0, n = 0;
	for (uint32_t i = 0; i < vm->ncpus; i++) {
		struct vcpu *c = &vm->vcpus[i];
		if (!only || c == only)
			n += dirty_ring_harvest(&c->ring, &vm->mem, &ignored);
	}
	atomic_fetch_add_explicit(&vm->ring_pages, n - ignored, memory_order_relaxed);
	if (ignored) {
		atomic_fetch_add_explicit(&vm->ring_ignored, ignored, memory_order_relaxed);
		static struct ratelimit rl;
		log_ratelimited(&rl, LOG_WARN,
				"KVM's dirty ring named %llu pages outside guest memory: ignored",
				(unsigned long long)ignored);
	}
	if (!n && !vm->ring_reset_pending)
		return 0;
	int r = kvm_reset_dirty_rings(&vm->kvm);
	vm->ring_reset_pending = r < 0;
	return r < 0 ? r : 0;
}

/* Dirty tracking: KVM's log of every slot ORed into the VMM's bitmap (KVM
 * clears its log as it hands it over, so the bitmap keeps it until a
 * snapshot has been written: a failed one loses nothing).
 *
 * With KVM's dirty ring there is no log per slot (KVM_GET_DIRTY_LOG is
 * refused): every vCPU's ring is harvested instead.  Why no page is lost
 * between a harvest and the snapshot or migration taking the bitmap:
 *  1. An entry leaves a ring only under ring_lock, and whoever takes it
 *     (this collector or the vCPU that exited with DIRTY_RING_FULL) sets
 *     its page in both bitmaps before it lets the lock go.  So once this
 *     function has held the lock, every page KVM logged into any ring
 *     before that is in the bitmaps: what it did not find in a ring,
 *     someone harvested before, completely.  Pages logged later belong
 *     to the next pass (the guest runs) or do not exist (paused: a
 *     vCPU's exit flushed its hardware log, e.g. Intel PML, into its ring
 *     before it parked, so the rings hold all there is).
 *  2. KVM_RESET_DIRTY_RINGS comes after the harvest and before anyone
 *     reads the pages (the migration reads them after this returns): it
 *     write-protects them again, so a guest write after the reset is
 *     logged again, and a write between the harvest and the reset (not
 *     logged again) is already in memory when the page is read.
 *  3. The migration takes its bitmap with an atomic exchange per word
 *     (guest_mem_mig_take): a vCPU harvesting its own ring meanwhile sets
 *     a bit either before the exchange (taken now) or after it (left for
 *     the next pass), never in between. */
static int collect_dirty_log(struct machine *vm, char *err, size_t errlen)
{
	if (vm->ring_entries) {
		pthread_mutex_lock(&vm->ring_lock);
		int r = harvest_rings_locked(vm, NULL);
		pthread_mutex_unlock(&vm->ring_lock);
		if (r)
			return err_set(err, errlen, r, "KVM_RESET_DIRTY_RINGS: %s", strerror(-r));
		return 0;
	}
	for (int i = 0; i < vm->mem.nregions; i++) {
		uint64_t pages = vm->mem.regions[i].size / GUEST_PAGE_SIZE;
		uint64_t *bits = calloc((size_t)((pages + 63) / 64), sizeof(*bits));
		if (!bits)
			return err_set(err, errlen, -ENOMEM, "out of memory for the dirty log");
		int r = kvm_get_dirty_log(&vm->kvm, (uint32_t)i, bits);
		if (!r)
			guest_mem_dirty_add(&vm->mem, i, bits);
		free(bits);
		if (r)
			return err_set(err, errlen, r, "KVM_GET_DIRTY_LOG: %s", strerror(-r));
	}
	return 0;
}

/* What devices may write from now on without another pop: active used
 * rings and the chains in flight (virtio_dev_mark_dirty). */
static void dirty_mark_devices(struct machine *vm)
{
	for (uint32_t i = 0; i < vm->reg.n; i++)
		if (vm->reg.r[i].vdev)
			virtio_dev_mark_dirty(vm->reg.r[i].vdev);
}

/* A snapshot was written: what is dirty from now on goes into the next
 * Diff.  The bitmap starts empty but for what devices may still write. */
static void dirty_epoch_start(struct machine *vm)
{
	if (!guest_mem_tracking(&vm->mem))
		return;
	guest_mem_dirty_clear(&vm->mem);
	dirty_mark_devices(vm);
}

int machine_snapshot(struct machine *vm, const char *state_path, const char *mem_path, bool diff,
		     char *err, size_t errlen)
{
	if (!vm->paused)
		return err_set(err, errlen, -EINVAL, "the microVM must be paused");
	bool tracking = guest_mem_tracking(&vm->mem);
	if (diff && !tracking)
		return err_set(err, errlen, -EINVAL, "dirty page tracking is off");
	int rc = check_saveable(vm, err, errlen);
	if (rc)
		return rc;
	/* set-up the guest asked for before the pause (MSI routes,
	 * ioeventfds after a BAR move) is part of what is saved */
	kvm_platform_drain(&vm->kp);
	uint64_t t0 = now_ns();
	/* A Diff holds the pages written since the last snapshot taken or
	 * loaded.  With none since the VM booted, every page that is not
	 * zero was written since: that is a Full snapshot, written as one. */
	struct snap_mem_info mi = {.kind = SNAP_MEM_FULL, .size = vm->mem.size};
	if ((rc = snap_mem_new_id(mi.id)))
		return err_set(err, errlen, rc, "no random bytes for the snapshot's identity: %s",
			       strerror(-rc));
	if (diff && !snap_mem_id_zero(vm->last_mem_id)) {
		mi.kind = SNAP_MEM_DIFF;
		memcpy(mi.base, vm->last_mem_id, SNAP_MEM_ID_LEN);
	} else if (diff) {
		log_info("Diff snapshot of a VM without an earlier snapshot: all of its memory is "
			 "new since it booted, so it is written as a Full snapshot");
	}
	if (tracking && (rc = collect_dirty_log(vm, err, errlen)))
		return rc;
	uint8_t *buf = NULL;
	size_t len = 0;
	if ((rc = build_state(vm, &mi, &buf, &len, err, errlen)))
		return rc;
	/* Both files complete and on disk under temporary names, the disks
	 * flushed, then the memory file renamed, the state file last: a
	 * state file under its final name always has its memory file. */
	struct file_atomic mf, sf;
	mf.fd = sf.fd = -1;
	mf.tmp[0] = sf.tmp[0] = 0;
	uint64_t written = 0, dirty = tracking ? guest_mem_dirty_count(&vm->mem) : 0;
	const char *what = mem_path;
	if ((rc = file_atomic_open(&mf, mem_path)) ||
	    (rc = mi.kind == SNAP_MEM_DIFF ? guest_mem_save_dirty(&vm->mem, mf.fd, &written)
					   : guest_mem_save_file(&vm->mem, mf.fd, &written)) ||
	    (rc = fsync(mf.fd) ? -errno : 0))
		goto fail;
	what = state_path;
	if ((rc = file_atomic_open(&sf, state_path)) || (rc = file_write_all(sf.fd, buf, len)) ||
	    (rc = fsync(sf.fd) ? -errno : 0))
		goto fail;
	what = "the disks";
	if ((rc = registry_sync_all(&vm->reg)))
		goto fail;
	what = mem_path;
	if ((rc = file_atomic_commit(&mf)))
		goto fail;
	what = state_path;
	if ((rc = file_atomic_commit(&sf))) {
		unlink(mem_path); /* no memory file without its state file */
		goto fail;
	}
	free(buf);
	memcpy(vm->last_mem_id, mi.id, SNAP_MEM_ID_LEN);
	dirty_epoch_start(vm);
	char hex[2 * SNAP_MEM_ID_LEN + 1];
	snap_mem_id_hex(mi.base, hex);
	if (mi.kind == SNAP_MEM_DIFF)
		log_info("snapshot (Diff since %s): %zu bytes of state, %llu dirty pages (%llu KiB) "
			 "of %llu MiB of memory written in %llu ms",
			 hex, len, (unsigned long long)dirty, (unsigned long long)(written >> 10),
			 (unsigned long long)(vm->mem.size >> 20),
			 (unsigned long long)((now_ns() - t0) / 1000000));
	else
		log_info("snapshot: %zu bytes of state, %llu KiB of %llu MiB of memory written in "
			 "%llu ms",
			 len, (unsigned long long)(written >> 10), (unsigned long long)(vm->mem.size >> 20),
			 (unsigned long long)((now_ns() - t0) / 1000000));
	return 0;
fail:
	file_atomic_abort(&mf);
	file_atomic_abort(&sf);
	free(buf);
	return err_set(err, errlen, rc, "cannot write %s: %s", what, strerror(-rc));
}

/* Apply a snapshot to a machine just built from its configuration, before
 * any vCPU ran: every section is decoded and checked first (VM state,
 * vCPUs; the registry checks all devices before applying any), then
 * devices (which drive their interrupt lines), the interrupt controllers,
 * PIT and clock, and the vCPUs.  The machine stays paused. */
static int restore_state(struct machine *vm, const struct snap_reader *rd, bool clock_realtime,
			 char *err, size_t errlen)
{
	int rc = 0;
	struct x86_vm_state *vs = calloc(1, sizeof(*vs));
	struct x86_vcpu_state *cs = calloc(vm->ncpus, sizeof(*cs));
	if (!vs || !cs) {
		rc = err_set(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	uint32_t version;
	const uint8_t *p;
	size_t len;
	char e[256];
	struct snap_cursor c;
	if (snap_reader_find(rd, X86_VM_STATE_ID, &version, &p, &len)) {
		rc = err_set(err, errlen, -ENOENT, "no \"%s\" section", X86_VM_STATE_ID);
		goto out;
	}
	snap_cursor_init(&c, p, len);
	if ((rc = x86_vm_state_decode(&c, version, vs, e, sizeof(e))) ||
	    (rc = snap_cursor_done(&c, X86_VM_STATE_ID, e, sizeof(e)))) {
		err_set(err, errlen, rc, "%s", e);
		goto out;
	}
	for (uint32_t i = 0; i < vm->ncpus; i++) {
		char id[SNAP_ID_FIELD];
		snprintf(id, sizeof(id), "vcpu.%u", i);
		if (snap_reader_find(rd, id, &version, &p, &len)) {
			rc = err_set(err, errlen, -ENOENT, "no \"%s\" section", id);
			goto out;
		}
		snap_cursor_init(&c, p, len);
		if ((rc = x86_vcpu_state_decode(&c, version, &cs[i], e, sizeof(e))) ||
		    (rc = snap_cursor_done(&c, id, e, sizeof(e)))) {
			err_set(err, errlen, rc, "%s", e);
			goto out;
		}
		if (cs[i].vcpu_id != i) {
			rc = err_set(err, errlen, -EINVAL, "%s holds the state of vCPU %u", id,
				     cs[i].vcpu_id);
			goto out;
		}
	}
	/* one vCPU more in the file than in the config is another machine */
	char extra[SNAP_ID_FIELD];
	snprintf(extra, sizeof(extra), "vcpu.%u", vm->ncpus);
	if (!snap_reader_find(rd, extra, NULL, NULL, NULL)) {
		rc = err_set(err, errlen, -EINVAL, "the snapshot has more vCPUs than its configuration");
		goto out;
	}
	/* the loaded memory is the base of the next Diff (vm.c refused a
	 * Diff or an interrupted merge before anything was built) */
	struct snap_mem_info mi;
	if ((rc = snap_mem_find(rd, &mi, NULL, err, errlen)))
		goto out;
	if (mi.kind != SNAP_MEM_FULL || (mi.size && mi.size != vm->mem.size)) {
		rc = err_set(err, errlen, -EINVAL, "the memory file is not a Full snapshot's memory "
				 "of %llu MiB", (unsigned long long)(vm->mem.size >> 20));
		goto out;
	}
	memcpy(vm->last_mem_id, mi.id, SNAP_MEM_ID_LEN);
	/* devices' gates closed: what the restored queues hold is looked at
	 * when the VM resumes */
	registry_pause_all(&vm->reg);
	if ((rc = registry_restore_all(&vm->reg, rd, err, errlen)))
		goto out;
	if ((rc = x86_vm_state_set(&vm->kvm, vs, e, sizeof(e)))) {
		err_set(err, errlen, rc, "%s", e);
		goto out;
	}
	for (uint32_t i = 0; i < vm->ncpus; i++)
		if ((rc = x86_vcpu_state_set(&vm->kvm, &vm->vcpus[i].kv, &cs[i], e, sizeof(e)))) {
			err_set(err, errlen, rc, "vCPU %u: %s", i, e);
			goto out;
		}
	/* The restored VM has a new generation ID (the vmgenid device's
	 * apply wrote it); its GPE is raised only now, with the interrupt
	 * controllers and LAPICs restored (their saved state would overwrite
	 * the SCI), and is delivered when the vCPUs first run. */
	if (vmgenid_notify_restored(&vm->vmgenid))
		log_info("snapshot: new VM generation ID; the guest is notified (GPE %d)",
			 ACPI_GPE_VMGENID);
	/* paused until told otherwise: vCPU threads park before they run,
	 * and the resume writes the saved clock back */
	vm->paused_clock = vs->clock;
	if (clock_realtime) {
		/* Firecracker's clock_realtime: the guest's clock moves on by
		 * the wall-clock time the snapshot spent on disk */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t now_rt = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
		if (!(vs->clock_flags & KVM_CLOCK_REALTIME))
			log_warn("clock_realtime: the snapshot has no wall-clock time (its host's "
				 "KVM lacks KVM_CLOCK_REALTIME); the clock resumes where it was");
		else if (now_rt > vs->clock_realtime)
			vm->paused_clock += now_rt - vs->clock_realtime;
	}
	vm->have_clock = true;
	vm->paused = true;
	atomic_store(&vm->pause_req, true);
out:
	free(vs);
	free(cs);
	return rc;
}

/* ---- live migration (migration/migrate.c; event-loop thread) ----------------- */

struct guest_mem *machine_guest_mem(struct machine *vm)
{
	return &vm->mem;
}

bool machine_paused(const struct machine *vm)
{
	return vm->paused;
}

/* KVM's dirty log on every slot, on or back to what track_dirty_pages
 * asks for. */
static int set_dirty_log(struct machine *vm, bool on)
{
	for (int i = 0; i < vm->mem.nregions; i++) {
		struct guest_region *g = &vm->mem.regions[i];
		int r = kvm_set_memory(&vm->kvm, (uint32_t)i, g->gpa, g->size, g->hva, on);
		if (r)
			return r;
	}
	return 0;
}

void machine_dirty_log(const struct machine *vm, uint32_t *ring_entries, uint64_t *full_exits)
{
	*ring_entries = vm->ring_entries;
	*full_exits = atomic_load_explicit(&vm->ring_full_exits, memory_order_relaxed);
}

int machine_mig_begin(struct machine *vm, char *err, size_t errlen)
{
	int r = guest_mem_mig_start(&vm->mem);
	if (r)
		return err_set(err, errlen, r, "no memory for the dirty page bitmap");
	if (!guest_mem_tracking(&vm->mem) && (r = set_dirty_log(vm, true))) {
		guest_mem_mig_stop(&vm->mem);
		(void)set_dirty_log(vm, false);
		return err_set(err, errlen, r, "cannot turn on KVM's dirty log: %s", strerror(-r));
	}
	/* what devices may write from now on without another pop */
	dirty_mark_devices(vm);
	if (vm->ring_entries)
		log_debug("migration: dirty pages from KVM's dirty ring (%u entries per vCPU)",
			  vm->ring_entries);
	else
		log_debug("migration: dirty pages from KVM's dirty bitmap");
	return 0;
}

void machine_mig_end(struct machine *vm)
{
	if (!guest_mem_mig_on(&vm->mem))
		return;
	if (guest_mem_tracking(&vm->mem) || vm->ring_entries) {
		/* the snapshot bitmap keeps what KVM logged meanwhile; a ring
		 * is left empty either way */
		char e[128];
		(void)collect_dirty_log(vm, e, sizeof(e));
	}
	if (!guest_mem_tracking(&vm->mem))
		(void)set_dirty_log(vm, false);
	guest_mem_mig_stop(&vm->mem);
	machine_set_throttle(vm, 0);
}

int machine_mig_collect(struct machine *vm, uint64_t *bits, uint64_t *pages, char *err,
			size_t errlen)
{
	/* KVM's log into the migration's bitmap (and the snapshot's), then
	 * the migration's taken; what devices hold in flight is marked again
	 * at once, on this thread, where they complete: a chain popped before
	 * and written after this point is sent again in the next pass */
	int r = collect_dirty_log(vm, err, errlen);
	if (r)
		return r;
	*pages = guest_mem_mig_take(&vm->mem, bits);
	dirty_mark_devices(vm);
	return 0;
}

int machine_mig_state(struct machine *vm, uint8_t **buf, size_t *len, char *err, size_t errlen)
{
	if (!vm->paused)
		return err_set(err, errlen, -EINVAL, "the microVM must be paused");
	int rc = check_saveable(vm, err, errlen);
	if (rc)
		return rc;
	kvm_platform_drain(&vm->kp);
	/* the memory travels in the stream, not in a file: a Full memory
	 * section with an identity of its own, which no snapshot file has (the
	 * destination forgets it: its next Diff is Full) */
	struct snap_mem_info mi = {.kind = SNAP_MEM_FULL, .size = vm->mem.size};
	if ((rc = snap_mem_new_id(mi.id)))
		return err_set(err, errlen, rc, "no random bytes: %s", strerror(-rc));
	return build_state(vm, &mi, buf, len, err, errlen);
}

int machine_mig_apply(struct machine *vm, const struct snap_reader *rd, char *err, size_t errlen)
{
	if (!vm->incoming)
		return err_set(err, errlen, -EINVAL, "not an incoming machine");
	int r = restore_state(vm, rd, false, err, errlen);
	if (r)
		return r;
	memset(vm->last_mem_id, 0, sizeof(vm->last_mem_id));
	dirty_mark_devices(vm);
	return 0;
}

int machine_tap_fds(struct machine *vm, int *fds, int max)
{
	int n = 0;
	for (uint32_t i = 0; i < vm->reg.n && n < max; i++) {
		struct dev_record *rec = &vm->reg.r[i];
		if (rec->ops != &virtio_net_ops)
			continue;
		const struct virtio_net *net = rec->dev;
		if (net->be && net->be->fd >= 0)
			fds[n++] = net->be->fd;
	}
	return n;
}

int machine_disks_lock(struct machine *vm, bool take, char *err, size_t errlen)
{
	for (uint32_t i = 0; i < vm->reg.n; i++) {
		struct dev_record *rec = &vm->reg.r[i];
		if (rec->ops != &virtio_blk_ops)
			continue;
		int r = virtio_blk_lock(rec->dev, take);
		if (r) {
			/* all or none */
			for (uint32_t j = 0; j < i; j++)
				if (vm->reg.r[j].ops == &virtio_blk_ops)
					(void)virtio_blk_lock(vm->reg.r[j].dev, !take);
			return err_set(err, errlen, r, "drive '%s': cannot %s its image's lock: %s",
				       rec->id, take ? "take" : "drop",
				       r == -EBUSY ? "another process holds it" : strerror(-r));
		}
	}
	return 0;
}

static void on_throttle_timer(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct machine *vm = ctx;
	uint64_t n;
	ssize_t r = read(fd, &n, sizeof(n));
	(void)r;
	if (atomic_load(&vm->throttle_pct) && !vm->paused)
		kick_vcpus(vm);
}

void machine_set_throttle(struct machine *vm, unsigned pct)
{
	if (pct > 99)
		pct = 99;
	atomic_store(&vm->throttle_pct, pct);
	if (pct && vm->throttle_tfd < 0) {
		vm->throttle_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
		if (vm->throttle_tfd < 0 ||
		    loop_add(vm->loop, vm->throttle_tfd, EPOLLIN, on_throttle_timer, vm)) {
			log_warn("migration: cannot throttle the vCPUs: no timer");
			if (vm->throttle_tfd >= 0)
				close(vm->throttle_tfd);
			vm->throttle_tfd = -1;
			atomic_store(&vm->throttle_pct, 0);
			return;
		}
	}
	if (vm->throttle_tfd >= 0) {
		struct timespec p = {.tv_nsec = pct ? (long)THROTTLE_PERIOD_NS : 0};
		struct itimerspec its = {.it_value = p, .it_interval = p};
		timerfd_settime(vm->throttle_tfd, 0, &its, NULL);
	}
}

unsigned machine_throttle(const struct machine *vm)
{
	return atomic_load(&vm->throttle_pct);
}
