/* SPDX-License-Identifier: MIT */
#include "vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/timerfd.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "arch/x86/acpi.h"
#include "arch/x86/boot.h"
#include "arch/x86/cpu.h"
#include "arch/x86/layout.h"
#include "arch/x86/mptable.h"
#include "console.h"
#include "arch/x86/aml.h"
#include "devices/acpi_pm.h"
#include "devices/bootdev.h"
#include "devices/bus.h"
#include "devices/i8042.h"
#include "devices/irq.h"
#include "devices/pvpanic.h"
#include "devices/rtc.h"
#include "devices/pci/pci.h"
#include "devices/serial.h"
#include "control.h"
#include "devices/virtio/virtio_balloon.h"
#include "devices/virtio/virtio_blk.h"
#include "devices/virtio/virtio_mmio.h"
#include "devices/virtio/virtio_net.h"
#include "devices/virtio/virtio_pci.h"
#include "devices/virtio/virtio_rng.h"
#include "devices/virtio/virtio_vsock.h"
#include "event/loop.h"
#include "kvm/kvm.h"
#include "kvm/platform_kvm.h"
#include "mem/guest_mem.h"
#include "util/log.h"
#include "vcpu_exit.h"

/* Files larger than this are not kernels or initrds we will read. */
#define MAX_KERNEL_SIZE (512ULL << 20)
/* Stack of a vCPU thread: ample for exit handling, smaller than a 2 MiB huge page. */
#define VCPU_STACK_SIZE ((size_t)256 << 10)

struct vcpu {
	struct kvm_vcpu kv;
	pthread_t thread;
	bool started;
	struct vmm *vm;
};

struct vmm {
	struct vm_config cfg;
	uint64_t start_ns;
	struct kvm kvm;
	struct guest_mem mem;
	struct boot_image img;
	struct bus pio, mmio;
	struct irq_line irq_com1, irq_rtc, irq_sci, irq_kbd, irq_aux;

	struct serial serial;
	struct rtc rtc;
	struct i8042 i8042;
	struct acpi_pm pm;
	struct pvpanic pvpanic;
	struct bootdev bootdev;

	/* PCI and virtio */
	struct kvm_platform kp;
	bool kp_ready;
	struct pci_bus pci;
	bool pci_ready;
	uint32_t nblk;
	struct virtio_blk blk[CONFIG_MAX_DISKS];
	bool rng_ready;
	struct virtio_rng rng;
	bool balloon_ready;
	struct virtio_balloon balloon;
	uint32_t nnet;
	struct virtio_net net[CONFIG_MAX_NICS];
	bool vsock_ready;
	struct virtio_vsock vsock;
	bool control_ready;
	struct control control;
	uint32_t nvpci, nvmmio;
	struct virtio_pci vpci[CONFIG_MAX_DISKS + CONFIG_MAX_NICS + 3];
	struct virtio_mmio vmmio[VIRTIO_MMIO_MAX_DEVS];
	uint8_t mmio_aml[2048];
	size_t mmio_aml_len;
	uint32_t nmmio_planned;

	struct vcpu *vcpus;
	uint32_t ncpus;

	struct loop loop;
	struct console console;
	int stop_efd;     /* written when a vCPU decides the VM is over */
	int rx_efd;       /* the UART made room for console input */
	int rtc_tfd;      /* drives the RTC's update/alarm/periodic interrupts */
	bool in_paused;
	bool in_eof;
	uint8_t pending[512];
	size_t pending_len;

	_Atomic int exit_code; /* -1 while running */
	bool booted;
};

/* ---- stopping ----------------------------------------------------------- */

/* Record why the VM ends (first reason wins) and wake the event loop. */
static void vmm_request_exit(struct vmm *vm, int code)
{
	int expected = -1;
	if (atomic_compare_exchange_strong(&vm->exit_code, &expected, code)) {
		uint64_t one = 1;
		ssize_t r = write(vm->stop_efd, &one, sizeof(one));
		(void)r;
	}
}

static void kick_signal(int sig)
{
	(void)sig; /* only interrupts KVM_RUN */
}

static void kick_vcpus(struct vmm *vm)
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
	struct vmm *vm = ctx;
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

static void on_booted(void *ctx)
{
	struct vmm *vm = ctx;
	uint64_t ns = now_ns() - vm->start_ns;
	log_info("guest boot time: %llu.%03llu ms since visor start",
		 (unsigned long long)(ns / 1000000), (unsigned long long)(ns / 1000 % 1000));
}

static void on_serial_tx(void *ctx, const uint8_t *buf, size_t len)
{
	struct vmm *vm = ctx;
	console_write(&vm->console, buf, len);
}

/* ---- vCPU threads ------------------------------------------------------- */

static void *vcpu_thread(void *arg)
{
	struct vcpu *c = arg;
	struct vmm *vm = c->vm;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	char name[16];
	snprintf(name, sizeof(name), "vcpu%d", c->kv.id);
	pthread_setname_np(pthread_self(), name);

	while (atomic_load(&vm->exit_code) < 0) {
		int r = ioctl(c->kv.fd, KVM_RUN, 0);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				c->kv.run->immediate_exit = 0;
				continue;
			}
			log_error("vcpu %d: KVM_RUN failed: %s", c->kv.id, strerror(errno));
			vmm_request_exit(vm, VMM_EXIT_CRASH);
			break;
		}
		struct kvm_run *run = c->kv.run;
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
	return NULL;
}

/* ---- console input (event loop thread) ---------------------------------- */

static void flush_pending(struct vmm *vm)
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
			loop_mod(&vm->loop, vm->console.in_fd, 0);
		vm->in_paused = true;
	} else if (vm->in_paused) {
		if (!vm->in_eof)
			loop_mod(&vm->loop, vm->console.in_fd, EPOLLIN);
		vm->in_paused = false;
	}
}

/* vCPU thread: the guest read from a UART FIFO that had refused input. */
static void on_serial_rx_ready(void *ctx)
{
	struct vmm *vm = ctx;
	uint64_t one = 1;
	ssize_t r = write(vm->rx_efd, &one, sizeof(one));
	(void)r;
}

static void on_stdin(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct vmm *vm = ctx;
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
	struct vmm *vm = ctx;
	uint64_t ticks;
	ssize_t rd = read(fd, &ticks, sizeof(ticks));
	(void)rd;
	uint64_t ns = rtc_tick(&vm->rtc);
	if (ns > 1000000000ULL)
		ns = 1000000000ULL;
	if (ns < 100000)
		ns = 100000;
	struct itimerspec its = {.it_value = {.tv_sec = (time_t)(ns / 1000000000ULL),
					      .tv_nsec = (long)(ns % 1000000000ULL)}};
	timerfd_settime(fd, 0, &its, NULL);
}

static void on_stop(struct loop *l, int fd, uint32_t events, void *ctx)
{
	uint64_t v;
	ssize_t r = read(fd, &v, sizeof(v));
	(void)r;
	loop_stop(l);
}

/* ---- assembly ------------------------------------------------------------ */

/* Read a whole file (kernel) with size and type checks. */
static uint8_t *read_file(const char *what, const char *path, size_t *size_out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		log_error("cannot open %s '%s': %s", what, path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		log_error("%s '%s' is not a regular file", what, path);
		close(fd);
		return NULL;
	}
	if ((uint64_t)st.st_size > MAX_KERNEL_SIZE || st.st_size == 0) {
		log_error("%s '%s' has an implausible size (%lld bytes)", what, path,
			  (long long)st.st_size);
		close(fd);
		return NULL;
	}
	size_t size = (size_t)st.st_size;
	uint8_t *buf = malloc(size);
	size_t got = 0;
	while (buf && got < size) {
		ssize_t r = read(fd, buf + got, size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			log_error("cannot read %s '%s': %s", what, path, r < 0 ? strerror(errno) : "short read");
			free(buf);
			buf = NULL;
			break;
		}
		got += (size_t)r;
	}
	close(fd);
	*size_out = size;
	return buf;
}

static int load_initrd(struct vmm *vm, uint64_t *gpa, uint64_t *size)
{
	const char *path = vm->cfg.initrd;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		log_error("cannot open initrd '%s': %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
		log_error("initrd '%s' is not a non-empty regular file", path);
		close(fd);
		return -1;
	}
	char err[256];
	if (boot_place_initrd(&vm->mem, &vm->img, (uint64_t)st.st_size, gpa, err, sizeof(err))) {
		log_error("%s", err);
		close(fd);
		return -1;
	}
	uint8_t *dst = gpa_to_hva(&vm->mem, *gpa, (uint64_t)st.st_size);
	uint64_t got = 0;
	while (dst && got < (uint64_t)st.st_size) {
		ssize_t r = read(fd, dst + got, (size_t)((uint64_t)st.st_size - got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			log_error("cannot read initrd '%s': %s", path, r < 0 ? strerror(errno) : "short read");
			close(fd);
			return -1;
		}
		got += (uint64_t)r;
	}
	close(fd);
	*size = (uint64_t)st.st_size;
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

static int setup_guest_image(struct vmm *vm)
{
	char err[256];
	size_t ksize;
	uint8_t *kernel = read_file("kernel", vm->cfg.kernel, &ksize);
	if (!kernel)
		return -1;
	int r = boot_load_kernel(kernel, ksize, &vm->mem, &vm->img, err, sizeof(err));
	free(kernel);
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
	if (vm->cfg.initrd && load_initrd(vm, &in.initrd_gpa, &in.initrd_size))
		return -1;

	/* Firmware tables: ACPI in the BIOS area, MP table in the EBDA. */
	uint8_t *acpi = gpa_to_hva(&vm->mem, GPA_ACPI_TABLES, ACPI_TABLES_MAX);
	struct acpi_config ac = {
		.ncpus = vm->ncpus,
		.pci = true,
		.sb_extra_aml = vm->mmio_aml_len ? vm->mmio_aml : NULL,
		.sb_extra_aml_len = vm->mmio_aml_len,
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

static int open_kvm(struct vmm *vm)
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
	for (int i = 0; i < vm->mem.nregions; i++) {
		struct guest_region *g = &vm->mem.regions[i];
		if ((r = kvm_set_memory(&vm->kvm, (uint32_t)i, g->gpa, g->size, g->hva))) {
			log_error("cannot register guest memory with KVM: %s", strerror(-r));
			return -1;
		}
	}
	return 0;
}

static int setup_devices(struct vmm *vm)
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
	    (r = bootdev_init(&vm->bootdev, on_booted, vm))) {
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

/* How many devices sit on virtio-mmio; their ACPI description (it goes
 * into the DSDT, which is built before the devices are attached). */
static int plan_virtio_mmio(struct vmm *vm)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < vm->cfg.ndisks; i++)
		n += vm->cfg.disks[i].transport == TRANSPORT_MMIO;
	n += vm->cfg.rng && vm->cfg.rng_transport == TRANSPORT_MMIO;
	n += vm->cfg.balloon.enabled && vm->cfg.balloon.transport == TRANSPORT_MMIO;
	for (uint32_t i = 0; i < vm->cfg.nnics; i++)
		n += vm->cfg.nics[i].transport == TRANSPORT_MMIO;
	n += vm->cfg.vsock.enabled && vm->cfg.vsock.transport == TRANSPORT_MMIO;
	if (n > VIRTIO_MMIO_MAX_DEVS) {
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

/* Open disk images and create the virtio devices (no KVM needed yet, so
 * bad disk options are reported before the host check). */
static int create_virtio_devices(struct vmm *vm)
{
	char err[256];
	for (uint32_t i = 0; i < vm->cfg.ndisks; i++) {
		const struct disk_config *dc = &vm->cfg.disks[i];
		if (virtio_blk_create(&vm->blk[i], dc->path, dc->readonly, dc->id, &vm->mem, &vm->loop,
				      err, sizeof(err))) {
			log_error("--disk %s", err);
			return -1;
		}
		vm->nblk++;
	}
	for (uint32_t i = 0; i < vm->cfg.nnics; i++) {
		const struct net_config *nc = &vm->cfg.nics[i];
		uint8_t mac[6];
		if (nc->mac[0]) {
			if (net_parse_mac(nc->mac, mac)) {
				log_error("--net: '%s' is not a unicast MAC address", nc->mac);
				return -1;
			}
		} else {
			net_default_mac(nc->tap, i, mac);
		}
		if (virtio_net_create(&vm->net[i], nc->tap, mac, &vm->mem, &vm->loop, err,
				      sizeof(err))) {
			log_error("--net tap=%s: %s", nc->tap, err);
			return -1;
		}
		vm->nnet++;
	}
	if (vm->cfg.vsock.enabled) {
		if (virtio_vsock_create(&vm->vsock, vm->cfg.vsock.cid, vm->cfg.vsock.uds, &vm->mem,
					&vm->loop, err, sizeof(err))) {
			log_error("--vsock %s", err);
			return -1;
		}
		vm->vsock_ready = true;
	}
	if (vm->cfg.rng) {
		int r = virtio_rng_init(&vm->rng, &vm->mem, &vm->loop);
		if (r) {
			log_error("cannot create the virtio-rng device: %s", strerror(-r));
			return -1;
		}
		vm->rng_ready = true;
	}
	if (vm->cfg.balloon.enabled) {
		const struct balloon_config *bc = &vm->cfg.balloon;
		int r = virtio_balloon_create(&vm->balloon, bc->size & ~0xfffULL, bc->deflate_on_oom,
					      bc->stats_period, &vm->mem, &vm->loop);
		if (r) {
			log_error("cannot create the virtio-balloon device: %s", strerror(-r));
			return -1;
		}
		vm->balloon_ready = true;
		if (bc->no_reporting)
			virtio_balloon_disable_reporting(&vm->balloon);
	}
	return 0;
}

static int attach_virtio(struct vmm *vm, struct virtio_dev *d, enum virtio_transport_kind t)
{
	int r;
	if (t == TRANSPORT_MMIO) {
		uint32_t i = vm->nvmmio;
		r = virtio_mmio_init(&vm->vmmio[i], d, &vm->kp.p, VIRTIO_MMIO_DEV_BASE(i),
				     VIRTIO_MMIO_DEV_GSI(i));
		if (!r)
			vm->nvmmio++;
	} else {
		r = virtio_pci_create(&vm->vpci[vm->nvpci], &vm->pci, d, &vm->kp.p, -1);
		if (r >= 0) {
			vm->nvpci++;
			r = 0;
		}
	}
	if (r)
		log_error("cannot attach %s over %s: %s", d->name, t == TRANSPORT_MMIO ? "MMIO" : "PCI",
			  strerror(-r));
	return r;
}

static void on_cf9_write(void *ctx, uint8_t val)
{
	struct vmm *vm = ctx;
	acpi_pm_reset_write(&vm->pm, val);
}

static int setup_pci_and_virtio(struct vmm *vm)
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
	for (uint32_t i = 0; i < vm->nblk; i++)
		if (attach_virtio(vm, &vm->blk[i].vdev, vm->cfg.disks[i].transport))
			return -1;
	for (uint32_t i = 0; i < vm->nnet; i++)
		if (attach_virtio(vm, &vm->net[i].vdev, vm->cfg.nics[i].transport))
			return -1;
	if (vm->vsock_ready && attach_virtio(vm, &vm->vsock.vdev, vm->cfg.vsock.transport))
		return -1;
	if (vm->rng_ready && attach_virtio(vm, &vm->rng.vdev, vm->cfg.rng_transport))
		return -1;
	if (vm->balloon_ready && attach_virtio(vm, &vm->balloon.vdev, vm->cfg.balloon.transport))
		return -1;
	return 0;
}

/* ---- control socket (event loop thread) ---------------------------------- */

static void control_cmd(void *ctx, const char *line, char *reply, size_t len)
{
	struct vmm *vm = ctx;
	char arg[64] = "";
	if (!strncmp(line, "balloon ", 8)) {
		uint64_t bytes;
		if (!vm->balloon_ready) {
			snprintf(reply, len, "ERROR no balloon device (start with --balloon)");
		} else if (sscanf(line + 8, "%63s", arg) != 1 || parse_size(arg, &bytes)) {
			snprintf(reply, len, "ERROR usage: balloon SIZE (e.g. balloon 128M)");
		} else if (bytes & 0xfff) {
			snprintf(reply, len, "ERROR balloon size must be a multiple of 4 KiB");
		} else {
			int r = virtio_balloon_set_target(&vm->balloon, bytes);
			if (r)
				snprintf(reply, len, "ERROR %s", r == -EINVAL ? "balloon larger than guest memory"
									    : strerror(-r));
			else
				snprintf(reply, len, "OK target=%lluM", (unsigned long long)(bytes >> 20));
		}
	} else if (!strcmp(line, "balloon-stats")) {
		struct virtio_balloon_info bi;
		struct virtio_balloon_stats st;
		if (!vm->balloon_ready || virtio_balloon_get_info(&vm->balloon, &bi)) {
			snprintf(reply, len, "ERROR no balloon device");
			return;
		}
		(void)virtio_balloon_request_stats(&vm->balloon); /* refresh for next time */
		int have = virtio_balloon_get_stats(&vm->balloon, &st) == 0;
		snprintf(reply, len,
			 "OK target=%lluK actual=%lluK inflated=%lluK reported=%lluK free=%lldK total=%lldK",
			 (unsigned long long)bi.target_pages * 4, (unsigned long long)bi.actual_pages * 4,
			 (unsigned long long)bi.inflated_pages * 4,
			 (unsigned long long)(bi.reported_bytes >> 10),
			 have && (st.valid & (1u << VIRTIO_BALLOON_S_MEMFREE))
				 ? (long long)(st.val[VIRTIO_BALLOON_S_MEMFREE] >> 10)
				 : -1LL,
			 have && (st.valid & (1u << VIRTIO_BALLOON_S_MEMTOT))
				 ? (long long)(st.val[VIRTIO_BALLOON_S_MEMTOT] >> 10)
				 : -1LL);
	} else {
		snprintf(reply, len, "ERROR unknown command (balloon SIZE, balloon-stats)");
	}
}

static int setup_vcpus(struct vmm *vm)
{
	vm->vcpus = calloc(vm->ncpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return -1;
	for (uint32_t i = 0; i < vm->ncpus; i++) {
		struct vcpu *c = &vm->vcpus[i];
		c->vm = vm;
		c->kv.fd = -1;
		int r = kvm_create_vcpu(&vm->kvm, (int)i, &c->kv);
		if (!r)
			r = x86_vcpu_init(&vm->kvm, &c->kv, vm->ncpus);
		if (!r && i == 0)
			r = x86_vcpu_set_boot_regs(&c->kv, &vm->img);
		if (r) {
			log_error("cannot set up vCPU %u: %s", i, strerror(-r));
			return -1;
		}
	}
	return 0;
}

struct vmm *vmm_create(const struct vm_config *cfg, uint64_t start_ns)
{
	struct vmm *vm = calloc(1, sizeof(*vm));
	if (!vm)
		return NULL;
	vm->cfg = *cfg;
	vm->start_ns = start_ns;
	vm->ncpus = cfg->cpus;
	vm->kvm.fd = vm->kvm.vm_fd = -1;
	vm->stop_efd = vm->rx_efd = vm->rtc_tfd = -1;
	vm->loop.epfd = -1;
	atomic_store(&vm->exit_code, -1);

	/* Inputs first: a bad file or size is reported before touching KVM. */
	if (check_host_memory(cfg->mem_size))
		goto fail;
	int r = guest_mem_init(&vm->mem, cfg->mem_size, GPA_MMIO_HOLE, GPA_MMIO_HOLE_END);
	if (r) {
		log_error("cannot allocate %llu MiB of guest memory: %s",
			  (unsigned long long)(cfg->mem_size >> 20), strerror(-r));
		goto fail;
	}
	r = loop_init(&vm->loop);
	if (r) {
		log_error("cannot create the event loop: %s", strerror(-r));
		goto fail;
	}
	if (plan_virtio_mmio(vm) || create_virtio_devices(vm) || setup_guest_image(vm) ||
	    open_kvm(vm))
		goto fail;
	kvm_platform_init(&vm->kp, &vm->kvm, &vm->loop, &vm->pio, &vm->mmio);
	vm->kp_ready = true;
	if (setup_devices(vm) || setup_pci_and_virtio(vm) || setup_vcpus(vm))
		goto fail;
	if (cfg->control) {
		char err[256];
		if (control_init(&vm->control, cfg->control, &vm->loop, control_cmd, vm, err,
				 sizeof(err))) {
			log_error("--control %s", err);
			goto fail;
		}
		vm->control_ready = true;
	}
	return vm;
fail:
	vmm_destroy(vm);
	return NULL;
}

int vmm_run(struct vmm *vm)
{
	int r = 0;
	vm->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vm->rx_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vm->rtc_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (vm->stop_efd < 0 || vm->rx_efd < 0 || vm->rtc_tfd < 0) {
		log_error("cannot set up the event loop: %s", strerror(errno));
		return VMM_EXIT_ERROR;
	}
	loop_add(&vm->loop, vm->stop_efd, EPOLLIN, on_stop, vm);
	loop_add(&vm->loop, vm->rx_efd, EPOLLIN, on_retry, vm);
	serial_set_rx_ready_cb(&vm->serial, on_serial_rx_ready, vm);
	loop_add(&vm->loop, vm->rtc_tfd, EPOLLIN, on_rtc_timer, vm);
	struct itimerspec first = {.it_value = {.tv_sec = 1}};
	timerfd_settime(vm->rtc_tfd, 0, &first, NULL);
	console_init(&vm->console, STDIN_FILENO, STDOUT_FILENO);
	r = loop_add(&vm->loop, STDIN_FILENO, EPOLLIN, on_stdin, vm);
	if (r == -EPERM) {
		/* stdin is a regular file: epoll cannot watch it; feed it by timer */
		log_debug("stdin is not pollable; console input disabled");
		vm->in_eof = true;
	} else if (r) {
		vm->in_eof = true;
	}

	/* vCPU threads get SIGUSR1 (the kick); every other thread blocks it. */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_signal;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	/* vCPU threads need little stack (exit handling and device
	 * registers).  glibc's default is 8 MiB, and with transparent huge
	 * pages set to "always" a stack mapping that covers an aligned 2 MiB
	 * block gets a whole huge page on its first touch: 2 MiB of RSS per
	 * vCPU for nothing.  A stack smaller than a huge page cannot. */
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, VCPU_STACK_SIZE);
	for (uint32_t i = 0; i < vm->ncpus; i++) {
		struct vcpu *c = &vm->vcpus[i];
		if (pthread_create(&c->thread, &attr, vcpu_thread, c)) {
			log_error("cannot start vCPU thread %u", i);
			vmm_request_exit(vm, VMM_EXIT_ERROR);
			break;
		}
		c->started = true;
	}
	pthread_attr_destroy(&attr);
	r = loop_run(&vm->loop);
	if (r)
		vmm_request_exit(vm, VMM_EXIT_ERROR);
	kick_vcpus(vm);
	for (uint32_t i = 0; i < vm->ncpus; i++) {
		if (vm->vcpus[i].started)
			pthread_join(vm->vcpus[i].thread, NULL);
		vm->vcpus[i].started = false;
	}
	console_restore();
	if (vm->console.out_dropped)
		log_warn("%llu bytes of console output were dropped",
			 (unsigned long long)vm->console.out_dropped);
	return atomic_load(&vm->exit_code);
}

void vmm_destroy(struct vmm *vm)
{
	if (!vm)
		return;
	if (vm->vcpus) {
		for (uint32_t i = 0; i < vm->ncpus; i++)
			if (vm->vcpus[i].kv.fd >= 0 && vm->vcpus[i].kv.run)
				kvm_destroy_vcpu(&vm->vcpus[i].kv);
		free(vm->vcpus);
	}
	/* transports first (they unregister ioeventfds and MSI routes, which
	 * needs the VM), then the devices (waiting for I/O still in flight),
	 * then KVM and guest memory */
	if (vm->control_ready)
		control_destroy(&vm->control);
	for (uint32_t i = 0; i < vm->nvpci; i++)
		virtio_pci_destroy(&vm->vpci[i]);
	for (uint32_t i = 0; i < vm->nvmmio; i++)
		virtio_mmio_destroy(&vm->vmmio[i]);
	if (vm->pci_ready)
		pci_bus_destroy(&vm->pci);
	for (uint32_t i = 0; i < vm->nblk; i++)
		virtio_blk_destroy(&vm->blk[i]);
	if (vm->rng_ready)
		virtio_rng_destroy(&vm->rng);
	if (vm->balloon_ready)
		virtio_balloon_destroy(&vm->balloon);
	for (uint32_t i = 0; i < vm->nnet; i++)
		virtio_net_destroy(&vm->net[i]);
	if (vm->vsock_ready)
		virtio_vsock_destroy(&vm->vsock);
	if (vm->kp_ready)
		kvm_platform_destroy(&vm->kp);
	kvm_close(&vm->kvm);
	guest_mem_destroy(&vm->mem);
	if (vm->stop_efd >= 0)
		close(vm->stop_efd);
	if (vm->rx_efd >= 0)
		close(vm->rx_efd);
	if (vm->rtc_tfd >= 0)
		close(vm->rtc_tfd);
	serial_destroy(&vm->serial);
	rtc_destroy(&vm->rtc);
	i8042_destroy(&vm->i8042);
	acpi_pm_destroy(&vm->pm);
	pvpanic_destroy(&vm->pvpanic);
	loop_destroy(&vm->loop);
	free(vm);
}
