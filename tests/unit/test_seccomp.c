/* SPDX-License-Identifier: MIT */
/*
 * Per-thread seccomp filters (seccomp.c): the built-in rules of each thread
 * kind (what each allows and refuses, argument conditions included), the
 * filter file parser and its refusals, and, in forked children, the real
 * thing: a thread under its kind's filter is killed with SIGSYS by a
 * forbidden call, carries on through allowed ones, shows "Seccomp: 2",
 * and a thread made through the spawner runs under its own kind's filter.
 */
#include "../../src/seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <dirent.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

static char err[512];

static bool allows(enum sec_kind k, int nr, unsigned long long a0, unsigned long long a1,
		   unsigned long long a2)
{
	unsigned long long a[6] = {a0, a1, a2, 0, 0, 0};
	return sec_allows(k, nr, a);
}

TEST(every_kind_builds)
{
	sec_reset();
	for (int k = 0; k < SEC_NKINDS; k++) {
		int n = sec_rule_count((enum sec_kind)k);
		CHECK(n > 10);
		CHECK(sec_kind_name((enum sec_kind)k) != NULL);
	}
	CHECK(sec_kind_name(SEC_NKINDS) == NULL);
	CHECK_STR(sec_kind_name(SEC_VCPU), "vcpu");
}

TEST(builtin_rules)
{
	sec_reset();
	/* the vCPU runs the guest, and opens nothing */
	CHECK(allows(SEC_VCPU, __NR_ioctl, 5, KVM_RUN, 0));
	/* a full dirty ring: the vCPU hands its harvested ring back itself */
	CHECK(allows(SEC_VCPU, __NR_ioctl, 5, KVM_RESET_DIRTY_RINGS, 0));
	CHECK(!allows(SEC_VCPU, __NR_ioctl, 5, KVM_GET_DIRTY_LOG, 0));
	CHECK(!allows(SEC_VCPU, __NR_ioctl, 5, TUNSETIFF, 0));
	CHECK(!allows(SEC_VCPU, __NR_ioctl, 5, KVM_CREATE_VCPU, 0));
	CHECK(!allows(SEC_VCPU, __NR_socket, AF_UNIX, 0, 0));
	/* the request is 32 bits: high bits set do not sneak another one in */
	CHECK(allows(SEC_VCPU, __NR_ioctl, 5, 0xffffffff00000000ull | KVM_RUN, 0));
	/* nobody executes, forks or makes memory executable */
	for (int k = 0; k < SEC_NKINDS; k++) {
		CHECK(!allows((enum sec_kind)k, __NR_execve, 0, 0, 0));
		CHECK(!allows((enum sec_kind)k, __NR_execveat, 0, 0, 0));
		CHECK(!allows((enum sec_kind)k, __NR_fork, 0, 0, 0));
		CHECK(!allows((enum sec_kind)k, __NR_ptrace, 0, 0, 0));
		CHECK(!allows((enum sec_kind)k, __NR_mount, 0, 0, 0));
		CHECK(allows((enum sec_kind)k, __NR_mmap, 0, 4096, PROT_READ | PROT_WRITE));
		CHECK(!allows((enum sec_kind)k, __NR_mmap, 0, 4096, PROT_READ | PROT_EXEC));
		CHECK(!allows((enum sec_kind)k, __NR_mprotect, 0, 4096, PROT_EXEC));
		CHECK(allows((enum sec_kind)k, __NR_futex, 0, 0, 0));
	}
	/* only the spawner creates threads (its clone rule, for threads only,
	 * is added when its filter is built) */
	for (int k = 0; k < SEC_NKINDS; k++)
		CHECK(!allows((enum sec_kind)k, __NR_clone, 0, 0, 0));
	/* prctl: naming threads only (the log reads the name) */
	CHECK(allows(SEC_VCPU, __NR_prctl, PR_SET_NAME, 0, 0));
	CHECK(allows(SEC_API, __NR_prctl, PR_GET_NAME, 0, 0));
	CHECK(!allows(SEC_VCPU, __NR_prctl, PR_SET_DUMPABLE, 1, 0));
	CHECK(!allows(SEC_VMM, __NR_prctl, PR_SET_MM, 0, 0));
	/* the loop until the guest runs: files, KVM, taps, unix and inet
	 * sockets (a tcp: receive listens there); no raw sockets */
	CHECK(allows(SEC_SETUP, __NR_openat, 0, 0, 0));
	CHECK(allows(SEC_SETUP, __NR_ioctl, 5, KVM_CREATE_VCPU, 0));
	CHECK(allows(SEC_SETUP, __NR_ioctl, 5, TUNSETIFF, 0));
	CHECK(allows(SEC_SETUP, __NR_socket, AF_UNIX, SOCK_STREAM, 0));
	CHECK(allows(SEC_SETUP, __NR_socket, AF_INET, SOCK_STREAM, 0));
	CHECK(!allows(SEC_SETUP, __NR_socket, AF_NETLINK, SOCK_RAW, 0));
	CHECK(!allows(SEC_SETUP, __NR_socket, AF_PACKET, SOCK_RAW, 0));
	/* the loop once the guest runs: what devices need (KVM, taps, vsock's
	 * unix sockets, io_uring, eventfds and timers); no files, no inet
	 * sockets, no new rings, no memfds, no userfaultfd, no scheduling */
	CHECK(allows(SEC_VMM, __NR_ioctl, 5, KVM_IRQFD, 0));
	CHECK(allows(SEC_VMM, __NR_ioctl, 5, TUNSETOFFLOAD, 0));
	CHECK(allows(SEC_VMM, __NR_socket, AF_UNIX, SOCK_STREAM, 0));
	CHECK(allows(SEC_VMM, __NR_connect, 0, 0, 0));
	CHECK(allows(SEC_VMM, __NR_io_uring_enter, 0, 0, 0));
	CHECK(allows(SEC_VMM, __NR_eventfd2, 0, 0, 0));
	CHECK(!allows(SEC_VMM, __NR_socket, AF_INET, SOCK_STREAM, 0));
	/* nor KVM's or a tap's creation requests */
	CHECK(!allows(SEC_VMM, __NR_ioctl, 5, KVM_CREATE_VM, 0));
	CHECK(!allows(SEC_VMM, __NR_ioctl, 5, KVM_CREATE_VCPU, 0));
	CHECK(!allows(SEC_VMM, __NR_ioctl, 5, TUNSETIFF, 0));
	CHECK(allows(SEC_SETUP, __NR_ioctl, 5, KVM_CREATE_VM, 0));
	/* nor the requests that set a VM's state (a boot's, a snapshot's or
	 * an incoming migration's, all before the guest runs); it keeps
	 * reading state (snapshot, migration), the clock across a pause and
	 * what the guest activates (routes, dirty logging) */
	static const unsigned long set_only[] = {
		KVM_SET_REGS,	  KVM_SET_SREGS,	KVM_SET_MSRS,	  KVM_SET_CPUID2,
		KVM_SET_LAPIC,	  KVM_SET_VCPU_EVENTS,	KVM_SET_XSAVE,	  KVM_SET_NESTED_STATE,
		KVM_SET_IRQCHIP,  KVM_SET_PIT2,		KVM_SET_TSC_KHZ,  KVM_ENABLE_CAP,
		KVM_SET_MP_STATE, KVM_SET_DEBUGREGS,	KVM_SET_FPU,	  KVM_GET_SUPPORTED_CPUID,
	};
	for (size_t i = 0; i < sizeof(set_only) / sizeof(set_only[0]); i++) {
		CHECK(!allows(SEC_VMM, __NR_ioctl, 5, set_only[i], 0));
		CHECK(allows(SEC_SETUP, __NR_ioctl, 5, set_only[i], 0));
	}
	static const unsigned long run_kvm[] = {
		KVM_GET_REGS,	      KVM_GET_SREGS,	  KVM_GET_MSRS,	     KVM_GET_XSAVE,
		KVM_GET_NESTED_STATE, KVM_GET_IRQCHIP,	  KVM_GET_PIT2,	     KVM_GET_CLOCK,
		KVM_SET_CLOCK,	      KVM_KVMCLOCK_CTRL,  KVM_SET_GSI_ROUTING, KVM_IOEVENTFD,
		KVM_GET_DIRTY_LOG,    KVM_SET_USER_MEMORY_REGION, KVM_GET_MSR_INDEX_LIST,
		KVM_CHECK_EXTENSION,
	};
	for (size_t i = 0; i < sizeof(run_kvm) / sizeof(run_kvm[0]); i++)
		CHECK(allows(SEC_VMM, __NR_ioctl, 5, run_kvm[i], 0));
	CHECK(!allows(SEC_VMM, __NR_openat, 0, 0, 0));
	CHECK(!allows(SEC_VMM, __NR_unlink, 0, 0, 0));
	CHECK(!allows(SEC_VMM, __NR_rename, 0, 0, 0));
	CHECK(!allows(SEC_VMM, __NR_bind, 0, 0, 0));
	CHECK(!allows(SEC_VMM, __NR_listen, 0, 0, 0));
	CHECK(!allows(SEC_VMM, __NR_io_uring_setup, 0, 0, 0));
	CHECK(!allows(SEC_VMM, __NR_memfd_create, 0, 0, 0));
	CHECK(!allows(SEC_VMM, __NR_userfaultfd, 0, 0, 0));
	CHECK(!allows(SEC_VMM, __NR_sched_setscheduler, 0, SCHED_FIFO, 0));
	CHECK(allows(SEC_VMM, __NR_sched_setscheduler, 0, SCHED_IDLE, 0));
	CHECK(!allows(SEC_VMM, __NR_prctl, PR_SET_MM, 0, 0));
	/* fewer than Firecracker's vmm filter (50 system calls) */
	{
		int names = 0;
		for (int nr = 0; nr < 512; nr++) {
			bool any = false;
			for (unsigned long long a0 = 0; a0 < 2 && !any; a0++)
				any = allows(SEC_VMM, nr, a0 ? AF_UNIX : 0, 0, 0) ||
				      allows(SEC_VMM, nr, 0, SCHED_IDLE, 0) ||
				      (nr == __NR_ioctl && allows(SEC_VMM, nr, 5, KVM_IRQFD, 0)) ||
				      (nr == __NR_prctl && allows(SEC_VMM, nr, PR_SET_NAME, 0, 0));
			names += any;
		}
		printf("  vmm: %d system calls\n", names);
		CHECK(names < 50);
	}
	CHECK(!allows(SEC_API, __NR_socket, AF_INET, SOCK_STREAM, 0));
	/* migration: inet sockets, userfaultfd (post-copy), no KVM */
	CHECK(allows(SEC_MIGRATION, __NR_userfaultfd, 0, 0, 0));
	CHECK(allows(SEC_MIGRATION, __NR_socket, AF_INET6, SOCK_STREAM, 0));
	CHECK(!allows(SEC_MIGRATION, __NR_ioctl, 5, KVM_RUN, 0));
	/* a migration's thread once connected: the stream's messages, post-copy's
	 * page installs; no sockets, files, userfaultfd creation or KVM */
	CHECK(allows(SEC_MIG_RUN, __NR_recvmsg, 0, 0, 0));
	CHECK(allows(SEC_MIG_RUN, __NR_sendmsg, 0, 0, 0));
	CHECK(allows(SEC_MIG_RUN, __NR_ioctl, 5, UFFDIO_COPY, 0));
	CHECK(allows(SEC_MIG_RUN, __NR_ioctl, 5, UFFDIO_REGISTER, 0));
	CHECK(allows(SEC_MIG_RUN, __NR_sched_setscheduler, 0, SCHED_IDLE, 0));
	CHECK(!allows(SEC_MIG_RUN, __NR_sched_setscheduler, 0, SCHED_FIFO, 0));
	CHECK(!allows(SEC_MIG_RUN, __NR_ioctl, 5, UFFDIO_API, 0));
	CHECK(!allows(SEC_MIG_RUN, __NR_ioctl, 5, USERFAULTFD_IOC_NEW, 0));
	CHECK(!allows(SEC_MIG_RUN, __NR_userfaultfd, 0, 0, 0));
	CHECK(!allows(SEC_MIG_RUN, __NR_socket, AF_UNIX, SOCK_STREAM, 0));
	CHECK(!allows(SEC_MIG_RUN, __NR_socket, AF_INET, SOCK_STREAM, 0));
	CHECK(!allows(SEC_MIG_RUN, __NR_connect, 0, 0, 0));
	CHECK(!allows(SEC_MIG_RUN, __NR_bind, 0, 0, 0));
	CHECK(!allows(SEC_MIG_RUN, __NR_openat, 0, 0, 0));
	CHECK(!allows(SEC_MIG_RUN, __NR_unlink, 0, 0, 0));
	CHECK(!allows(SEC_MIG_RUN, __NR_ioctl, 5, KVM_RUN, 0));
	{
		int n = sec_rule_count(SEC_MIG_RUN), m = sec_rule_count(SEC_MIGRATION);
		printf("  migration-run: %d rules (migration: %d)\n", n, m);
		CHECK(n > 10 && n < m / 2);
	}
	/* the API thread: sockets it is given, no files, no KVM */
	CHECK(allows(SEC_API, __NR_accept4, 0, 0, 0));
	CHECK(!allows(SEC_API, __NR_openat, 0, 0, 0));
	/* a vCPU opens nothing (the serial port's FIFO is reopened by the
	 * console's writer thread); the post-copy fault thread neither */
	CHECK(!allows(SEC_VCPU, __NR_openat, 0, 0, 0));
	CHECK(allows(SEC_CONSOLE, __NR_openat, 0, 0, 0));
	CHECK(!allows(SEC_POSTCOPY, __NR_openat, 0, 0, 0));
	CHECK(!allows(SEC_API, __NR_socket, AF_UNIX, 0, 0));
	CHECK(!allows(SEC_API, __NR_ioctl, 5, KVM_RUN, 0));
}

TEST(filter_file)
{
	sec_reset();
	const char *ok = "{\"vcpu\": [\"read\", \"futex\", {\"syscall\": \"ioctl\", \"args\": "
			 "[{\"index\": 1, \"op\": \"masked_eq\", \"mask\": 4294967295, "
			 "\"value\": 44672}]}]}\n";
	CHECK_EQ(sec_load_filter_json(ok, strlen(ok), err, sizeof(err)), 0);
	CHECK(allows(SEC_VCPU, __NR_read, 0, 0, 0));
	CHECK(allows(SEC_VCPU, __NR_ioctl, 5, KVM_RUN, 0)); /* KVM_RUN is 0xae80 = 44672 */
	CHECK(!allows(SEC_VCPU, __NR_ioctl, 5, KVM_RUN + 1, 0));
	CHECK(!allows(SEC_VCPU, __NR_write, 0, 0, 0)); /* the file's list replaces visor's */
	CHECK_EQ(sec_rule_count(SEC_VCPU), 3);
	/* kinds the file does not name keep theirs */
	CHECK(allows(SEC_API, __NR_accept4, 0, 0, 0));
	sec_reset();
	CHECK(allows(SEC_VCPU, __NR_write, 0, 0, 0));

	static const struct {
		const char *json, *why;
	} bad[] = {
		{"", "not JSON"},
		{"[1]", "one JSON object"},
		{"{\"gpu\": []}", "unknown thread kind"},
		{"{\"vcpu\": {}}", "array of rules"},
		{"{\"vcpu\": [\"no_such_call\"]}", "not a system call"},
		{"{\"vcpu\": [7]}", "name or an object"},
		{"{\"vcpu\": [{\"args\": []}]}", "needs \"syscall\""},
		{"{\"vcpu\": [{\"syscall\": \"read\", \"x\": 1}]}", "unknown field"},
		{"{\"vcpu\": [{\"syscall\": \"read\", \"args\": 3}]}", "must be an array"},
		{"{\"vcpu\": [{\"syscall\": \"read\", \"args\": [{\"index\": 6, \"op\": \"eq\", "
		 "\"value\": 1}]}]}",
		 "0-5"},
		{"{\"vcpu\": [{\"syscall\": \"read\", \"args\": [{\"index\": 0, \"op\": \"like\", "
		 "\"value\": 1}]}]}",
		 "\"op\""},
		{"{\"vcpu\": [{\"syscall\": \"read\", \"args\": [{\"index\": 0, \"op\": \"eq\", "
		 "\"value\": -1}]}]}",
		 "\"value\""},
		{"{\"vcpu\": [{\"syscall\": \"read\", \"args\": [{\"index\": 0, \"op\": \"masked_eq\", "
		 "\"value\": 1}]}]}",
		 "needs \"mask\""},
		{"{\"vcpu\": [{\"syscall\": \"read\", \"args\": [{\"index\": 0, \"op\": \"eq\", "
		 "\"mask\": 1, \"value\": 1}]}]}",
		 "masked_eq only"},
		{"{\"vcpu\": [{\"syscall\": \"read\", \"args\": [{\"index\": 0, \"op\": \"eq\", "
		 "\"value\": 1, \"extra\": 2}]}]}",
		 "unknown condition field"},
		{"{\"vcpu\": [{\"syscall\": \"read\", \"args\": [1,2,3,4,5,6,7]}]}", "at most 6"},
		{"{\"vcpu\": []} x", "after the JSON"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		int r = sec_load_filter_json(bad[i].json, strlen(bad[i].json), err, sizeof(err));
		CHECK_EQ(r, -EINVAL);
		if (!strstr(err, bad[i].why))
			printf("  case %zu: '%s' lacks '%s'\n", i, err, bad[i].why);
		CHECK(strstr(err, bad[i].why) != NULL);
		/* a refused file changes nothing */
		CHECK(allows(SEC_VCPU, __NR_write, 0, 0, 0));
	}
	sec_reset();
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* Run @fn in a child; its wait status. */
__attribute__((unused)) static int in_child(void (*fn)(int), int fd)
{
	fflush(stdout);
	pid_t p = fork();
	if (p == 0) {
		fn(fd);
		_exit(0);
	}
	int st = 0;
	waitpid(p, &st, 0);
	return st;
}

__attribute__((unused)) static void child_forbidden(int fd)
{
	(void)fd;
	char e[256];
	if (sec_init(SEC_MODE_KILL, e, sizeof(e)) || sec_enter(SEC_VCPU))
		_exit(3);
	syscall(__NR_ptrace, 0, 0, 0, 0);
	_exit(4); /* not reached */
}

__attribute__((unused)) static void child_allowed(int fd)
{
	char e[256];
	if (sec_init(SEC_MODE_KILL, e, sizeof(e)) || sec_enter(SEC_VCPU))
		_exit(3);
	/* what a vCPU does besides KVM_RUN: write an eventfd, take a lock,
	 * read the clock, allocate */
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	/* the RTC's conversions: glibc's first one reads the time zone, which
	 * sec_init did beforehand (a vCPU opens no files) */
	struct tm tm;
	time_t tt = ts.tv_sec;
	if (!gmtime_r(&tt, &tm) || timegm(&tm) != tt)
		_exit(4);
	void *m = malloc(1 << 20);
	free(m);
	if (write(fd, "ok", 2) != 2)
		_exit(5);
	_exit(0);
}

static int hold[2];

/* a console thread: says it runs, waits until told to end */
static void *console_waits(void *arg)
{
	int fd = *(int *)arg;
	char c;
	(void)!write(fd, "T", 1);
	(void)!read(hold[0], &c, 1);
	return NULL;
}

/* a console thread that makes a socket: not its kind's call */
static void *console_opens(void *arg)
{
	(void)arg;
	int f = socket(AF_UNIX, SOCK_STREAM, 0);
	(void)f;
	return NULL;
}

__attribute__((unused)) static void child_spawner(int fd)
{
	char e[256];
	if (sec_init(SEC_MODE_KILL, e, sizeof(e)) || sec_enter(SEC_SETUP))
		_exit(3);
	pthread_t t;
	int wfd = fd;
	if (sec_thread_create(SEC_CONSOLE, &t, NULL, console_waits, &wfd))
		_exit(6);
	/* the parent looks at every thread's status meanwhile, then lets the
	 * console thread end */
	pthread_join(t, NULL);
	if (sec_thread_create(SEC_CONSOLE, &t, NULL, console_opens, NULL))
		_exit(6);
	pthread_join(t, NULL);
	_exit(7); /* not reached: the open kills the process */
}

/* Seccomp: mode of every thread of @pid; "n ok" counts. */
__attribute__((unused)) static void task_modes(pid_t pid, int *n, int *ok)
{
	char dir[64];
	snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
	DIR *d = opendir(dir);
	struct dirent *de;
	*n = *ok = 0;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char path[400], buf[4096];
		snprintf(path, sizeof(path), "%s/%s/status", dir, de->d_name);
		int s = open(path, O_RDONLY);
		ssize_t r = s >= 0 ? read(s, buf, sizeof(buf) - 1) : -1;
		if (s >= 0)
			close(s);
		if (r <= 0)
			continue;
		buf[r] = 0;
		(*n)++;
		*ok += strstr(buf, "Seccomp:\t2") != NULL;
	}
	if (d)
		closedir(d);
}

/* the loop's two stages: a snapshot's file is opened through
 * sec_run_wide once the loop is narrowed; opened directly, it kills */
static void wide_open(void *arg)
{
	int *fd = arg;
	*fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

__attribute__((unused)) static void child_narrowed(int fd)
{
	char e[256];
	if (sec_init(SEC_MODE_KILL, e, sizeof(e)) || sec_enter(SEC_SETUP))
		_exit(3);
	/* before the guest runs: files directly, sec_run_wide runs in place */
	int f = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (f < 0)
		_exit(4);
	close(f);
	if (sec_loop_narrowed() || sec_loop_narrow() || !sec_loop_narrowed() ||
	    sec_loop_narrow() /* a second call does nothing */)
		_exit(5);
	int wf = -1;
	if (sec_run_wide(wide_open, &wf) || wf < 0)
		_exit(6);
	close(wf);
	/* the loop's own work still runs: an eventfd-like pipe write, a lock,
	 * memory, the log's thread name */
	void *m = malloc(1 << 20);
	free(m);
	if (write(fd, "ok", 2) != 2)
		_exit(7);
	syscall(__NR_openat, AT_FDCWD, "/dev/null", O_RDONLY, 0); /* kills */
	_exit(8);
}

/* Run @child in a child process with filters off to start with: it writes
 * "ok" to the pipe it is given once narrowed, then makes a call its
 * narrowed filter refuses.  Whether it got that far and died of SIGSYS. */
__attribute__((unused)) static bool ok_then_sigsys(void (*child)(int))
{
	sec_reset();
	int p[2];
	if (pipe(p))
		return false;
	int st = in_child(child, p[1]);
	close(p[1]);
	char buf[4] = "";
	ssize_t n = read(p[0], buf, 2); /* it got that far */
	close(p[0]);
	if (!WIFSIGNALED(st))
		printf("  child exit status %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	else if (WTERMSIG(st) != SIGSYS)
		printf("  child killed by signal %d\n", WTERMSIG(st));
	if (n != 2 || memcmp(buf, "ok", 2))
		printf("  the child did not narrow and carry on (read %zd bytes)\n", n);
	return WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS && n == 2 && !memcmp(buf, "ok", 2);
}

TEST(loop_narrows_when_the_guest_runs)
{
#ifdef UNDER_ASAN
	printf("  (skipped under ASan: its runtime makes calls the filters refuse)\n");
#else
	CHECK(ok_then_sigsys(child_narrowed));
	/* filters off: nothing narrows, sec_run_wide runs in place */
	sec_reset();
	CHECK_EQ(sec_loop_narrow(), 0);
	CHECK(!sec_loop_narrowed());
	int wf = -1;
	CHECK_EQ(sec_run_wide(wide_open, &wf), 0);
	CHECK(wf >= 0);
	close(wf);
#endif
}

/* A migration's thread: connects under its set-up list, narrows, then a
 * new socket kills the process. */
__attribute__((unused)) static void *mig_thread(void *arg)
{
	int fd = *(int *)arg;
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		_exit(4);
	close(s);
	if (sec_enter(SEC_MIG_RUN))
		_exit(5);
	int sv[2];
	if (pipe2(sv, O_CLOEXEC)) /* post-copy's start makes a pipe */
		_exit(6);
	if (write(fd, "ok", 2) != 2)
		_exit(7);
	syscall(__NR_socket, AF_UNIX, SOCK_STREAM, 0); /* kills */
	_exit(8);
}

__attribute__((unused)) static void child_mig_narrowed(int fd)
{
	char e[256];
	if (sec_init(SEC_MODE_KILL, e, sizeof(e)) || sec_enter(SEC_SETUP))
		_exit(3);
	pthread_t t;
	if (sec_thread_create(SEC_MIGRATION, &t, NULL, mig_thread, &fd))
		_exit(9);
	pthread_join(t, NULL);
	_exit(10);
}

TEST(migration_thread_narrows_when_connected)
{
#ifdef UNDER_ASAN
	printf("  (skipped under ASan: its runtime makes calls the filters refuse)\n");
#else
	CHECK(ok_then_sigsys(child_mig_narrowed));
#endif
}

TEST(filters_in_force)
{
#ifdef UNDER_ASAN
	printf("  (skipped under ASan: its runtime makes calls the filters refuse)\n");
#else
	sec_reset();
	int st = in_child(child_forbidden, -1);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS);
	int p[2];
	CHECK_EQ(pipe(p), 0);
	st = in_child(child_allowed, p[1]);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(p[1]); /* a child that died before writing: no wait */
	char buf[8] = "";
	CHECK_EQ(read(p[0], buf, 2), 2);
	CHECK(!memcmp(buf, "ok", 2));
	close(p[0]);
	CHECK_EQ(pipe(p), 0);
	CHECK_EQ(pipe(hold), 0);
	fflush(stdout);
	pid_t c = fork();
	if (c == 0)
		child_spawner(p[1]);
	close(p[1]);
	memset(buf, 0, sizeof(buf));
	CHECK_EQ(read(p[0], buf, 1), 1);
	CHECK(buf[0] == 'T'); /* the console thread runs */
	int n, ok;
	task_modes(c, &n, &ok);
	CHECK(n >= 3); /* the loop, the spawner, the console thread */
	CHECK_EQ(ok, n);
	CHECK_EQ(write(hold[1], "x", 1), 1);
	waitpid(c, &st, 0);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS);
	close(p[0]);
#endif
}

TEST_MAIN()
