/* SPDX-License-Identifier: MIT */
/*
 * sectime: what visor's seccomp filter adds to one system call (bench/isolation
 * --sectime).  No KVM needed: every measurement runs in a child process that
 * installs the filter of one thread kind with visor's own code (src/seccomp.c:
 * sec_init, sec_enter) or none, then times a loop of one system call that the
 * kind allows.  The calls fail at once (bad descriptor, empty eventfd), so what
 * is timed is the kernel's entry and exit plus, with a filter, the filter's
 * BPF program: the difference is the filter's cost per call.
 *
 *   sectime [--calls N] [--trials N] [--pairs N]
 *
 * Prints one line per kind and call:
 *   SECTIME kind=K call=C off_ns=X on_ns=Y delta_ns=Y-X
 * where X and Y are the fastest of --trials (default 400) loops of --calls
 * (default 2000) calls each, in ns per call, over --pairs (default 3) child
 * processes without and with the filter, alternately.  Short loops, many
 * of them, and the fastest: on a loaded host some loop runs undisturbed.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "../src/seccomp.h"

enum call { C_READ, C_WRITE, C_EPOLL_WAIT, C_IO_URING_ENTER, C_IOCTL_KVM_RUN, C_IOCTL_IRQ_LINE };

static const char *const call_names[] = {"read-eventfd", "write-badfd", "epoll_wait-badfd",
					 "io_uring_enter-badfd", "ioctl-KVM_RUN-badfd",
					 "ioctl-KVM_IRQ_LINE-badfd"};

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void one(enum call c, int efd)
{
	uint64_t v = 1;
	switch (c) {
	case C_READ:
		(void)!read(efd, &v, sizeof(v)); /* empty, non-blocking: EAGAIN */
		break;
	case C_WRITE:
		(void)!write(-1, &v, sizeof(v));
		break;
	case C_EPOLL_WAIT:
		syscall(SYS_epoll_wait, -1, NULL, 1, 0);
		break;
	case C_IO_URING_ENTER:
		syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0);
		break;
	case C_IOCTL_KVM_RUN:
		ioctl(-1, KVM_RUN, 0);
		break;
	case C_IOCTL_IRQ_LINE:
		ioctl(-1, KVM_IRQ_LINE, NULL);
		break;
	}
}

/* in a child: install kind @k's filter (or none, @k < 0), time the calls;
 * the best ns per call comes back through @fd */
static int child(int k, enum call c, long calls, int trials, int fd)
{
	char err[256];
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (efd < 0)
		return 1;
	if (k >= 0) {
		if (sec_init(SEC_MODE_KILL, err, sizeof(err)) || sec_enter((enum sec_kind)k))
			return 2;
	}
	double best = 1e18;
	for (int t = 0; t < trials; t++) {
		uint64_t t0 = now_ns();
		for (long i = 0; i < calls; i++)
			one(c, efd);
		double ns = (double)(now_ns() - t0) / (double)calls;
		if (ns < best)
			best = ns;
	}
	return write(fd, &best, sizeof(best)) == sizeof(best) ? 0 : 3;
}

/* run child() in a new process; the ns per call, or -1 */
static double measure(int k, enum call c, long calls, int trials)
{
	int p[2];
	if (pipe(p))
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(p[0]);
		_exit(child(k, c, calls, trials, p[1]));
	}
	close(p[1]);
	double ns = -1;
	if (read(p[0], &ns, sizeof(ns)) != sizeof(ns))
		ns = -1;
	close(p[0]);
	int st = 0;
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "sectime: %s/%s: child %s %d\n", k >= 0 ? sec_kind_name(k) : "off",
			call_names[c], WIFSIGNALED(st) ? "killed by signal" : "exit",
			WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
		return -1;
	}
	return ns;
}

int main(int argc, char **argv)
{
	long calls = 2000;
	int trials = 400, pairs = 3;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--calls") && i + 1 < argc) {
			calls = atol(argv[++i]);
		} else if (!strcmp(argv[i], "--trials") && i + 1 < argc) {
			trials = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--pairs") && i + 1 < argc) {
			pairs = atoi(argv[++i]);
		} else {
			fprintf(stderr, "usage: sectime [--calls N] [--trials N] [--pairs N]\n");
			return 1;
		}
	}
	if (calls < 1 || trials < 1 || pairs < 1) {
		fprintf(stderr, "sectime: --calls, --trials and --pairs must be at least 1\n");
		return 1;
	}
	/* each kind with calls its filter allows on its hot path */
	static const struct {
		enum sec_kind k;
		enum call c;
	} runs[] = {
		{SEC_VMM, C_READ},	     {SEC_VMM, C_WRITE},	   {SEC_VMM, C_EPOLL_WAIT},
		{SEC_VMM, C_IO_URING_ENTER}, {SEC_VCPU, C_IOCTL_KVM_RUN}, {SEC_VCPU, C_IOCTL_IRQ_LINE},
		{SEC_VCPU, C_WRITE},	     {SEC_VMM, C_IOCTL_IRQ_LINE},
	};
	int bad = 0;
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		double off = 1e18, on = 1e18;
		for (int p = 0; p < pairs; p++) {
			double a = measure(-1, runs[i].c, calls, trials);
			double b = measure((int)runs[i].k, runs[i].c, calls, trials);
			if (a < 0 || b < 0) {
				off = on = -1;
				break;
			}
			off = a < off ? a : off;
			on = b < on ? b : on;
		}
		if (off < 0 || on < 0) {
			bad = 1;
			continue;
		}
		printf("SECTIME kind=%s call=%s off_ns=%.1f on_ns=%.1f delta_ns=%.1f\n",
		       sec_kind_name(runs[i].k), call_names[runs[i].c], off, on, on - off);
		fflush(stdout);
	}
	return bad;
}
