/* SPDX-License-Identifier: MIT */
/*
 * The Uffd memory backend (mem/uffd.c): the region mappings JSON as
 * Firecracker sends it, the socket refusals, and, where this host lets a
 * process create a userfaultfd, the whole hand-over: guest memory
 * registered, the layout and the userfaultfd sent to a handler (a thread
 * here) that serves every page from a memory file, guest reads through
 * gpa_to_hva seeing the file's bytes, a MADV_DONTNEED reaching the handler
 * as UFFD_EVENT_REMOVE, and a handler that closes the connection at once
 * failing the hand-over instead of leaving visor waiting.
 */
#include "../../src/mem/uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "test.h"

#define MIB (1ull << 20)
/* RAM 0-6 MiB and 8-10 MiB around a "hole" */
#define SIZE (8 * MIB)
#define HOLE (6 * MIB)
#define HOLE_END (8 * MIB)
#define PAGE 4096u

static char dir[] = "/tmp/visor-test-uffd-XXXXXX";

static struct sockaddr_un sock_addr(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		abort();
	memcpy(sa.sun_path, path, strlen(path));
	return sa;
}

TEST(mappings_json_is_firecrackers)
{
	struct guest_mem m;
	CHECK_EQ(guest_mem_init(&m, SIZE, HOLE, HOLE_END), 0);
	CHECK_EQ(m.nregions, 2);
	CHECK_EQ(guest_region_file_offset(&m, 0), 0);
	CHECK_EQ(guest_region_file_offset(&m, 1), HOLE);
	char want[512], buf[UFFD_LINK_JSON_MAX];
	snprintf(want, sizeof(want),
		 "[{\"base_host_virt_addr\":%llu,\"size\":6291456,\"offset\":0,\"page_size\":4096,"
		 "\"page_size_kib\":4096},{\"base_host_virt_addr\":%llu,\"size\":2097152,"
		 "\"offset\":6291456,\"page_size\":4096,\"page_size_kib\":4096}]",
		 (unsigned long long)(uintptr_t)m.regions[0].hva,
		 (unsigned long long)(uintptr_t)m.regions[1].hva);
	int n = uffd_mappings_json(&m, buf, sizeof(buf));
	CHECK_EQ(n, strlen(want));
	CHECK_STR(buf, want);
	/* it is JSON a handler's parser takes: the values read back */
	struct json_object *a = json_tokener_parse(buf);
	CHECK(a && json_object_is_type(a, json_type_array));
	CHECK_EQ(json_object_array_length(a), 2);
	for (int i = 0; i < 2 && a; i++) {
		struct json_object *o = json_object_array_get_idx(a, (size_t)i), *v;
		CHECK(json_object_object_get_ex(o, "base_host_virt_addr", &v));
		CHECK_EQ(json_object_get_uint64(v), (uintptr_t)m.regions[i].hva);
		CHECK(json_object_object_get_ex(o, "size", &v));
		CHECK_EQ(json_object_get_uint64(v), m.regions[i].size);
		CHECK(json_object_object_get_ex(o, "offset", &v));
		CHECK_EQ(json_object_get_uint64(v), guest_region_file_offset(&m, i));
		CHECK_EQ(json_object_object_length(o), 5);
	}
	json_object_put(a);
	/* every buffer too small by one or more bytes is refused, never cut */
	for (size_t len = 0; len <= (size_t)n; len++)
		CHECK_EQ(uffd_mappings_json(&m, buf, len), -ENOSPC);
	guest_mem_destroy(&m);

	/* one region: RAM below the hole */
	CHECK_EQ(guest_mem_init(&m, 2 * MIB, HOLE, HOLE_END), 0);
	snprintf(want, sizeof(want),
		 "[{\"base_host_virt_addr\":%llu,\"size\":2097152,\"offset\":0,\"page_size\":4096,"
		 "\"page_size_kib\":4096}]",
		 (unsigned long long)(uintptr_t)m.regions[0].hva);
	CHECK_EQ(uffd_mappings_json(&m, buf, sizeof(buf)), strlen(want));
	CHECK_STR(buf, want);
	guest_mem_destroy(&m);
}

TEST(send_refuses_missing_sockets_and_long_paths)
{
	char err[512], path[256];
	int fd = eventfd(0, EFD_CLOEXEC); /* any fd will do for the refusals */
	CHECK(fd >= 0);
	test_tmp_path(dir, path, sizeof(path), "none.sock");
	CHECK_EQ(uffd_send(path, "[]", 2, fd, err, sizeof(err)), -ENOENT);
	CHECK(strstr(err, "none.sock") && strstr(err, "no socket there"));
	/* a file that is not a socket */
	test_tmp_path(dir, path, sizeof(path), "plain");
	int pf = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	CHECK(pf >= 0);
	close(pf);
	CHECK_EQ(uffd_send(path, "[]", 2, fd, err, sizeof(err)), -ECONNREFUSED);
	CHECK(strstr(err, "nothing listens"));
	unlink(path);
	/* a socket nobody listens on any more */
	test_tmp_path(dir, path, sizeof(path), "dead.sock");
	int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = sock_addr(path);
	CHECK_EQ(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(ls);
	CHECK_EQ(uffd_send(path, "[]", 2, fd, err, sizeof(err)), -ECONNREFUSED);
	unlink(path);
	char longp[200];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = 0;
	CHECK_EQ(uffd_send(longp, "[]", 2, fd, err, sizeof(err)), -ENAMETOOLONG);
	CHECK(strstr(err, "1 to 107 bytes"));
	CHECK_EQ(uffd_send("", "[]", 2, fd, err, sizeof(err)), -ENAMETOOLONG);
	close(fd);
}

/* ---- with a userfaultfd -------------------------------------------------------- */

static bool have_uffd(void)
{
	char err[512];
	int fd = uffd_create(err, sizeof(err));
	if (fd < 0) {
		/* the message must say what to change */
		CHECK(strstr(err, "userfaultfd"));
		printf("  (no userfaultfd on this host, the hand-over tests are skipped: %s)\n",
		       err);
		return false;
	}
	close(fd);
	return true;
}

TEST(create_and_register)
{
	if (!have_uffd())
		return;
	char err[512];
	int fd = uffd_create(err, sizeof(err));
	CHECK(fd >= 0);
	int fl = fcntl(fd, F_GETFL), fdf = fcntl(fd, F_GETFD);
	CHECK(fl >= 0 && (fl & O_NONBLOCK));
	CHECK(fdf >= 0 && (fdf & FD_CLOEXEC));
	/* the API handshake was done (EVENT_REMOVE): a second one is refused */
	struct uffdio_api api = {.api = UFFD_API};
	CHECK(ioctl(fd, UFFDIO_API, &api) != 0);
	struct guest_mem m;
	CHECK_EQ(guest_mem_init(&m, SIZE, HOLE, HOLE_END), 0);
	CHECK_EQ(uffd_register(fd, &m, err, sizeof(err)), 0);
	/* registered: unregistering each region works, and a range past
	 * guest memory was not registered */
	for (int i = 0; i < m.nregions; i++) {
		struct uffdio_range r = {.start = (uintptr_t)m.regions[i].hva,
					 .len = m.regions[i].size};
		CHECK_EQ(ioctl(fd, UFFDIO_UNREGISTER, &r), 0);
	}
	close(fd);
	guest_mem_destroy(&m);
}

/* A page-fault handler in a thread: accepts one connection on @ls, takes
 * the message, checks it, serves faults from @file until @stop. */
struct handler {
	int ls, stop;
	bool close_at_once;
	const uint8_t *file;
	uint64_t file_size;
	/* results */
	bool msg_ok;
	int nregions;
	uint64_t base[GUEST_MEM_MAX_REGIONS], size[GUEST_MEM_MAX_REGIONS],
		offset[GUEST_MEM_MAX_REGIONS];
	uint64_t removed_start, removed_end;
	_Atomic unsigned faults, removes;
};

static int find_region(struct handler *h, uint64_t addr)
{
	for (int i = 0; i < h->nregions; i++)
		if (addr >= h->base[i] && addr - h->base[i] < h->size[i])
			return i;
	return -1;
}

static void *handler_main(void *arg)
{
	struct handler *h = arg;
	int c = accept4(h->ls, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return NULL;
	if (h->close_at_once) {
		close(c);
		return NULL;
	}
	char buf[UFFD_LINK_JSON_MAX + 1];
	union {
		struct cmsghdr hdr;
		char b[CMSG_SPACE(sizeof(int))];
	} cm;
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf) - 1};
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b, .msg_controllen = sizeof(cm.b)};
	ssize_t n = recvmsg(c, &msg, MSG_CMSG_CLOEXEC);
	struct cmsghdr *cmh = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL;
	if (!cmh || cmh->cmsg_type != SCM_RIGHTS || cmh->cmsg_len != CMSG_LEN(sizeof(int))) {
		close(c);
		return NULL;
	}
	int uffd;
	memcpy(&uffd, CMSG_DATA(cmh), sizeof(int));
	buf[n] = 0;
	struct json_object *a = json_tokener_parse(buf);
	if (a && json_object_is_type(a, json_type_array)) {
		h->nregions = (int)json_object_array_length(a);
		h->msg_ok = h->nregions >= 1 && h->nregions <= GUEST_MEM_MAX_REGIONS;
		for (int i = 0; h->msg_ok && i < h->nregions; i++) {
			struct json_object *o = json_object_array_get_idx(a, (size_t)i), *v;
			uint64_t *dst[3] = {&h->base[i], &h->size[i], &h->offset[i]};
			const char *keys[5] = {"base_host_virt_addr", "size", "offset", "page_size",
					       "page_size_kib"};
			for (int k = 0; k < 5; k++) {
				if (!json_object_object_get_ex(o, keys[k], &v) ||
				    !json_object_is_type(v, json_type_int)) {
					h->msg_ok = false;
					break;
				}
				if (k < 3)
					*dst[k] = json_object_get_uint64(v);
				else if (json_object_get_uint64(v) != PAGE)
					h->msg_ok = false;
			}
			if (h->offset[i] + h->size[i] > h->file_size)
				h->msg_ok = false;
		}
	}
	json_object_put(a);
	struct pollfd p[2] = {{.fd = uffd, .events = POLLIN}, {.fd = h->stop, .events = POLLIN}};
	while (h->msg_ok && poll(p, 2, -1) >= 0 && !p[1].revents) {
		struct uffd_msg um;
		if (read(uffd, &um, sizeof(um)) != (ssize_t)sizeof(um))
			continue;
		if (um.event == UFFD_EVENT_REMOVE) {
			h->removed_start = um.arg.remove.start;
			h->removed_end = um.arg.remove.end;
			h->removes++;
			continue;
		}
		if (um.event != UFFD_EVENT_PAGEFAULT)
			break;
		uint64_t page = um.arg.pagefault.address & ~(uint64_t)(PAGE - 1);
		int i = find_region(h, page);
		if (i < 0)
			break;
		int rc;
		if (page >= h->removed_start && page < h->removed_end) {
			struct uffdio_zeropage z = {.range = {.start = page, .len = PAGE}};
			rc = ioctl(uffd, UFFDIO_ZEROPAGE, &z);
		} else {
			struct uffdio_copy cp = {
				.dst = page,
				.src = (uintptr_t)(h->file + h->offset[i] + (page - h->base[i])),
				.len = PAGE};
			rc = ioctl(uffd, UFFDIO_COPY, &cp);
		}
		if (!rc)
			h->faults++;
	}
	close(uffd);
	close(c);
	return NULL;
}

static int listen_at(const char *path)
{
	int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = sock_addr(path);
	unlink(path);
	if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 1))
		abort();
	return ls;
}

TEST(a_handler_serves_guest_memory_from_the_file)
{
	if (!have_uffd())
		return;
	/* the memory file: every page of both regions starts with its file
	 * offset, and a distinct byte after it */
	static uint8_t *file;
	file = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(file != MAP_FAILED);
	for (uint64_t off = 0; off < SIZE; off += PAGE) {
		memcpy(file + off, &off, sizeof(off));
		file[off + 100] = (uint8_t)(off / PAGE * 7 + 1);
	}
	char path[256], err[512];
	test_tmp_path(dir, path, sizeof(path), "h.sock");
	struct handler h = {.ls = listen_at(path), .stop = eventfd(0, EFD_CLOEXEC), .file = file,
			    .file_size = SIZE};
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, handler_main, &h), 0);
	struct guest_mem m;
	CHECK_EQ(guest_mem_init(&m, SIZE, HOLE, HOLE_END), 0);
	struct uffd_link u;
	int r = uffd_link_open(&u, &m, path, err, sizeof(err));
	CHECK_EQ(r, 0);
	if (r)
		printf("  %s\n", err);
	/* the hand-over waited for a first fault (the probe of GPA 0): the
	 * handler had checked the message before */
	CHECK(h.msg_ok);
	CHECK_EQ(h.nregions, 2);
	CHECK(u.uffd >= 0 && u.sock >= 0);
	/* guest memory reads as the file, in both regions, at the file
	 * offsets the JSON named */
	bool same = true;
	for (uint64_t gpa = 0; !r && gpa < HOLE_END + (SIZE - HOLE); gpa += 64 * 1024) {
		if (gpa >= HOLE && gpa < HOLE_END)
			continue;
		uint64_t off = gpa < HOLE ? gpa : gpa - HOLE_END + HOLE, got = 0;
		uint8_t b = 0;
		same &= guest_read(&m, gpa, &got, sizeof(got)) == 0 && got == off;
		same &= guest_read(&m, gpa + 100, &b, 1) == 0 && b == file[off + 100];
	}
	CHECK(same);
	/* a page given back (the balloon's way) reaches the handler as a
	 * remove event before the next fault on it, which it zero-fills */
	uint8_t *pg = gpa_to_hva(&m, HOLE_END + 5 * PAGE, PAGE);
	CHECK(!r && pg && pg[100] == file[HOLE + 5 * PAGE + 100]);
	CHECK_EQ(madvise(pg, PAGE, MADV_DONTNEED), 0);
	CHECK(pg[100] == 0 && pg[0] == 0);
	CHECK_EQ(h.removes, 1);
	CHECK_EQ(h.removed_start, (uintptr_t)pg);
	CHECK_EQ(h.removed_end, (uintptr_t)pg + PAGE);
	/* the handler ends when told; then visor's side closes */
	uint64_t one = 1;
	CHECK_EQ(write(h.stop, &one, sizeof(one)), sizeof(one));
	pthread_join(t, NULL);
	/* (counted once the handler is done: it counts after the copy that
	 * woke the reader) one fault per page touched: 96 + 32 steps of
	 * 64 KiB, the first page being the probe's, then the page given back,
	 * copied once and zero-filled once */
	CHECK_EQ(h.faults, SIZE / (64 * 1024) + 2);
	guest_mem_destroy(&m);
	uffd_link_close(&u);
	CHECK(u.uffd == -1 && u.sock == -1);
	uffd_link_close(&u); /* twice is harmless */
	close(h.ls);
	close(h.stop);
	munmap(file, SIZE);
	unlink(path);
}

TEST(a_handler_that_closes_at_once_fails_the_hand_over)
{
	if (!have_uffd())
		return;
	char path[256], err[512];
	test_tmp_path(dir, path, sizeof(path), "c.sock");
	struct handler h = {.ls = listen_at(path), .stop = -1, .close_at_once = true};
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, handler_main, &h), 0);
	struct guest_mem m;
	CHECK_EQ(guest_mem_init(&m, SIZE, HOLE, HOLE_END), 0);
	struct uffd_link u;
	int r = uffd_link_open(&u, &m, path, err, sizeof(err));
	pthread_join(t, NULL);
	/* refused one way or the other: the message dropped unread
	 * (ECONNRESET) or the send after the close (EPIPE) */
	CHECK(r == -ECONNRESET || r == -EPIPE);
	CHECK(strstr(err, "closed the connection"));
	CHECK(u.uffd == -1 && u.sock == -1);
	/* nothing is left registered: memory reads (as zeros) without a
	 * handler */
	uint64_t v = 1;
	CHECK_EQ(guest_read(&m, HOLE_END, &v, sizeof(v)), 0);
	CHECK_EQ(v, 0);
	guest_mem_destroy(&m);
	close(h.ls);
	unlink(path);
}

TEST(cleanup)
{
	rmdir(dir);
}

TEST_MAIN()
