/* SPDX-License-Identifier: MIT */
/*
 * Per-thread seccomp filters: the rule lists of each thread kind, the
 * filter file parser, the spawner (see seccomp.h).
 */
#include "seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <malloc.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <sys/prctl.h>
#include <time.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "util/log.h"

#define SEC_MAX_COND 6

struct sec_cond {
	uint8_t arg;	   /* 0..5 */
	enum scmp_compare op;
	uint64_t mask;	   /* masked_eq only */
	uint64_t value;
};

struct sec_rule {
	int nr;
	uint8_t ncond;
	struct sec_cond cond[SEC_MAX_COND];
};

struct sec_list {
	struct sec_rule *r;
	size_t n, cap;
	bool from_file;
};

static const char *const kind_names[SEC_NKINDS] = {
	[SEC_VMM] = "vmm",	 [SEC_VCPU] = "vcpu",	    [SEC_API] = "api",
	[SEC_CONSOLE] = "console", [SEC_MIGRATION] = "migration", [SEC_POSTCOPY] = "postcopy",
	[SEC_SPAWNER] = "spawner", [SEC_SETUP] = "setup",	    [SEC_MIG_RUN] = "migration-run",
};

static struct sec_list lists[SEC_NKINDS];
static enum sec_mode sec_mode = SEC_MODE_OFF;
static bool sec_started;

const char *sec_kind_name(enum sec_kind k)
{
	return (unsigned)k < SEC_NKINDS ? kind_names[k] : NULL;
}

bool sec_active(void)
{
	return sec_started && sec_mode != SEC_MODE_OFF;
}

/* ---- the built-in rules ------------------------------------------------------ */

/* Every thread: memory (never executable; mremap for realloc), its own
 * exit, futexes, the signals it is sent (the vCPU kick, the stop), time,
 * random bytes, reading and writing the fds it was given (eventfds, the
 * log on stderr), closing them. */
static const char *const g_base[] = {
	"brk", "close", "clock_gettime", "clock_nanosleep", "exit", "exit_group", "futex",
	"getpid", "getrandom", "gettid", "madvise", "mremap", "munmap", "nanosleep", "read",
	"restart_syscall", "rt_sigprocmask", "rt_sigreturn", "sched_yield", "sendto", "write",
	NULL,
};
/* The event loop once the guest runs (SEC_VMM, on top of SEC_SETUP): what
 * the devices a guest drives need, and nothing for files, new sockets but
 * vsock's, processes' scheduling or set-up.  Memory, exits, futexes,
 * signals, time, random bytes and fd reads and writes as every kind. */
static const char *const g_run_base[] = {
	"brk", "close", "clock_gettime", "exit", "exit_group", "futex", "getpid", "getrandom",
	"madvise", "mremap", "munmap", "read", "restart_syscall", "rt_sigprocmask",
	"rt_sigreturn", "sendto", "write", NULL,
};
/* The loop's own work: waiting, the fds a device makes when the guest
 * activates it (ioeventfds, a rate limiter's or vsock's timer, vsock's
 * epoll set), a tap's frames (readv/writev), virtio-blk's ring, kicking
 * vCPU threads (pause, the migration throttle: pthread_kill is getpid
 * and tgkill), the disks' locks passing to a migration's destination at
 * the switch-over (and back if it fails). */
static const char *const g_run_loop[] = {
	"epoll_wait", "epoll_ctl", "poll", "eventfd2", "timerfd_create", "timerfd_settime",
	"epoll_create1", "fcntl", "readv", "writev", "io_uring_enter", "tgkill", "flock", NULL,
};
/* vsock's host side: connections from and to the host's Unix sockets
 * (socket(AF_UNIX) below). */
static const char *const g_run_vsock[] = {"accept4", "connect", "recvfrom", "recvmsg",
					  "sendmsg", "shutdown", "getsockopt", NULL};
/* Waiting on fds. */
static const char *const g_wait[] = {"epoll_ctl", "epoll_pwait", "epoll_wait", "poll", "ppoll",
				     NULL};
/* Making what the event loop and a migration wait on. */
static const char *const g_fdsetup[] = {
	"epoll_create1", "eventfd2", "timerfd_create", "timerfd_settime", "timerfd_gettime",
	"pipe2", "fcntl", "dup", "dup3", NULL,
};
/* The API thread: its clients (the listening socket is made before). */
static const char *const g_api[] = {"accept4", "epoll_ctl", "epoll_wait", "recvfrom", "sendto",
				    "shutdown", "timerfd_settime", NULL};
/* A vCPU: a device it emulates may re-arm what the loop waits on (e.g.
 * virtio-net's tap after the driver added receive buffers). */
static const char *const g_vcpu[] = {"epoll_ctl", NULL};
/* Waiting in poll: the console writer (stdout and its wake-up eventfd),
 * the post-copy fault thread. */
static const char *const g_console[] = {"poll", "ppoll", NULL};
/* The console writer: a serial output FIFO whose reader came back is
 * opened again (console.c, out_fifo_retry; not on the vCPU that wrote). */
static const char *const g_fifo[] = {"openat", NULL};
/* Files: disk images, snapshots, kernels, the metrics and log files, the
 * API and migration sockets' paths. */
static const char *const g_files[] = {
	"openat", "newfstatat", "fstat", "statx", "lseek", "pread64", "preadv", "pwrite64",
	"pwritev", "readv", "writev", "fallocate", "fdatasync", "fsync", "ftruncate", "rename",
	"renameat", "renameat2", "unlink", "unlinkat", "mkdir", "mkdirat", "chmod", "fchmod",
	"umask", "flock", "readlink", "memfd_create", "mincore", "access", "faccessat",
	"faccessat2", NULL,
};
static const char *const g_uring[] = {"io_uring_setup", "io_uring_enter", "io_uring_register",
				      NULL};
/* Sockets; socket() itself is allowed per family (below). */
static const char *const g_sock[] = {
	"accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt", "listen",
	"recvfrom", "recvmsg", "sendmsg", "sendto", "setsockopt", "shutdown", NULL,
};
/* A migration's connection once it is up (SEC_MIG_RUN, on top of
 * SEC_MIGRATION): the stream's messages (the memfd and taps local mode
 * sends or receives ride on sendmsg/recvmsg), waiting on it and on
 * post-copy's page requests, and what post-copy's start makes (a pipe for
 * the fault thread's requests, two eventfds).  No socket, connect, bind,
 * listen or file call. */
static const char *const g_mig_run[] = {"recvfrom", "recvmsg", "sendmsg", "shutdown",
					"getsockopt", "pipe2", "eventfd2", NULL};
/* userfaultfd memory (the Uffd back end, post-copy) and the handler's
 * liveness (a pidfd). */
static const char *const g_uffd[] = {"userfaultfd", "pidfd_open", NULL};
/* A completed migration's source lowers its priority; OpenSSL (TLS)
 * reads the host's memory and CPUs when it starts. */
static const char *const g_sched[] = {"sched_setscheduler", "sched_getscheduler", "sysinfo",
				      "sched_getaffinity", "uname", "getuid", "geteuid", "getgid",
				      "getegid", NULL};
/* The loop: signal handlers (SIGINT, SIGTERM, the kick), kicking vCPU
 * threads, its fd limit, the host's memory. */
static const char *const g_loop[] = {"rt_sigaction", "tgkill", "prlimit64", "sysinfo", "geteuid",
				     "getuid", NULL};
/* The spawner's new threads start (glibc registers rseq and the robust
 * futex list) and install their own filter. */
static const char *const g_spawn[] = {"seccomp", "rseq", "set_robust_list", "prctl", NULL};

/* ioctl requests, by what they are for */
static const unsigned long i_kvm_sys[] = {
	KVM_GET_API_VERSION, KVM_CREATE_VM, KVM_CHECK_EXTENSION, KVM_GET_VCPU_MMAP_SIZE,
	KVM_GET_SUPPORTED_CPUID, KVM_GET_MSR_INDEX_LIST, KVM_GET_MSR_FEATURE_INDEX_LIST,
	KVM_GET_MSRS, 0,
};
static const unsigned long i_kvm_vm[] = {
	KVM_CREATE_VCPU, KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2, KVM_SET_USER_MEMORY_REGION,
	KVM_SET_TSS_ADDR, KVM_SET_IDENTITY_MAP_ADDR, KVM_IRQFD, KVM_IOEVENTFD, KVM_IRQ_LINE,
	KVM_SIGNAL_MSI, KVM_SET_GSI_ROUTING, KVM_GET_DIRTY_LOG, KVM_GET_CLOCK, KVM_SET_CLOCK,
	KVM_GET_IRQCHIP, KVM_SET_IRQCHIP, KVM_GET_PIT2, KVM_SET_PIT2, KVM_ENABLE_CAP,
	KVM_CHECK_EXTENSION, KVM_SET_TSC_KHZ, KVM_GET_TSC_KHZ,
#ifdef KVM_RESET_DIRTY_RINGS
	KVM_RESET_DIRTY_RINGS,
#endif
	0,
};
/* a vCPU's state: set up at creation, saved and restored by the loop */
static const unsigned long i_kvm_vcpu_state[] = {
	KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS, KVM_SET_SREGS, KVM_GET_SREGS2,
	KVM_SET_SREGS2, KVM_GET_FPU, KVM_SET_FPU, KVM_GET_XSAVE, KVM_GET_XSAVE2, KVM_SET_XSAVE,
	KVM_GET_XCRS, KVM_SET_XCRS, KVM_GET_MSRS, KVM_SET_MSRS, KVM_GET_LAPIC, KVM_SET_LAPIC,
	KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS, KVM_GET_MP_STATE, KVM_SET_MP_STATE,
	KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS, KVM_GET_CPUID2, KVM_SET_CPUID2, KVM_GET_TSC_KHZ,
	KVM_SET_TSC_KHZ, KVM_GET_NESTED_STATE, KVM_SET_NESTED_STATE, KVM_KVMCLOCK_CTRL,
	KVM_TRANSLATE, KVM_ENABLE_CAP, KVM_CHECK_EXTENSION, 0,
};
/* what a vCPU thread itself does: run, be told it was paused, inject the
 * interrupts of the devices it emulates, report a failure's registers,
 * reset its harvested dirty ring */
static const unsigned long i_kvm_vcpu_run[] = {
	KVM_RUN, KVM_KVMCLOCK_CTRL, KVM_IRQ_LINE, KVM_SIGNAL_MSI, KVM_GET_REGS, KVM_GET_SREGS,
	KVM_TRANSLATE,
#ifdef KVM_RESET_DIRTY_RINGS
	/* a full dirty ring is harvested by its vCPU (machine.c) */
	KVM_RESET_DIRTY_RINGS,
#endif
	0,
};
static const unsigned long i_tap[] = {
	TUNSETIFF, TUNGETIFF, TUNGETFEATURES, TUNSETOFFLOAD, TUNSETVNETHDRSZ, TUNSETVNETLE, 0,
};
static const unsigned long i_uffd[] = {
	UFFDIO_API, UFFDIO_REGISTER, UFFDIO_UNREGISTER, UFFDIO_COPY, UFFDIO_ZEROPAGE, UFFDIO_WAKE,
	USERFAULTFD_IOC_NEW, 0,
};
/* post-copy's destination on its connection thread: guest memory is
 * registered, pages installed, faults woken, and at the end unregistered;
 * the userfaultfd itself was made before the thread narrowed */
static const unsigned long i_uffd_run[] = {
	UFFDIO_REGISTER, UFFDIO_UNREGISTER, UFFDIO_COPY, UFFDIO_ZEROPAGE, UFFDIO_WAKE, 0,
};
static const unsigned long i_files[] = {BLKGETSIZE64, FIONREAD, 0};
/* requests the loop makes only before the guest first runs: those that
 * make things (a VM, its vCPUs and interrupt controllers, a tap, a
 * userfaultfd) and those that set the state a boot, a snapshot's load or
 * an incoming migration gives the VM (vCPU registers, MSRs, CPUID, LAPIC,
 * events, nested state, TSC frequency; the PIC, IOAPIC and PIT; a dirty
 * ring's size, which KVM takes only before vCPUs exist).  The loop's
 * set-up list has them, its narrow list (SEC_VMM, once the guest runs)
 * not: from then on it only reads state (a snapshot, a migration's
 * switch-over), keeps the clock across a pause (KVM_GET/SET_CLOCK,
 * KVM_KVMCLOCK_CTRL) and wires what the guest activates (irqfds,
 * ioeventfds, MSI routes, memory slots' dirty logging). */
static const unsigned long i_before_run[] = {
	KVM_GET_API_VERSION, KVM_CREATE_VM, KVM_GET_VCPU_MMAP_SIZE, KVM_GET_SUPPORTED_CPUID,
	KVM_CREATE_VCPU, KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2, KVM_SET_TSS_ADDR,
	KVM_SET_IDENTITY_MAP_ADDR, KVM_ENABLE_CAP, KVM_SET_IRQCHIP, KVM_SET_PIT2,
	KVM_SET_REGS, KVM_SET_SREGS, KVM_SET_SREGS2, KVM_SET_FPU, KVM_SET_XSAVE, KVM_SET_XCRS,
	KVM_SET_MSRS, KVM_SET_LAPIC, KVM_SET_VCPU_EVENTS, KVM_SET_MP_STATE, KVM_SET_DEBUGREGS,
	KVM_SET_CPUID2, KVM_SET_TSC_KHZ, KVM_SET_NESTED_STATE, KVM_GET_FPU, KVM_TRANSLATE,
	TUNSETIFF, USERFAULTFD_IOC_NEW, UFFDIO_API, UFFDIO_REGISTER, 0,
};

/* Whether @req is in the 0-ended @list. */
static bool in_list(const unsigned long *list, unsigned long req)
{
	for (const unsigned long *q = list; *q; q++)
		if (*q == req)
			return true;
	return false;
}
static const unsigned long i_tty[] = {TCGETS, TCSETS, TCSETSW, TCSETSF, TIOCGWINSZ, FIONREAD, 0};

struct kind_spec {
	const char *const *groups[12];
	const unsigned long *ioctls[8];
	int families[4]; /* socket(); 0 ends */
};

static const struct kind_spec specs[SEC_NKINDS] = {
	[SEC_VMM] = {{g_run_base, g_run_loop, g_run_vsock},
		     {i_kvm_sys, i_kvm_vm, i_kvm_vcpu_state, i_tap, i_uffd, i_files, i_tty},
		     {AF_UNIX}},
	[SEC_SETUP] = {{g_base, g_wait, g_fdsetup, g_files, g_uring, g_sock, g_uffd, g_sched,
			g_loop},
		       {i_kvm_sys, i_kvm_vm, i_kvm_vcpu_state, i_tap, i_uffd, i_files, i_tty},
		       {AF_UNIX, AF_INET, AF_INET6}},
	[SEC_VCPU] = {{g_base, g_vcpu}, {i_kvm_vcpu_run}, {0}},
	[SEC_API] = {{g_base, g_api}, {0}, {0}},
	[SEC_CONSOLE] = {{g_base, g_console, g_fifo}, {0}, {0}},
	[SEC_MIGRATION] = {{g_base, g_wait, g_fdsetup, g_sock, g_files, g_sched, g_uffd},
			   {i_files, i_uffd},
			   {AF_UNIX, AF_INET, AF_INET6}},
	[SEC_POSTCOPY] = {{g_base, g_console}, {i_uffd}, {0}},
	[SEC_MIG_RUN] = {{g_base, g_wait, g_mig_run}, {i_uffd_run}, {0}},
	[SEC_SPAWNER] = {{g_base, g_spawn}, {0}, {0}},
};

static int list_add(struct sec_list *l, const struct sec_rule *r)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct sec_rule *n = realloc(l->r, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		l->r = n;
		l->cap = cap;
	}
	l->r[l->n++] = *r;
	return 0;
}

static int add_name(struct sec_list *l, const char *name, const struct sec_cond *c, int nc)
{
	int nr = seccomp_syscall_resolve_name(name);
	if (nr == __NR_SCMP_ERROR || nr < 0)
		return 0; /* not a system call of this architecture (e.g. rseq on old headers) */
	struct sec_rule r = {.nr = nr, .ncond = (uint8_t)nc};
	for (int i = 0; i < nc; i++)
		r.cond[i] = c[i];
	return list_add(l, &r);
}

/* Whether the request at @q (in group @g) is in an earlier place of @s's
 * ioctl groups (a request several groups need gets one rule). */
static bool listed_before(const struct kind_spec *s, int g, const unsigned long *q)
{
	for (int h = 0; h <= g; h++)
		for (const unsigned long *p = s->ioctls[h]; *p && p != q; p++)
			if (*p == *q)
				return true;
	return false;
}

static int build_builtin(enum sec_kind k, struct sec_list *l)
{
	const struct kind_spec *s = &specs[k];
	int r = 0;
	for (int g = 0; g < 12 && s->groups[g]; g++)
		for (const char *const *n = s->groups[g]; *n && !r; n++)
			r = add_name(l, *n, NULL, 0);
	/* memory is never made executable */
	struct sec_cond noexec = {.arg = 2, .op = SCMP_CMP_MASKED_EQ, .mask = PROT_EXEC, .value = 0};
	if (!r)
		r = add_name(l, "mmap", &noexec, 1);
	if (!r)
		r = add_name(l, "mprotect", &noexec, 1);
	/* a thread names itself, and the log reads the name (prctl's other
	 * operations are not for it; the spawner's own list has prctl for
	 * seccomp_load) */
	struct sec_cond setname = {.arg = 0, .op = SCMP_CMP_EQ, .value = PR_SET_NAME};
	struct sec_cond getname = {.arg = 0, .op = SCMP_CMP_EQ, .value = PR_GET_NAME};
	if (!r && k != SEC_SPAWNER)
		r = add_name(l, "prctl", &setname, 1);
	if (!r && k != SEC_SPAWNER)
		r = add_name(l, "prctl", &getname, 1);
	/* a migrated VM's source steps aside (SCHED_IDLE) on the loop, which
	 * asks for nothing else of the scheduler */
	struct sec_cond idle = {.arg = 1, .op = SCMP_CMP_EQ, .value = SCHED_IDLE};
	if (!r && (k == SEC_VMM || k == SEC_MIG_RUN)) /* and so does its migration thread */
		r = add_name(l, "sched_setscheduler", &idle, 1);
	/* and the threads it hands the API's control operations to run at
	 * its priority (sec_run_wide) */
	if (!r && k == SEC_VMM)
		r = add_name(l, "sched_getscheduler", NULL, 0);
	/* the loop adds its narrow filter when the guest first runs
	 * (sec_loop_narrow): a filter only ever takes calls away */
	struct sec_cond nnp = {.arg = 0, .op = SCMP_CMP_EQ, .value = PR_SET_NO_NEW_PRIVS};
	if (!r && (k == SEC_SETUP || k == SEC_MIGRATION)) /* and a migration's, once
							    * connected (SEC_MIG_RUN) */
		r = add_name(l, "prctl", &nnp, 1);
	if (!r && (k == SEC_SETUP || k == SEC_MIGRATION))
		r = add_name(l, "seccomp", NULL, 0);
	for (int g = 0; g < 8 && s->ioctls[g] && !r; g++)
		for (const unsigned long *q = s->ioctls[g]; *q && !r; q++) {
			if ((k == SEC_VMM && in_list(i_before_run, *q)) || listed_before(s, g, q))
				continue;
			/* the kernel takes the request as 32 bits */
			struct sec_cond c = {.arg = 1, .op = SCMP_CMP_MASKED_EQ, .mask = 0xffffffffu,
					     .value = *q & 0xffffffffu};
			r = add_name(l, "ioctl", &c, 1);
		}
	for (int f = 0; f < 4 && s->families[f] && !r; f++) {
		struct sec_cond c = {.arg = 0, .op = SCMP_CMP_EQ, .value = (uint64_t)s->families[f]};
		r = add_name(l, "socket", &c, 1);
	}
	return r;
}

static void list_free(struct sec_list *l)
{
	free(l->r);
	memset(l, 0, sizeof(*l));
}

/* The rules of kind @k: the filter file's, or visor's built into @tmp
 * (made afresh each time and freed by the caller with list_free(@tmp):
 * kept, every kind's lists took 200 KiB of heap for nothing); NULL when
 * out of memory. */
static const struct sec_list *rules_of(enum sec_kind k, struct sec_list *tmp)
{
	if (lists[k].from_file)
		return &lists[k];
	if (build_builtin(k, tmp)) {
		list_free(tmp);
		return NULL;
	}
	return tmp;
}

/* ---- building and installing a filter ------------------------------------------ */

static int add_rules(scmp_filter_ctx ctx, const struct sec_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct sec_rule *r = &l->r[i];
		struct scmp_arg_cmp a[SEC_MAX_COND];
		for (int c = 0; c < r->ncond; c++)
			a[c] = (struct scmp_arg_cmp){.arg = r->cond[c].arg,
						     .op = r->cond[c].op,
						     .datum_a = r->cond[c].op == SCMP_CMP_MASKED_EQ
									? r->cond[c].mask
									: r->cond[c].value,
						     .datum_b = r->cond[c].value};
		int e = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, r->nr, r->ncond, a);
		/* a conditional rule after an unconditional one for the same
		 * call (the spawner's union) adds nothing: not an error */
		if (e && e != -EEXIST && !(e == -EINVAL && r->ncond))
			return e;
	}
	return 0;
}

static int build(enum sec_kind k, scmp_filter_ctx *out)
{
	uint32_t def = sec_mode == SEC_MODE_LOG ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS;
	scmp_filter_ctx ctx = seccomp_init(def);
	if (!ctx)
		return -ENOMEM;
	int r = 0;
	if (k == SEC_SPAWNER) {
		/* every kind's calls (its threads start under this filter
		 * until they install their own) and clone for threads only */
		for (int i = 0; i < SEC_NKINDS && !r; i++) {
			struct sec_list tmp = {0};
			const struct sec_list *l = rules_of((enum sec_kind)i, &tmp);
			r = l ? add_rules(ctx, l) : -ENOMEM;
			list_free(&tmp);
		}
		if (!r)
			r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
					     SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
	} else {
		struct sec_list tmp = {0};
		const struct sec_list *l = rules_of(k, &tmp);
		r = l ? add_rules(ctx, l) : -ENOMEM;
		list_free(&tmp);
	}
	/* glibc tries clone3 first and falls back to clone, whose flags a
	 * filter can check */
	if (!r)
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	if (!r && sec_mode == SEC_MODE_LOG)
		r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_LOG, 1);
	if (r) {
		seccomp_release(ctx);
		return r;
	}
	*out = ctx;
	return 0;
}

#ifdef VISOR_SECCOMP_LEARN
/* Learn builds' ioctl check (below): the kinds whose filters this thread
 * has installed, in order (a thread narrows at most twice: the loop setup
 * then vmm, a migration's thread migration then migration-run; its
 * effective filter is all of them), and the requests it has made under
 * them so far, so that KVM_RUN costs one look (emptied when it narrows). */
static _Thread_local uint8_t th_kinds[4];
static _Thread_local int th_nkinds;
static _Thread_local uint32_t learn_ok[64];
static _Thread_local int learn_nok;

static void learn_entered(enum sec_kind k)
{
	if (th_nkinds < (int)sizeof(th_kinds))
		th_kinds[th_nkinds++] = (uint8_t)k;
	learn_nok = 0;
}
#else
static void learn_entered(enum sec_kind k)
{
	(void)k;
}
#endif

int sec_enter(enum sec_kind k)
{
	if (sec_mode == SEC_MODE_OFF || (unsigned)k >= SEC_NKINDS)
		return 0;
	log_thread_prime();
	scmp_filter_ctx ctx;
	int r = build(k, &ctx);
	if (!r)
		r = seccomp_load(ctx); /* this thread only (no TSYNC) */
	if (!r)
		seccomp_release(ctx);
	if (!r)
		learn_entered(k);
	/* building a filter takes a few hundred KiB of heap for a moment:
	 * give it back (bench/isolation measured +0.6 MiB RSS without) */
	malloc_trim(0);
#ifdef VISOR_TEST_HOOKS
	/* test builds: VISOR_TEST_FORBIDDEN=KIND makes that kind's thread
	 * issue a call no filter allows (tests/kvm, tests/cli) */
	const char *t = getenv("VISOR_TEST_FORBIDDEN");
	if (!r && t && !strcmp(t, kind_names[k]))
		syscall(__NR_ptrace, 0, 0, 0, 0);
#endif
	return r;
}

int sec_rule_count(enum sec_kind k)
{
	if ((unsigned)k >= SEC_NKINDS)
		return -EINVAL;
	enum sec_mode saved = sec_mode;
	sec_mode = SEC_MODE_KILL;
	scmp_filter_ctx ctx;
	int r = build(k, &ctx);
	sec_mode = saved;
	if (r)
		return r;
	seccomp_release(ctx);
	struct sec_list tmp = {0};
	const struct sec_list *l = rules_of(k, &tmp);
	int n = l ? (int)l->n : -ENOMEM;
	list_free(&tmp);
	return n;
}

static bool cond_holds(const struct sec_cond *c, uint64_t v)
{
	switch (c->op) {
	case SCMP_CMP_EQ: return v == c->value;
	case SCMP_CMP_NE: return v != c->value;
	case SCMP_CMP_LT: return v < c->value;
	case SCMP_CMP_LE: return v <= c->value;
	case SCMP_CMP_GT: return v > c->value;
	case SCMP_CMP_GE: return v >= c->value;
	case SCMP_CMP_MASKED_EQ: return (v & c->mask) == c->value;
	default: return false;
	}
}

bool sec_allows(enum sec_kind k, int nr, const unsigned long long *args)
{
	if ((unsigned)k >= SEC_NKINDS)
		return false;
	struct sec_list tmp = {0};
	const struct sec_list *l = rules_of(k, &tmp);
	bool found = false;
	for (size_t i = 0; l && i < l->n && !found; i++) {
		if (l->r[i].nr != nr)
			continue;
		bool ok = true;
		for (int c = 0; c < l->r[i].ncond && ok; c++)
			ok = cond_holds(&l->r[i].cond[c], args[l->r[i].cond[c].arg]);
		found = ok;
	}
	list_free(&tmp);
	return found;
}

/* ---- learn builds: which ioctl requests a filter would refuse ------------------ */

#ifdef VISOR_SECCOMP_LEARN
/* A learn build's filters log instead of killing, but the kernel's log
 * names only the system call, not an ioctl's request.  The learn build is
 * linked with -Wl,--wrap=ioctl (make learn): every ioctl visor's own code
 * makes comes here first and is written once per process (per kinds and
 * request) to the file VISOR_SECCOMP_LEARN_FILE names (opened by sec_init,
 * before any filter; else stderr):
 *   "seccomp-learn: KIND (thread NAME) ioctl 0xREQ"  a filter the thread
 *       installed (KIND) would refuse it;
 *   "seccomp-used: KINDS ioctl 0xREQ"  the thread, under its filters KINDS
 *       (e.g. "setup+vmm"), made it: what each list is used for.
 * glibc's own ioctls (a terminal's tcgetattr) are not seen. */
static int learn_fd = 2;
static pthread_mutex_t learn_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	uint32_t kinds; /* th_kinds packed, 8 bits each; 0xff: refused by one */
	uint32_t req;
} learn_seen[512];
static int learn_nseen;

/* Whether (@kinds, @req) is new: then it is recorded. */
static bool learn_first(uint32_t kinds, uint32_t req)
{
	for (int j = 0; j < learn_nseen; j++)
		if (learn_seen[j].kinds == kinds && learn_seen[j].req == req)
			return false;
	if (learn_nseen == (int)(sizeof(learn_seen) / sizeof(learn_seen[0])))
		return false;
	learn_seen[learn_nseen].kinds = kinds;
	learn_seen[learn_nseen++].req = req;
	return true;
}

#define LEARN_LINE 160

/* one line of snprintf's @n characters (a cut one ends in a newline) */
static void learn_write(char *line, int n)
{
	if (n <= 0)
		return;
	if (n >= LEARN_LINE) {
		n = LEARN_LINE - 1;
		line[n - 1] = '\n';
	}
	(void)!write(learn_fd, line, (size_t)n);
}

static void learn_ioctl(unsigned long request)
{
	uint32_t req = (uint32_t)request;
	if (!th_nkinds)
		return;
	for (int i = 0; i < learn_nok; i++)
		if (learn_ok[i] == req)
			return;
	if (learn_nok < (int)(sizeof(learn_ok) / sizeof(learn_ok[0])))
		learn_ok[learn_nok++] = req;
	unsigned long long args[6] = {0, req, 0, 0, 0, 0};
	char name[16] = "?";
	prctl(PR_GET_NAME, name, 0, 0, 0);
	uint32_t packed = 0;
	char kinds[64] = "";
	for (int i = 0; i < th_nkinds; i++) {
		packed = packed << 8 | th_kinds[i];
		snprintf(kinds + strlen(kinds), sizeof(kinds) - strlen(kinds), "%s%s", i ? "+" : "",
			 kind_names[th_kinds[i]]);
	}
	/* snprintf and write: dprintf's stream would lseek and fstat the fd,
	 * calls the filters log themselves */
	char line[LEARN_LINE];
	pthread_mutex_lock(&learn_lock);
	if (learn_first(packed, req))
		learn_write(line, snprintf(line, sizeof(line), "seccomp-used: %s ioctl 0x%08x\n",
					   kinds, req));
	for (int i = 0; i < th_nkinds; i++)
		if (!sec_allows((enum sec_kind)th_kinds[i], __NR_ioctl, args) &&
		    learn_first(0xff000000u | th_kinds[i], req))
			learn_write(line, snprintf(line, sizeof(line),
						   "seccomp-learn: %s (thread %s) ioctl 0x%08x\n",
						   kind_names[th_kinds[i]], name, req));
	pthread_mutex_unlock(&learn_lock);
}

int __real_ioctl(int fd, unsigned long request, ...);
int __wrap_ioctl(int fd, unsigned long request, ...);
int __wrap_ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	va_start(ap, request);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	learn_ioctl(request);
	return __real_ioctl(fd, request, arg);
}

static void learn_open(void)
{
	const char *p = getenv("VISOR_SECCOMP_LEARN_FILE");
	if (!p || !*p)
		return;
	int fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd >= 0)
		learn_fd = fd;
}
#else
static void learn_open(void)
{
}
#endif

/* ---- the spawner ------------------------------------------------------------- */

struct spawn_req {
	enum sec_kind kind;
	const pthread_attr_t *attr;
	void *(*fn)(void *);
	void *arg;
	sigset_t mask;
	pthread_t *t;
	int result;
	bool done;
	struct spawn_req *next;
};

struct tramp {
	enum sec_kind kind;
	void *(*fn)(void *);
	void *arg;
	sigset_t mask;
};

static pthread_mutex_t sp_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sp_cond = PTHREAD_COND_INITIALIZER;
static struct spawn_req *sp_queue;

static void *trampoline(void *p)
{
	struct tramp t = *(struct tramp *)p;
	free(p);
	if (sec_enter(t.kind)) {
		/* fail closed: a thread that cannot be confined does not run */
		log_error("seccomp: cannot install the %s filter; stopping", kind_names[t.kind]);
		_exit(1);
	}
	pthread_sigmask(SIG_SETMASK, &t.mask, NULL);
	return t.fn(t.arg);
}

static void *spawner_main(void *unused)
{
	(void)unused;
	if (sec_enter(SEC_SPAWNER)) {
		log_error("seccomp: cannot install the spawner's filter; stopping");
		_exit(1);
	}
	pthread_mutex_lock(&sp_lock);
	for (;;) {
		while (!sp_queue)
			pthread_cond_wait(&sp_cond, &sp_lock);
		struct spawn_req *q = sp_queue;
		sp_queue = q->next;
		struct tramp *t = malloc(sizeof(*t));
		if (!t) {
			q->result = ENOMEM;
		} else {
			*t = (struct tramp){.kind = q->kind, .fn = q->fn, .arg = q->arg, .mask = q->mask};
			q->result = pthread_create(q->t, q->attr, trampoline, t);
			if (q->result)
				free(t);
		}
		q->done = true;
		pthread_cond_broadcast(&sp_cond);
	}
	return NULL;
}

int sec_init(enum sec_mode mode, char *err, size_t errlen)
{
	sec_mode = mode;
	if (mode == SEC_MODE_OFF || sec_started)
		return 0;
	learn_open();
	/* One malloc arena for every thread: glibc's per-thread arenas read
	 * /proc/sys/vm/overcommit_memory the first time one shrinks, an
	 * open() no thread but the loop may make.  visor's threads allocate
	 * little (none on a hot path), and fewer arenas cost less memory. */
	mallopt(M_ARENA_MAX, 1);
	/* glibc reads the time zone (/etc/localtime) the first time any time
	 * conversion runs, gmtime_r and timegm included: the RTC's, on a vCPU
	 * (the lab's kvm suite: the first RTC read killed the VM with SIGSYS
	 * once vCPUs could no longer open files).  Read it now. */
	tzset();
	/* every kind's rules must build before anything runs under them */
	for (int k = 0; k < SEC_NKINDS; k++) {
		scmp_filter_ctx ctx;
		int r = build((enum sec_kind)k, &ctx);
		if (r) {
			snprintf(err, errlen, "seccomp: the %s filter does not build: %s",
				 kind_names[k], strerror(-r));
			return r;
		}
		seccomp_release(ctx);
	}
	/* the spawner takes no signal: they go to the main thread */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setstacksize(&a, 64 * 1024);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	pthread_t t;
	int r = pthread_create(&t, &a, spawner_main, NULL);
	pthread_attr_destroy(&a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		snprintf(err, errlen, "seccomp: cannot start the spawner thread: %s", strerror(r));
		return -r;
	}
	pthread_setname_np(t, "spawner");
	sec_started = true;
	return 0;
}

int sec_thread_create(enum sec_kind k, pthread_t *t, const pthread_attr_t *attr,
		      void *(*fn)(void *), void *arg)
{
	if (!sec_active())
		return pthread_create(t, attr, fn, arg);
	struct spawn_req q = {.kind = k, .attr = attr, .fn = fn, .arg = arg, .t = t};
	pthread_sigmask(SIG_SETMASK, NULL, &q.mask);
	pthread_mutex_lock(&sp_lock);
	struct spawn_req **p = &sp_queue;
	while (*p)
		p = &(*p)->next;
	*p = &q;
	pthread_cond_broadcast(&sp_cond);
	while (!q.done)
		pthread_cond_wait(&sp_cond, &sp_lock);
	pthread_mutex_unlock(&sp_lock);
	return q.result;
}

/* ---- the loop's two stages ------------------------------------------------------ */

static bool loop_narrowed;

int sec_loop_narrow(void)
{
	if (!sec_active() || loop_narrowed)
		return 0;
	int r = sec_enter(SEC_VMM);
	if (!r)
		loop_narrowed = true;
	return r;
}

bool sec_loop_narrowed(void)
{
	return loop_narrowed;
}

struct wide_call {
	void (*fn)(void *arg);
	void *arg;
	int policy; /* the caller's scheduling policy */
};

static void *wide_main(void *p)
{
	struct wide_call *w = p;
	prctl(PR_SET_NAME, "setup", 0, 0, 0);
	/* at the caller's priority (a migrated source's loop runs at
	 * SCHED_IDLE: so does its teardown) */
	if (w->policy >= 0 && w->policy != SCHED_OTHER) {
		struct sched_param sp = {0};
		(void)sched_setscheduler(0, w->policy, &sp);
	}
	w->fn(w->arg);
	return NULL;
}

int sec_run_wide(void (*fn)(void *arg), void *arg)
{
	if (!loop_narrowed) {
		fn(arg);
		return 0;
	}
	/* the caller waits, so @fn runs as if on the caller's thread; signals
	 * stay with the caller (its handlers, its eventfds) */
	struct wide_call w = {fn, arg, sched_getscheduler(0)};
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_t t;
	int e = sec_thread_create(SEC_SETUP, &t, NULL, wide_main, &w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e)
		return e;
	pthread_join(t, NULL);
	return 0;
}

void sec_reset(void)
{
	for (int k = 0; k < SEC_NKINDS; k++)
		list_free(&lists[k]);
	if (!sec_started)
		sec_mode = SEC_MODE_OFF;
	loop_narrowed = false;
}

/* ---- filter files ------------------------------------------------------------ */

static const struct {
	const char *name;
	enum scmp_compare op;
} ops[] = {
	{"eq", SCMP_CMP_EQ}, {"ne", SCMP_CMP_NE}, {"lt", SCMP_CMP_LT},		 {"le", SCMP_CMP_LE},
	{"gt", SCMP_CMP_GT}, {"ge", SCMP_CMP_GE}, {"masked_eq", SCMP_CMP_MASKED_EQ},
};

static bool get_u64(struct json_object *o, uint64_t *v)
{
	if (!o || !json_object_is_type(o, json_type_int))
		return false;
	errno = 0;
	int64_t x = json_object_get_int64(o);
	if (errno || x < 0)
		return false;
	*v = (uint64_t)x;
	return true;
}

static int parse_rule(struct json_object *e, struct sec_rule *r, char *err, size_t errlen,
		      const char *where)
{
	memset(r, 0, sizeof(*r));
	const char *name = NULL;
	struct json_object *args = NULL;
	if (json_object_is_type(e, json_type_string)) {
		name = json_object_get_string(e);
	} else if (json_object_is_type(e, json_type_object)) {
		struct json_object *s;
		json_object_object_foreach(e, key, val)
		{
			(void)val;
			if (strcmp(key, "syscall") && strcmp(key, "args")) {
				snprintf(err, errlen, "%s: unknown field \"%s\" (syscall, args)", where,
					 key);
				return -EINVAL;
			}
		}
		if (!json_object_object_get_ex(e, "syscall", &s) ||
		    !json_object_is_type(s, json_type_string)) {
			snprintf(err, errlen, "%s: a rule needs \"syscall\": a name", where);
			return -EINVAL;
		}
		name = json_object_get_string(s);
		if (json_object_object_get_ex(e, "args", &args) &&
		    !json_object_is_type(args, json_type_array)) {
			snprintf(err, errlen, "%s: \"args\" must be an array", where);
			return -EINVAL;
		}
	} else {
		snprintf(err, errlen, "%s: a rule is a system call's name or an object", where);
		return -EINVAL;
	}
	int nr = seccomp_syscall_resolve_name(name);
	if (nr == __NR_SCMP_ERROR || nr < 0) {
		snprintf(err, errlen, "%s: \"%.64s\" is not a system call of x86-64", where, name);
		return -EINVAL;
	}
	r->nr = nr;
	size_t n = args ? json_object_array_length(args) : 0;
	if (n > SEC_MAX_COND) {
		snprintf(err, errlen, "%s: %.64s: at most %d argument conditions", where, name,
			 SEC_MAX_COND);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *c = json_object_array_get_idx(args, i), *x;
		struct sec_cond *d = &r->cond[i];
		uint64_t idx;
		if (!json_object_is_type(c, json_type_object)) {
			snprintf(err, errlen, "%s: %.64s: a condition is an object", where, name);
			return -EINVAL;
		}
		json_object_object_foreach(c, key, val)
		{
			(void)val;
			if (strcmp(key, "index") && strcmp(key, "op") && strcmp(key, "value") &&
			    strcmp(key, "mask")) {
				snprintf(err, errlen,
					 "%s: %.64s: unknown condition field \"%s\" (index, op, "
					 "value, mask)",
					 where, name, key);
				return -EINVAL;
			}
		}
		if (!json_object_object_get_ex(c, "index", &x) || !get_u64(x, &idx) || idx > 5) {
			snprintf(err, errlen, "%s: %.64s: \"index\" must be 0-5", where, name);
			return -EINVAL;
		}
		d->arg = (uint8_t)idx;
		const char *op = NULL;
		if (json_object_object_get_ex(c, "op", &x) && json_object_is_type(x, json_type_string))
			op = json_object_get_string(x);
		size_t o = 0;
		while (op && o < sizeof(ops) / sizeof(ops[0]) && strcmp(ops[o].name, op))
			o++;
		if (!op || o == sizeof(ops) / sizeof(ops[0])) {
			snprintf(err, errlen,
				 "%s: %.64s: \"op\" must be eq, ne, lt, le, gt, ge or masked_eq", where,
				 name);
			return -EINVAL;
		}
		d->op = ops[o].op;
		if (!json_object_object_get_ex(c, "value", &x) || !get_u64(x, &d->value)) {
			snprintf(err, errlen, "%s: %.64s: \"value\" must be a number 0-%lld", where,
				 name, (long long)INT64_MAX);
			return -EINVAL;
		}
		bool has_mask = json_object_object_get_ex(c, "mask", &x);
		if (d->op == SCMP_CMP_MASKED_EQ) {
			if (!has_mask || !get_u64(x, &d->mask)) {
				snprintf(err, errlen, "%s: %.64s: masked_eq needs \"mask\": a number",
					 where, name);
				return -EINVAL;
			}
		} else if (has_mask) {
			snprintf(err, errlen, "%s: %.64s: \"mask\" goes with masked_eq only", where,
				 name);
			return -EINVAL;
		}
	}
	r->ncond = (uint8_t)n;
	return 0;
}

int sec_load_filter_json(const char *json, size_t len, char *err, size_t errlen)
{
	struct json_tokener *tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	struct json_object *root = json_tokener_parse_ex(tok, json, (int)(len > INT32_MAX ? INT32_MAX : len));
	enum json_tokener_error je = json_tokener_get_error(tok);
	size_t used = je == json_tokener_success ? json_tokener_get_parse_end(tok) : 0;
	json_tokener_free(tok);
	int rc = 0;
	struct sec_list parsed[SEC_NKINDS];
	memset(parsed, 0, sizeof(parsed));
	bool named[SEC_NKINDS] = {false};
	if (!root || je != json_tokener_success) {
		snprintf(err, errlen, "seccomp filter: not JSON: %s",
			 json_tokener_error_desc(je == json_tokener_success ? json_tokener_error_parse_eof
									    : je));
		rc = -EINVAL;
		goto out;
	}
	for (size_t i = used; i < len; i++)
		if (json[i] != ' ' && json[i] != '\n' && json[i] != '\t' && json[i] != '\r') {
			snprintf(err, errlen, "seccomp filter: text after the JSON object");
			rc = -EINVAL;
			goto out;
		}
	if (!json_object_is_type(root, json_type_object)) {
		snprintf(err, errlen, "seccomp filter: the file is one JSON object");
		rc = -EINVAL;
		goto out;
	}
	json_object_object_foreach(root, key, val)
	{
		int k = 0;
		while (k < SEC_NKINDS && strcmp(kind_names[k], key))
			k++;
		if (k == SEC_NKINDS) {
			snprintf(err, errlen,
				 "seccomp filter: unknown thread kind \"%.64s\" (vmm, vcpu, api, "
				 "console, migration, postcopy, spawner)",
				 key);
			rc = -EINVAL;
			goto out;
		}
		if (!json_object_is_type(val, json_type_array)) {
			snprintf(err, errlen, "seccomp filter: \"%s\" must be an array of rules", key);
			rc = -EINVAL;
			goto out;
		}
		named[k] = true;
		size_t n = json_object_array_length(val);
		for (size_t i = 0; i < n && !rc; i++) {
			char where[96];
			snprintf(where, sizeof(where), "seccomp filter: %s[%zu]", key, i);
			struct sec_rule r;
			rc = parse_rule(json_object_array_get_idx(val, i), &r, err, errlen, where);
			if (!rc && list_add(&parsed[k], &r))
				rc = -ENOMEM;
		}
		if (rc)
			goto out;
	}
	for (int k = 0; k < SEC_NKINDS; k++)
		if (named[k]) {
			list_free(&lists[k]);
			lists[k] = parsed[k];
			lists[k].from_file = true;
			memset(&parsed[k], 0, sizeof(parsed[k]));
		}
out:
	for (int k = 0; k < SEC_NKINDS; k++)
		list_free(&parsed[k]);
	json_object_put(root);
	return rc;
}

int sec_print_builtin(void)
{
	struct json_object *root = json_object_new_object();
	if (!root)
		return -ENOMEM;
	for (int k = 0; k < SEC_NKINDS; k++) {
		struct sec_list l = {0};
		if (build_builtin((enum sec_kind)k, &l)) {
			list_free(&l);
			json_object_put(root);
			return -ENOMEM;
		}
		struct json_object *arr = json_object_new_array();
		for (size_t i = 0; i < l.n; i++) {
			const struct sec_rule *r = &l.r[i];
			char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, r->nr);
			if (!r->ncond) {
				json_object_array_add(arr, json_object_new_string(name ? name : "?"));
			} else {
				struct json_object *o = json_object_new_object();
				struct json_object *args = json_object_new_array();
				json_object_object_add(o, "syscall", json_object_new_string(name ? name : "?"));
				for (int c = 0; c < r->ncond; c++) {
					struct json_object *co = json_object_new_object();
					size_t oi = 0;
					while (oi < sizeof(ops) / sizeof(ops[0]) - 1 && ops[oi].op != r->cond[c].op)
						oi++;
					json_object_object_add(co, "index", json_object_new_int(r->cond[c].arg));
					json_object_object_add(co, "op", json_object_new_string(ops[oi].name));
					if (r->cond[c].op == SCMP_CMP_MASKED_EQ)
						json_object_object_add(co, "mask",
								       json_object_new_int64((int64_t)r->cond[c].mask));
					json_object_object_add(co, "value",
							       json_object_new_int64((int64_t)r->cond[c].value));
					json_object_array_add(args, co);
				}
				json_object_object_add(o, "args", args);
				json_object_array_add(arr, o);
			}
			free(name);
		}
		json_object_object_add(root, kind_names[k], arr);
		list_free(&l);
	}
	puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED));
	json_object_put(root);
	return 0;
}
