/* SPDX-License-Identifier: MIT */
#include "uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "../util/str.h"
#include "../seccomp.h"

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00) /* Linux 6.1 */
#endif

int uffd_mappings_json(const struct guest_mem *m, char *buf, size_t len)
{
	size_t n = 0;
	int w = snprintf(buf, len, "[");
	if (w < 0 || (size_t)w >= len)
		return -ENOSPC;
	n = (size_t)w;
	for (int i = 0; i < m->nregions; i++) {
		const struct guest_region *r = &m->regions[i];
		w = snprintf(buf + n, len - n,
			     "%s{\"base_host_virt_addr\":%llu,\"size\":%llu,\"offset\":%llu,"
			     "\"page_size\":%u,\"page_size_kib\":%u}",
			     i ? "," : "", (unsigned long long)(uintptr_t)r->hva,
			     (unsigned long long)r->size,
			     (unsigned long long)guest_region_file_offset(m, i), UFFD_LINK_PAGE_SIZE,
			     UFFD_LINK_PAGE_SIZE);
		if (w < 0 || (size_t)w >= len - n)
			return -ENOSPC;
		n += (size_t)w;
	}
	w = snprintf(buf + n, len - n, "]");
	if (w < 0 || (size_t)w >= len - n)
		return -ENOSPC;
	return (int)(n + (size_t)w);
}

int uffd_create(char *err, size_t errlen)
{
	/* the system call first (every kernel since 4.3); with
	 * vm.unprivileged_userfaultfd=0 it refuses a process without
	 * CAP_SYS_PTRACE a userfaultfd that also handles faults the kernel
	 * takes (KVM's), so then the device of Linux 6.1, whose file mode
	 * decides */
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	int sys_err = fd < 0 ? errno : 0, dev_err = 0;
	if (fd < 0) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (dev < 0) {
			dev_err = errno;
		} else {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
			if (fd < 0)
				dev_err = errno;
			close(dev);
		}
	}
	if (fd < 0) {
		const char *hint =
			sys_err == ENOSYS && dev_err == ENOENT
				? "this kernel has no userfaultfd (CONFIG_USERFAULTFD)"
				: "allow it with `sysctl vm.unprivileged_userfaultfd=1`, CAP_SYS_PTRACE, "
				  "or read-write access to /dev/userfaultfd";
		return err_set(err, errlen, -sys_err,
			       "cannot create a userfaultfd: userfaultfd(2): %s; /dev/userfaultfd: "
			       "%s (%s)",
			       strerror(sys_err), strerror(dev_err), hint);
	}
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE};
	if (ioctl(fd, UFFDIO_API, &api)) {
		int r = -errno;
		close(fd);
		return err_set(err, errlen, r, "userfaultfd: UFFDIO_API with EVENT_REMOVE: %s",
			       strerror(-r));
	}
	const uint64_t need = (1ull << _UFFDIO_REGISTER) | (1ull << _UFFDIO_UNREGISTER);
	if (!(api.features & UFFD_FEATURE_EVENT_REMOVE) || (api.ioctls & need) != need) {
		close(fd);
		return err_set(err, errlen, -ENOTSUP,
			       "userfaultfd: the kernel lacks EVENT_REMOVE or registration "
			       "(features 0x%llx, ioctls 0x%llx)",
			       (unsigned long long)api.features, (unsigned long long)api.ioctls);
	}
	return fd;
}

int uffd_register(int uffd, const struct guest_mem *m, char *err, size_t errlen)
{
	const uint64_t need =
		(1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_ZEROPAGE) | (1ull << _UFFDIO_WAKE);
	for (int i = 0; i < m->nregions; i++) {
		const struct guest_region *r = &m->regions[i];
		struct uffdio_register reg = {
			.range = {.start = (uint64_t)(uintptr_t)r->hva, .len = r->size},
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};
		if (ioctl(uffd, UFFDIO_REGISTER, &reg))
			return err_set(err, errlen, -errno,
				       "userfaultfd: cannot register guest memory at 0x%llx (%llu "
				       "bytes): %s",
				       (unsigned long long)r->gpa, (unsigned long long)r->size,
				       strerror(errno));
		if ((reg.ioctls & need) != need)
			return err_set(err, errlen, -ENOTSUP,
				       "userfaultfd: the kernel offers no UFFDIO_COPY, ZEROPAGE and "
				       "WAKE on guest memory (ioctls 0x%llx)",
				       (unsigned long long)reg.ioctls);
	}
	return 0;
}

int uffd_send(const char *path, const char *json, size_t len, int uffd, char *err,
	      size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t plen = strlen(path);
	if (plen == 0 || plen >= sizeof(sa.sun_path))
		return err_set(err, errlen, -ENAMETOOLONG,
			       "page-fault handler socket '%s': a Unix socket path is 1 to %zu "
			       "bytes",
			       path, sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, path, plen);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return err_set(err, errlen, -errno, "socket: %s", strerror(errno));
	int r;
	do
		r = connect(s, (struct sockaddr *)&sa, sizeof(sa));
	while (r && errno == EINTR);
	if (r) {
		int e = errno;
		close(s);
		return err_set(err, errlen, -e, "cannot connect to the page-fault handler at %s: %s%s",
			       path, strerror(e),
			       e == ECONNREFUSED ? " (nothing listens on it)"
			       : e == ENOENT	 ? " (no socket there: is the handler running?)"
						 : "");
	}
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} cm;
	memset(&cm, 0, sizeof(cm));
	struct iovec iov = {.iov_base = (void *)json, .iov_len = len};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = cm.buf,
			     .msg_controllen = sizeof(cm.buf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &uffd, sizeof(int));
	ssize_t n;
	do
		n = sendmsg(s, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0 || (size_t)n != len) {
		int e = n < 0 ? errno : EIO;
		close(s);
		return err_set(err, errlen, -e,
			       "cannot send the memory layout and userfaultfd to the page-fault "
			       "handler at %s: %s%s",
			       path, n < 0 ? strerror(e) : "short send",
			       e == EPIPE || e == ECONNRESET ? " (the handler closed the connection)"
							     : "");
	}
	return s;
}

struct probe {
	const volatile uint8_t *addr;
	int efd;
};

static void *probe_main(void *arg)
{
	struct probe *p = arg;
	(void)*p->addr; /* the fault the handler must serve */
	uint64_t one = 1;
	ssize_t n;
	do
		n = write(p->efd, &one, sizeof(one));
	while (n < 0 && errno == EINTR);
	return NULL;
}

/* The pid of the process that listens on @sock's other end (SO_PEERCRED
 * gives the listener's credentials from its listen()), as a pidfd, or -1
 * when it cannot be watched (gone already, another pid namespace, no
 * pidfd_open). */
static int listener_pidfd(int sock, pid_t *pid)
{
	struct ucred cr;
	socklen_t l = sizeof(cr);
	*pid = 0;
	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cr, &l) || cr.pid <= 0)
		return -1;
	*pid = cr.pid;
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, cr.pid, 0);
#else
	return -1;
#endif
}

int uffd_wait_handler(int sock, int *uffd, const volatile uint8_t *probe, char *err,
		      size_t errlen)
{
	struct probe p = {.addr = probe, .efd = eventfd(0, EFD_CLOEXEC)};
	if (p.efd < 0)
		return err_set(err, errlen, -errno, "eventfd: %s", strerror(errno));
	pthread_t t;
	int r = sec_thread_create(SEC_POSTCOPY, &t, NULL, probe_main, &p);
	if (r) {
		close(p.efd);
		return err_set(err, errlen, -r, "cannot start the userfaultfd probe: %s",
			       strerror(r));
	}
	pid_t pid;
	int pfd = listener_pidfd(sock, &pid);
	struct pollfd fds[3] = {
		{.fd = p.efd, .events = POLLIN},
		{.fd = sock, .events = POLLRDHUP},
		{.fd = pfd, .events = POLLIN},
	};
	r = 0;
	for (;;) {
		if (poll(fds, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			r = err_set(err, errlen, -errno, "poll: %s", strerror(errno));
			break;
		}
		if (fds[0].revents)
			break; /* served */
		if (fds[1].revents) {
			int soerr = 0;
			socklen_t l = sizeof(soerr);
			if (getsockopt(sock, SOL_SOCKET, SO_ERROR, &soerr, &l))
				soerr = errno;
			if (soerr) {
				r = err_set(err, errlen, -soerr,
					    "the page-fault handler closed the connection without "
					    "reading the memory layout and userfaultfd (%s)",
					    strerror(soerr));
				break;
			}
			/* it read the message and closed its end, which the
			 * protocol allows: its faults are what counts now */
			fds[1].fd = -1;
		}
		if (fds[2].revents) {
			r = err_set(err, errlen, -EPIPE,
				    "the page-fault handler (pid %d) exited before serving a page",
				    (int)pid);
			break;
		}
	}
	if (r) {
		/* visor's copy is the last one now (the message's was dropped
		 * unread, or the handler is gone): closing it releases the
		 * userfaultfd, which wakes the probe's fault */
		close(*uffd);
		*uffd = -1;
	}
	pthread_join(t, NULL);
	close(p.efd);
	if (pfd >= 0)
		close(pfd);
	return r;
}

int uffd_link_open(struct uffd_link *u, const struct guest_mem *m, const char *path, char *err,
		   size_t errlen)
{
	u->uffd = u->sock = -1;
	if (m->nregions < 1)
		return err_set(err, errlen, -EINVAL, "no guest memory to register");
	char json[UFFD_LINK_JSON_MAX];
	int n = uffd_mappings_json(m, json, sizeof(json));
	if (n < 0)
		return err_set(err, errlen, n, "the memory layout does not fit in %d bytes",
			       UFFD_LINK_JSON_MAX);
	int fd = uffd_create(err, errlen);
	if (fd < 0)
		return fd;
	int r = uffd_register(fd, m, err, errlen);
	if (r) {
		close(fd);
		return r;
	}
	int s = uffd_send(path, json, (size_t)n, fd, err, errlen);
	if (s < 0) {
		close(fd);
		return s;
	}
	r = uffd_wait_handler(s, &fd, m->regions[0].hva, err, errlen);
	if (r) {
		if (fd >= 0)
			close(fd);
		close(s);
		return r;
	}
	u->uffd = fd;
	u->sock = s;
	return 0;
}

void uffd_link_close(struct uffd_link *u)
{
	if (u->uffd >= 0)
		close(u->uffd);
	if (u->sock >= 0)
		close(u->sock);
	u->uffd = u->sock = -1;
}
