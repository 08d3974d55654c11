/* SPDX-License-Identifier: MIT */
/*
 * uffd-handler - a page-fault handler for snapshots loaded with the `Uffd`
 * memory backend (PUT /snapshot/load, mem_backend.backend_type "Uffd"),
 * speaking the protocol of Firecracker's handlers (docs/api.md, "The Uffd
 * memory backend"), for the tests.
 *
 *   uffd-handler [--close-at-once | --exit-after-recv] SOCKET MEMFILE
 *
 * Listens on the Unix socket SOCKET (an old socket file there is removed)
 * and takes one connection: one message with the JSON array of memory
 * regions ({"base_host_virt_addr", "size", "offset", "page_size",
 * "page_size_kib"}) and the userfaultfd as SCM_RIGHTS.  Everything received
 * is checked (exactly one fd and it is a userfaultfd, well-formed JSON with
 * exactly these fields, page-aligned non-overlapping regions inside
 * MEMFILE) and refused otherwise (exit 1).  Then it serves: a page fault
 * gets the page from MEMFILE (mapped private, read-only) with UFFDIO_COPY,
 * or a zero page (UFFDIO_ZEROPAGE) if a UFFD_EVENT_REMOVE (the balloon's
 * MADV_DONTNEED) covered it, as Firecracker's example handlers do; a copy
 * the kernel answers EAGAIN (a remove event pending) is retried after the
 * queued events; EEXIST (already filled) just wakes the faulting thread.
 * Any other event is unexpected and ends the handler (exit 1).
 *
 * It ends when visor closes the connection (visor exited) or on
 * SIGTERM/SIGINT, printing
 *   uffd-handler: served N faults (C copied, Z zero pages), E already present, R remove events
 * and exits 0.
 *
 * --close-at-once    accept the connection and close it without reading
 *                    (a handler that refuses): the load must fail
 * --exit-after-recv  read and check the message, then exit without
 *                    serving (a handler that dies): the load must fail
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_REGIONS 16
#define MSG_MAX 8192

struct region {
	uint64_t base, size, offset;
	uint8_t *removed; /* one bit per page: zero-fill instead of copying */
};

static struct region regions[MAX_REGIONS];
static int nregions;
static uint64_t page_size;
static const uint8_t *file_map;
static uint64_t file_size;
static unsigned long long copied, zeroed, present, removes;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "uffd-handler: error: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static void report(void)
{
	printf("uffd-handler: served %llu faults (%llu copied, %llu zero pages), %llu already "
	       "present, %llu remove events\n",
	       copied + zeroed, copied, zeroed, present, removes);
	fflush(stdout);
}

/* ---- the message ------------------------------------------------------------ */

static uint64_t get_u64(struct json_object *o, const char *key, int i)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v))
		die("region %d: no \"%s\"", i, key);
	if (!json_object_is_type(v, json_type_int))
		die("region %d: \"%s\" is not an integer", i, key);
	errno = 0;
	int64_t s = json_object_get_int64(v);
	if (s < 0)
		die("region %d: \"%s\" is negative", i, key);
	uint64_t u = json_object_get_uint64(v);
	if (errno)
		die("region %d: \"%s\" is out of range", i, key);
	return u;
}

static void parse_regions(const char *text)
{
	static const char *const fields[] = {"base_host_virt_addr", "size", "offset", "page_size",
					     "page_size_kib"};
	struct json_tokener *tok = json_tokener_new();
	if (!tok)
		die("out of memory");
	size_t len = strlen(text);
	struct json_object *a = json_tokener_parse_ex(tok, text, (int)len);
	if (!a || json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len)
		die("the message is not one JSON value: %s",
		    json_tokener_error_desc(json_tokener_get_error(tok)));
	json_tokener_free(tok);
	if (!json_object_is_type(a, json_type_array))
		die("the message is not a JSON array");
	size_t n = json_object_array_length(a);
	if (n < 1 || n > MAX_REGIONS)
		die("%zu regions (1 to %d expected)", n, MAX_REGIONS);
	for (size_t i = 0; i < n; i++) {
		struct json_object *o = json_object_array_get_idx(a, i);
		if (!json_object_is_type(o, json_type_object))
			die("region %zu is not an object", i);
		json_object_object_foreach(o, key, val)
		{
			(void)val;
			bool known = false;
			for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
				known |= !strcmp(key, fields[f]);
			if (!known)
				die("region %zu: unknown field \"%s\"", i, key);
		}
		struct region *r = &regions[i];
		r->base = get_u64(o, "base_host_virt_addr", (int)i);
		r->size = get_u64(o, "size", (int)i);
		r->offset = get_u64(o, "offset", (int)i);
		uint64_t ps = get_u64(o, "page_size", (int)i);
		/* Firecracker sends the page size in bytes under both names */
		if (get_u64(o, "page_size_kib", (int)i) != ps)
			die("region %zu: page_size_kib differs from page_size", i);
		if (ps < 4096 || ps > (1u << 30) || (ps & (ps - 1)))
			die("region %zu: page size %llu", i, (unsigned long long)ps);
		if (i && ps != page_size)
			die("region %zu: another page size", i);
		page_size = ps;
		if (!r->size || (r->base | r->size | r->offset) & (ps - 1))
			die("region %zu: empty or not page-aligned", i);
		if (r->base + r->size < r->base || r->offset + r->size < r->offset ||
		    r->offset + r->size > file_size)
			die("region %zu: [%llu, +%llu) is not inside the %llu-byte memory file", i,
			    (unsigned long long)r->offset, (unsigned long long)r->size,
			    (unsigned long long)file_size);
		for (size_t j = 0; j < i; j++) {
			const struct region *q = &regions[j];
			if (r->base < q->base + q->size && q->base < r->base + r->size)
				die("regions %zu and %zu overlap in memory", j, i);
			if (r->offset < q->offset + q->size && q->offset < r->offset + r->size)
				die("regions %zu and %zu overlap in the file", j, i);
		}
		r->removed = calloc(r->size / ps / 8 + 1, 1);
		if (!r->removed)
			die("out of memory");
	}
	nregions = (int)n;
	json_object_put(a);
}

static bool is_userfaultfd(int fd)
{
	char p[64], l[64];
	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(p, l, sizeof(l) - 1);
	if (n < 0)
		return false;
	l[n] = 0;
	return !strcmp(l, "anon_inode:[userfaultfd]");
}

/* The first message: the JSON (all of it, in one message) and exactly one
 * fd.  Returns the userfaultfd. */
static int receive(int conn)
{
	static char buf[MSG_MAX + 1];
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int) * 8)];
	} cm;
	struct iovec iov = {.iov_base = buf, .iov_len = MSG_MAX};
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b, .msg_controllen = sizeof(cm.b)};
	ssize_t n;
	do
		n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		die("recvmsg: %s", strerror(errno));
	if (n == 0)
		die("the connection closed before the message");
	int fd = -1, nfds = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int f;
			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (nfds++ == 0)
				fd = f;
			else
				close(f);
		}
	}
	if (msg.msg_flags & MSG_CTRUNC)
		die("the message's control data was truncated");
	if (nfds != 1)
		die("%d file descriptors with the message (1 expected)", nfds);
	if (!is_userfaultfd(fd))
		die("the file descriptor is not a userfaultfd");
	if ((size_t)n == MSG_MAX)
		die("the message is longer than %d bytes", MSG_MAX - 1);
	buf[n] = 0;
	if (strlen(buf) != (size_t)n)
		die("the message has a NUL byte");
	parse_regions(buf);
	return fd;
}

/* ---- serving ---------------------------------------------------------------- */

static struct region *find(uint64_t addr)
{
	for (int i = 0; i < nregions; i++)
		if (addr >= regions[i].base && addr - regions[i].base < regions[i].size)
			return &regions[i];
	return NULL;
}

/* 0 served, 1 retry later (EAGAIN), -1 visor's memory is gone */
static int serve(int uffd, uint64_t addr)
{
	struct region *r = find(addr);
	if (!r)
		die("a fault at 0x%llx, outside every region", (unsigned long long)addr);
	uint64_t page = addr & ~(page_size - 1);
	uint64_t idx = (page - r->base) / page_size;
	int rc;
	bool zero = r->removed[idx / 8] & (1u << (idx % 8));
	if (zero) {
		struct uffdio_zeropage z = {.range = {.start = page, .len = page_size}};
		rc = ioctl(uffd, UFFDIO_ZEROPAGE, &z);
	} else {
		struct uffdio_copy c = {.dst = page,
					.src = (uint64_t)(uintptr_t)(file_map + r->offset +
								     (page - r->base)),
					.len = page_size};
		rc = ioctl(uffd, UFFDIO_COPY, &c);
	}
	if (!rc) {
		if (zero)
			zeroed++;
		else
			copied++;
		return 0;
	}
	if (errno == EEXIST) {
		/* filled meanwhile (a second fault on the page): wake it */
		struct uffdio_range w = {.start = page, .len = page_size};
		present++;
		if (ioctl(uffd, UFFDIO_WAKE, &w) && errno != ENOENT && errno != ESRCH)
			die("UFFDIO_WAKE at 0x%llx: %s", (unsigned long long)page, strerror(errno));
		return 0;
	}
	if (errno == EAGAIN)
		return 1;
	if (errno == ENOENT || errno == ESRCH)
		return -1; /* visor is exiting */
	die("%s at 0x%llx: %s", zero ? "UFFDIO_ZEROPAGE" : "UFFDIO_COPY",
	    (unsigned long long)page, strerror(errno));
}

static void mark_removed(uint64_t start, uint64_t end)
{
	removes++;
	if (end < start)
		die("a remove event with end before start");
	for (int i = 0; i < nregions; i++) {
		struct region *r = &regions[i];
		uint64_t s = start > r->base ? start : r->base;
		uint64_t e = end < r->base + r->size ? end : r->base + r->size;
		/* whole pages only: MADV_DONTNEED works on whole pages */
		for (uint64_t p = (s + page_size - 1) & ~(page_size - 1); p + page_size <= e;
		     p += page_size) {
			uint64_t idx = (p - r->base) / page_size;
			r->removed[idx / 8] |= (uint8_t)(1u << (idx % 8));
		}
	}
}

#define MAX_DEFERRED 4096
static uint64_t deferred[MAX_DEFERRED];
static size_t ndeferred;

/* Read every queued event; faults in order, remove events marked.
 * Returns false once visor's memory is gone. */
static bool drain(int uffd)
{
	for (;;) {
		struct uffd_msg msgs[64];
		ssize_t n = read(uffd, msgs, sizeof(msgs));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			die("reading the userfaultfd: %s", strerror(errno));
		if (n == 0 || n % (ssize_t)sizeof(msgs[0]))
			die("a userfaultfd read of %zd bytes", n);
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++) {
			const struct uffd_msg *m = &msgs[i];
			switch (m->event) {
			case UFFD_EVENT_PAGEFAULT:
				if (ndeferred == MAX_DEFERRED)
					die("too many faults waiting");
				deferred[ndeferred++] = m->arg.pagefault.address;
				break;
			case UFFD_EVENT_REMOVE:
				mark_removed(m->arg.remove.start, m->arg.remove.end);
				break;
			default:
				die("unexpected userfaultfd event %u", m->event);
			}
		}
	}
	/* serve after the whole queue: a remove event queued behind a fault
	 * is what makes the copy answer EAGAIN */
	size_t keep = 0;
	for (size_t i = 0; i < ndeferred; i++) {
		int r = serve(uffd, deferred[i]);
		if (r < 0)
			return false;
		if (r > 0)
			deferred[keep++] = deferred[i];
	}
	ndeferred = keep;
	return true;
}

int main(int argc, char **argv)
{
	bool close_at_once = false, exit_after_recv = false;
	int a = 1;
	for (; a < argc && argv[a][0] == '-'; a++) {
		if (!strcmp(argv[a], "--close-at-once"))
			close_at_once = true;
		else if (!strcmp(argv[a], "--exit-after-recv"))
			exit_after_recv = true;
		else
			die("unknown option %s", argv[a]);
	}
	if (argc - a != 2) {
		fprintf(stderr, "usage: uffd-handler [--close-at-once | --exit-after-recv] SOCKET "
				"MEMFILE\n");
		return 2;
	}
	const char *path = argv[a], *mem = argv[a + 1];
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);

	int mfd = open(mem, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (mfd < 0 || fstat(mfd, &st))
		die("%s: %s", mem, strerror(errno));
	if (!S_ISREG(st.st_mode) || st.st_size <= 0)
		die("%s: not a non-empty regular file", mem);
	file_size = (uint64_t)st.st_size;
	file_map = mmap(NULL, file_size, PROT_READ, MAP_PRIVATE, mfd, 0);
	if (file_map == MAP_FAILED)
		die("mmap %s: %s", mem, strerror(errno));
	close(mfd);

	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		die("socket path too long");
	strcpy(sa.sun_path, path);
	int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ls < 0)
		die("socket: %s", strerror(errno));
	unlink(path);
	if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 1))
		die("%s: %s", path, strerror(errno));
	printf("uffd-handler: listening on %s\n", path);

	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (sfd < 0)
		die("signalfd: %s", strerror(errno));

	struct pollfd lp[2] = {{.fd = ls, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
	while (poll(lp, 2, -1) < 0)
		if (errno != EINTR)
			die("poll: %s", strerror(errno));
	if (lp[1].revents) {
		printf("uffd-handler: stopped before a connection\n");
		return 0;
	}
	int conn = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
	if (conn < 0)
		die("accept: %s", strerror(errno));
	close(ls);
	unlink(path);
	if (close_at_once) {
		close(conn);
		printf("uffd-handler: closed the connection without reading it\n");
		return 0;
	}
	struct ucred cr = {0};
	socklen_t cl = sizeof(cr);
	(void)getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cr, &cl);
	int uffd = receive(conn);
	printf("uffd-handler: connected to pid %d: %d region(s), page size %llu\n", (int)cr.pid,
	       nregions, (unsigned long long)page_size);
	for (int i = 0; i < nregions; i++)
		printf("uffd-handler: region %d: 0x%llx +0x%llx from offset 0x%llx\n", i,
		       (unsigned long long)regions[i].base, (unsigned long long)regions[i].size,
		       (unsigned long long)regions[i].offset);
	if (exit_after_recv) {
		printf("uffd-handler: exiting without serving\n");
		return 0;
	}
	/* visor made the fd non-blocking (as Firecracker does); make sure */
	int fl = fcntl(uffd, F_GETFL);
	if (fl < 0 || fcntl(uffd, F_SETFL, fl | O_NONBLOCK))
		die("fcntl: %s", strerror(errno));

	struct pollfd p[3] = {{.fd = uffd, .events = POLLIN},
			      {.fd = conn, .events = POLLIN | POLLRDHUP},
			      {.fd = sfd, .events = POLLIN}};
	for (;;) {
		/* a copy refused with EAGAIN while a remove is still under
		 * way is retried soon even if no new event comes */
		int ready = poll(p, 3, ndeferred ? 1 : -1);
		if (ready < 0) {
			if (errno == EINTR)
				continue;
			die("poll: %s", strerror(errno));
		}
		if (p[0].revents & POLLERR)
			die("the userfaultfd reports an error");
		if ((p[0].revents & POLLIN) || (ready == 0 && ndeferred)) {
			if (!drain(uffd))
				break;
			continue; /* faults first; the other fds next time round */
		}
		if (p[1].revents) {
			char b[256];
			ssize_t n = recv(conn, b, sizeof(b), MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				break; /* visor closed the connection: it is gone */
			/* the protocol has nothing more: ignore */
		}
		if (p[2].revents)
			break;
	}
	report();
	return 0;
}
