/* SPDX-License-Identifier: MIT */
/*
 * io_uring block back end on real temp files, completions delivered through
 * the real event loop.  If the kernel or sandbox forbids io_uring
 * (io_uring_queue_init: ENOSYS / EPERM) the I/O tests print "skipped" and
 * count as passed; the open-error tests run regardless.
 */
#include "../../src/backends/block.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <liburing.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/devices/virtio/virtio_blk.h"
#include "../../src/event/loop.h"
#include "test.h"
#include "virtio_fake.h"

#define KIB 1024ull
#define MIB (1024ull * 1024)

static int uring_state = -1; /* -1 unknown, 0 usable, else the errno */

static bool uring_usable(const char *test)
{
	if (uring_state < 0) {
		struct io_uring ring;
		int r = io_uring_queue_init(2, &ring, 0);
		if (r == 0) {
			io_uring_queue_exit(&ring);
			uring_state = 0;
		} else {
			uring_state = -r;
		}
	}
	if (uring_state == ENOSYS || uring_state == EPERM || uring_state == EACCES) {
		printf("  %s: skipped: io_uring unavailable here (%s)\n", test,
		       strerror(uring_state));
		return false;
	}
	return true; /* other errors: let the test fail loudly */
}

static void temp_path(char *buf, size_t len, const char *tag)
{
	snprintf(buf, len, "/tmp/visor-test-uring-%d-%s.img", (int)getpid(), tag);
}

/* A file of @size bytes filled with @fill (0: sparse). */
static void make_file(const char *path, uint64_t size, uint8_t fill)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		abort();
	if (fill) {
		static uint8_t buf[64 * 1024];
		memset(buf, fill, sizeof(buf));
		for (uint64_t off = 0; off < size; off += sizeof(buf))
			if (pwrite(fd, buf, sizeof(buf), (off_t)off) != (ssize_t)sizeof(buf))
				abort();
		fsync(fd);
	}
	close(fd);
}

/* ---- a tiny harness: run the loop until @pending operations are done ---- */

struct op {
	struct blk_io io;
	int64_t result;
	bool done;
};

static struct loop lp;
static int pending;
static bool timed_out;
static int timer_fd = -1;

static void op_done(struct blk_io *io, int64_t res)
{
	struct op *o = (struct op *)io;
	o->result = res;
	o->done = true;
	if (--pending == 0)
		loop_stop(&lp);
}

static void on_watchdog(struct loop *l, int fd, uint32_t ev, void *ctx)
{
	uint64_t v;
	(void)!read(fd, &v, sizeof(v));
	timed_out = true;
	loop_stop(l);
}

static void harness_init(void)
{
	if (loop_init(&lp))
		abort();
	timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (timer_fd < 0 || loop_add(&lp, timer_fd, EPOLLIN, on_watchdog, NULL))
		abort();
}

static void harness_fini(void)
{
	loop_del(&lp, timer_fd);
	close(timer_fd);
	loop_destroy(&lp);
}

/* Wait (on the loop) for every submitted op; false on a 10 s timeout. */
static bool wait_all(void)
{
	if (pending == 0)
		return true;
	struct itimerspec its = {.it_value = {.tv_sec = 10}};
	timerfd_settime(timer_fd, 0, &its, NULL);
	timed_out = false;
	lp.stop = false;
	loop_run(&lp);
	struct itimerspec off = {{0, 0}, {0, 0}};
	timerfd_settime(timer_fd, 0, &off, NULL);
	return !timed_out && pending == 0;
}

static int submit(struct blk_backend *be, struct op *o, enum blk_op op, uint64_t offset,
		  struct iovec *iov, unsigned iovcnt, uint64_t len)
{
	memset(o, 0, sizeof(*o));
	o->io.op = op;
	o->io.offset = offset;
	o->io.iov = iov;
	o->io.iovcnt = iovcnt;
	o->io.len = len;
	o->io.done = op_done;
	int r = blk_submit(be, &o->io);
	if (r == 0)
		pending++;
	return r;
}

static struct blk_backend *open_ok(const char *path, bool ro, unsigned depth, unsigned cap)
{
	struct blk_backend *be = NULL;
	char err[256] = "";
	int r = blk_uring_open(&be, path, ro, depth, cap, err, sizeof(err));
	if (r) {
		printf("  open %s: %s\n", path, err);
		return NULL;
	}
	if (be->ops->attach(be, &lp)) {
		blk_destroy(be);
		return NULL;
	}
	return be;
}

/* ---- tests ---- */

TEST(open_errors_are_explained)
{
	struct blk_backend *be = (struct blk_backend *)1;
	char err[256];
	char path[128];

	temp_path(path, sizeof(path), "missing");
	unlink(path);
	CHECK_EQ(blk_uring_open(&be, path, false, 0, 16, err, sizeof(err)),
		 (unsigned long long)-ENOENT);
	CHECK(be == NULL);
	CHECK(strstr(err, path) && strstr(err, "No such file or directory"));

	CHECK_EQ(blk_uring_open(&be, "/tmp", true, 0, 16, err, sizeof(err)),
		 (unsigned long long)-EISDIR);
	CHECK(strstr(err, "is a directory"));
	/* read-write open of a directory fails in open() itself */
	CHECK_EQ(blk_uring_open(&be, "/tmp", false, 0, 16, err, sizeof(err)),
		 (unsigned long long)-EISDIR);
	CHECK(strstr(err, "directory"));

	CHECK_EQ(blk_uring_open(&be, "/dev/null", true, 0, 16, err, sizeof(err)),
		 (unsigned long long)-EINVAL);
	CHECK(strstr(err, "not a regular file or block device"));

	temp_path(path, sizeof(path), "fifo");
	unlink(path);
	CHECK_EQ(mkfifo(path, 0600), 0);
	CHECK(blk_uring_open(&be, path, true, 0, 16, err, sizeof(err)) < 0);
	CHECK(strstr(err, "not a regular file or block device"));
	unlink(path);

	temp_path(path, sizeof(path), "empty");
	make_file(path, 0, 0);
	CHECK_EQ(blk_uring_open(&be, path, false, 0, 16, err, sizeof(err)),
		 (unsigned long long)-EINVAL);
	CHECK(strstr(err, "too small"));
	unlink(path);

	CHECK_EQ(blk_uring_open(&be, "/tmp", true, 0, 0, err, sizeof(err)),
		 (unsigned long long)-EINVAL);
}

TEST(permission_denied_is_explained)
{
	/* Root bypasses file modes: check in a child that dropped to nobody. */
	char path[128];
	temp_path(path, sizeof(path), "perm");
	make_file(path, 64 * KIB, 0);
	chmod(path, 0600);
	pid_t pid = fork();
	if (pid == 0) {
		if (geteuid() == 0 && (setgroups(0, NULL) || setresgid(65534, 65534, 65534) ||
				       setresuid(65534, 65534, 65534)))
			_exit(3);
		struct blk_backend *be;
		char err[256] = "";
		int r = blk_uring_open(&be, path, false, 0, 16, err, sizeof(err));
		if (r != -EACCES)
			_exit(1);
		if (!strstr(err, "Permission denied") || !strstr(err, "read-only"))
			_exit(2);
		_exit(0);
	}
	int status = -1;
	CHECK(pid > 0);
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status));
	CHECK_EQ(WEXITSTATUS(status), 0);
	unlink(path);
}

TEST(write_then_read_back)
{
	if (!uring_usable("write_then_read_back"))
		return;
	harness_init();
	char path[128];
	temp_path(path, sizeof(path), "rw");
	make_file(path, 1 * MIB, 0);
	struct blk_backend *be = open_ok(path, false, 0, 64);
	CHECK(be != NULL);
	if (!be)
		goto out;
	CHECK_EQ(be->size, 1 * MIB);
	CHECK(!be->readonly);

	static uint8_t src[64 * KIB], dst[64 * KIB];
	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = (uint8_t)(i * 13 + 5);
	struct iovec wv[3] = {{src, 1000}, {src + 1000, 30000}, {src + 31000, sizeof(src) - 31000}};
	struct op w, r;
	CHECK_EQ(submit(be, &w, BLK_OP_WRITE, 4096, wv, 3, 0), 0);
	blk_commit(be);
	CHECK(!w.done); /* never completed from inside submit/commit */
	CHECK(wait_all());
	CHECK_EQ(w.result, sizeof(src));

	struct iovec rv[2] = {{dst, 512}, {dst + 512, sizeof(dst) - 512}};
	CHECK_EQ(submit(be, &r, BLK_OP_READ, 4096, rv, 2, 0), 0);
	blk_commit(be);
	CHECK(wait_all());
	CHECK_EQ(r.result, sizeof(dst));
	CHECK(memcmp(src, dst, sizeof(src)) == 0);

	/* the bytes really are in the file */
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	memset(dst, 0, sizeof(dst));
	CHECK_EQ(pread(fd, dst, sizeof(dst), 4096), sizeof(dst));
	CHECK(memcmp(src, dst, sizeof(src)) == 0);
	close(fd);

	/* flush */
	struct op f;
	CHECK_EQ(submit(be, &f, BLK_OP_FLUSH, 0, NULL, 0, 0), 0);
	blk_commit(be);
	CHECK(wait_all());
	CHECK_EQ(f.result, 0);

	/* beyond the end: refused synchronously, the file does not grow */
	struct iovec one = {src, 4096};
	CHECK_EQ(submit(be, &w, BLK_OP_WRITE, 1 * MIB - 2048, &one, 1, 0),
		 (unsigned long long)-EINVAL);
	CHECK_EQ(submit(be, &w, BLK_OP_WRITE, UINT64_MAX - 100, &one, 1, 0),
		 (unsigned long long)-EINVAL);
	CHECK_EQ(submit(be, &w, BLK_OP_DISCARD, 1 * MIB - 512, NULL, 0, 1024),
		 (unsigned long long)-EINVAL);
	CHECK_EQ(submit(be, &w, BLK_OP_READ, 0, &one, 0, 0), (unsigned long long)-EINVAL);
	struct stat st;
	CHECK_EQ(stat(path, &st), 0);
	CHECK_EQ(st.st_size, 1 * MIB);
	blk_destroy(be);
out:
	unlink(path);
	harness_fini();
}

TEST(more_requests_than_ring_depth)
{
	if (!uring_usable("more_requests_than_ring_depth"))
		return;
	harness_init();
	char path[128];
	temp_path(path, sizeof(path), "deep");
	make_file(path, 1 * MIB, 0);
	/* 4 in the kernel, up to 64 outstanding: 60 wait in the backlog */
	struct blk_backend *be = open_ok(path, false, 4, 64);
	CHECK(be != NULL);
	if (!be)
		goto out;
	static uint8_t bufs[64][4096];
	static struct op ops[65];
	static struct iovec iov[65];
	for (int i = 0; i < 64; i++) {
		memset(bufs[i], i + 1, sizeof(bufs[i]));
		iov[i] = (struct iovec){bufs[i], sizeof(bufs[i])};
		CHECK_EQ(submit(be, &ops[i], BLK_OP_WRITE, 4096ull * i, &iov[i], 1, 0), 0);
	}
	/* capacity is a hard bound */
	iov[64] = (struct iovec){bufs[0], 4096};
	CHECK_EQ(submit(be, &ops[64], BLK_OP_WRITE, 0, &iov[64], 1, 0),
		 (unsigned long long)-EAGAIN);
	blk_commit(be);
	CHECK(wait_all());
	for (int i = 0; i < 64; i++)
		CHECK_EQ(ops[i].result, 4096);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint8_t b[4096];
	for (int i = 0; i < 64; i++) {
		CHECK_EQ(pread(fd, b, sizeof(b), 4096 * i), sizeof(b));
		CHECK(b[0] == i + 1 && b[4095] == i + 1);
	}
	close(fd);
	blk_destroy(be);
out:
	unlink(path);
	harness_fini();
}

static uint64_t blocks_of(const char *path)
{
	struct stat st;
	if (stat(path, &st))
		abort();
	return (uint64_t)st.st_blocks;
}

TEST(discard_punches_holes_and_write_zeroes)
{
	if (!uring_usable("discard_punches_holes_and_write_zeroes"))
		return;
	harness_init();
	char path[128];
	temp_path(path, sizeof(path), "punch");
	make_file(path, 2 * MIB, 0xab);
	uint64_t before = blocks_of(path);
	CHECK(before >= 2 * MIB / 512);
	struct blk_backend *be = open_ok(path, false, 0, 16);
	CHECK(be != NULL);
	if (!be)
		goto out;
	struct op d, z;
	CHECK_EQ(submit(be, &d, BLK_OP_DISCARD, 256 * KIB, NULL, 0, 512 * KIB), 0);
	blk_commit(be);
	CHECK(wait_all());
	CHECK_EQ(d.result, 0);
	/* the hole frees the blocks (file systems may keep a little extent
	 * metadata, so allow slack) */
	uint64_t after = blocks_of(path);
	CHECK(after <= before - 384 * KIB / 512);

	/* write zeroes without unmap (ZERO_RANGE, or the hole fallback) */
	CHECK_EQ(submit(be, &z, BLK_OP_WRITE_ZEROES, 1 * MIB, NULL, 0, 64 * KIB), 0);
	blk_commit(be);
	CHECK(wait_all());
	CHECK_EQ(z.result, 0);
	/* with unmap: a hole */
	memset(&z, 0, sizeof(z));
	z.io.unmap = true;
	z.io.op = BLK_OP_WRITE_ZEROES;
	z.io.offset = 1536 * KIB;
	z.io.len = 128 * KIB;
	z.io.done = op_done;
	CHECK_EQ(blk_submit(be, &z.io), 0);
	pending++;
	blk_commit(be);
	CHECK(wait_all());
	CHECK_EQ(z.result, 0);
	CHECK(blocks_of(path) < after);

	int fd = open(path, O_RDONLY | O_CLOEXEC);
	static uint8_t buf[2 * MIB];
	CHECK_EQ(pread(fd, buf, sizeof(buf), 0), sizeof(buf));
	close(fd);
	bool ok = true;
	for (uint64_t i = 0; i < 2 * MIB; i++) {
		bool zero = (i >= 256 * KIB && i < 768 * KIB) || (i >= MIB && i < MIB + 64 * KIB) ||
			    (i >= 1536 * KIB && i < 1664 * KIB);
		if (buf[i] != (zero ? 0 : 0xab)) {
			ok = false;
			printf("  byte %llu is 0x%x\n", (unsigned long long)i, buf[i]);
			break;
		}
	}
	CHECK(ok);
	struct stat st;
	CHECK_EQ(stat(path, &st), 0);
	CHECK_EQ(st.st_size, 2 * MIB); /* KEEP_SIZE */
	blk_destroy(be);
out:
	unlink(path);
	harness_fini();
}

TEST(read_only_refuses_writes)
{
	if (!uring_usable("read_only_refuses_writes"))
		return;
	harness_init();
	char path[128];
	temp_path(path, sizeof(path), "ro");
	make_file(path, 256 * KIB, 0x5c);
	struct blk_backend *be = open_ok(path, true, 0, 16);
	CHECK(be != NULL);
	if (!be)
		goto out;
	CHECK(be->readonly);
	static uint8_t buf[4096];
	struct iovec v = {buf, sizeof(buf)};
	struct op o;
	memset(buf, 0x11, sizeof(buf));
	CHECK_EQ(submit(be, &o, BLK_OP_WRITE, 0, &v, 1, 0), (unsigned long long)-EROFS);
	CHECK_EQ(submit(be, &o, BLK_OP_DISCARD, 0, NULL, 0, 4096), (unsigned long long)-EROFS);
	CHECK_EQ(submit(be, &o, BLK_OP_WRITE_ZEROES, 0, NULL, 0, 4096),
		 (unsigned long long)-EROFS);
	CHECK_EQ(submit(be, &o, BLK_OP_READ, 8192, &v, 1, 0), 0);
	blk_commit(be);
	CHECK(wait_all());
	CHECK_EQ(o.result, 4096);
	CHECK(buf[0] == 0x5c && buf[4095] == 0x5c);
	/* a second read-only user may share it; a writer may not */
	struct blk_backend *be2 = open_ok(path, true, 0, 16);
	CHECK(be2 != NULL);
	blk_destroy(be2);
	struct blk_backend *w;
	char err[256] = "";
	CHECK_EQ(blk_uring_open(&w, path, false, 0, 16, err, sizeof(err)),
		 (unsigned long long)-EBUSY);
	CHECK(strstr(err, "in use"));
	blk_destroy(be);
out:
	unlink(path);
	harness_fini();
}

TEST(read_past_shrunk_file_is_short)
{
	if (!uring_usable("read_past_shrunk_file_is_short"))
		return;
	harness_init();
	char path[128];
	temp_path(path, sizeof(path), "shrink");
	make_file(path, 256 * KIB, 0x33);
	struct blk_backend *be = open_ok(path, false, 0, 16);
	CHECK(be != NULL);
	if (!be)
		goto out;
	/* someone truncates the image behind our back */
	CHECK_EQ(truncate(path, 128 * KIB + 512), 0);
	static uint8_t buf[8192];
	struct iovec v = {buf, sizeof(buf)};
	struct op o;
	CHECK_EQ(submit(be, &o, BLK_OP_READ, 128 * KIB - 4096, &v, 1, 0), 0);
	blk_commit(be);
	CHECK(wait_all());
	CHECK_EQ(o.result, 4096 + 512); /* short: up to the new end */
	blk_destroy(be);
out:
	unlink(path);
	harness_fini();
}

TEST(virtio_blk_create_errors)
{
	struct virtio_blk b;
	struct guest_mem mem;
	char err[256] = "";
	char path[128];
	CHECK_EQ(guest_mem_init(&mem, 1 * MIB, 1 * MIB, 1 * MIB), 0);
	temp_path(path, sizeof(path), "nope");
	unlink(path);
	CHECK_EQ(virtio_blk_create(&b, path, false, NULL, &mem, NULL, err, sizeof(err)),
		 (unsigned long long)-ENOENT);
	CHECK(strstr(err, "No such file"));
	if (uring_usable("virtio_blk_create_errors")) {
		harness_init();
		temp_path(path, sizeof(path), "create");
		make_file(path, 64 * KIB, 0);
		CHECK_EQ(virtio_blk_create(&b, path, false, "waytoolongidentifier!!", &mem, &lp,
					   err, sizeof(err)),
			 (unsigned long long)-EINVAL);
		CHECK(strstr(err, "longer than 20"));
		/* the back end was closed again: the image is not left locked */
		CHECK_EQ(virtio_blk_create(&b, path, false, "ok", &mem, &lp, err, sizeof(err)), 0);
		CHECK_EQ(b.capacity, 128);
		virtio_blk_destroy(&b);
		unlink(path);
		harness_fini();
	}
	guest_mem_destroy(&mem);
}

/* ---- virtio-blk on real images: quiesce and drive swap ---- */

#define G_DESC 0x10000ull
#define G_AVAIL 0x20000ull
#define G_USED 0x30000ull
#define G_SMALL 0x100000ull
#define G_DATA 0x200000ull

struct vdisk {
	struct guest_mem mem;
	struct virtio_blk b;
	struct vf_drv drv;
	uint64_t bump;
};

static bool vdisk_open(struct vdisk *v, const char *path)
{
	memset(v, 0, sizeof(*v));
	if (guest_mem_init(&v->mem, 4 * MIB, 4 * MIB, 4 * MIB))
		abort();
	char err[256] = "";
	if (virtio_blk_create(&v->b, path, false, "disk", &v->mem, &lp, err, sizeof(err))) {
		printf("  create: %s\n", err);
		guest_mem_destroy(&v->mem);
		return false;
	}
	v->bump = G_SMALL;
	vf_config_signals = 0;
	vf_drv_init(&v->drv, &v->mem, &v->b.vdev, 128, G_DESC, G_AVAIL, G_USED);
	vf_drv_up(&v->drv, (v->b.vdev.device_features & ~(1ull << VIRTIO_F_EVENT_IDX)));
	return true;
}

static void vdisk_close(struct vdisk *v)
{
	virtio_blk_destroy(&v->b);
	guest_mem_destroy(&v->mem);
}

/* A request: header, @len bytes at @data (device-writable for IN), status.
 * Returns the status byte's gpa. */
static uint64_t vreq(struct vdisk *v, uint32_t type, uint64_t sector, uint64_t data, uint32_t len)
{
	uint64_t h = v->bump, st = v->bump + 16;
	v->bump += 32;
	uint8_t hdr[16] = {0};
	memcpy(hdr, &type, 4);
	memcpy(hdr + 8, &sector, 8);
	memcpy(vf_hva(&v->mem, h, 16), hdr, 16);
	*vf_hva(&v->mem, st, 1) = 0xee;
	struct vf_seg s[] = {{h, 16, false}, {data, len, type == VIRTIO_BLK_T_IN}, {st, 1, true}};
	vf_chain(&v->drv, s, 3);
	return st;
}

/* Run the loop until the used ring reaches @n (10 s at most). */
static bool vrun(struct vdisk *v, uint16_t n)
{
	for (int i = 0; i < 1000 && vf_used_idx(&v->drv) != n; i++)
		loop_run_once(&lp, 10);
	return vf_used_idx(&v->drv) == n;
}

static uint64_t vcap(struct vdisk *v)
{
	uint64_t c;
	v->b.vdev.ops->config_read(&v->b.vdev, VIRTIO_BLK_CFG_CAPACITY, &c, 8);
	return c;
}

TEST(virtio_blk_quiesce_with_io_uring_in_flight)
{
	if (!uring_usable("virtio_blk_quiesce_with_io_uring_in_flight"))
		return;
	harness_init();
	char path[128];
	temp_path(path, sizeof(path), "quiesce");
	make_file(path, 1 * MIB, 0x2c);
	struct vdisk v;
	CHECK(vdisk_open(&v, path));
	uint64_t st[16];
	for (int i = 0; i < 8; i++) {
		memset(vf_hva(&v.mem, G_DATA + 4096ull * i, 4096), 0x40 + i, 4096);
		st[i] = vreq(&v, VIRTIO_BLK_T_OUT, 8ull * i, G_DATA + 4096ull * i, 4096);
	}
	for (int i = 8; i < 16; i++)
		st[i] = vreq(&v, VIRTIO_BLK_T_IN, 8ull * i, G_DATA + 4096ull * i, 4096);
	vf_notify(&v.drv);
	CHECK_EQ(v.b.inflight, 16);
	virtio_blk_quiesce(&v.b);
	CHECK_EQ(v.b.inflight, 0);
	CHECK_EQ(vf_used_idx(&v.drv), 16);
	for (int i = 0; i < 16; i++)
		CHECK_EQ(*vf_hva(&v.mem, st[i], 1), VIRTIO_BLK_S_OK);
	CHECK_EQ(*vf_hva(&v.mem, G_DATA + 4096ull * 9, 1), 0x2c);
	/* the loop finds nothing more (no completion delivered twice) */
	while (loop_run_once(&lp, 0) > 0)
		;
	CHECK_EQ(vf_used_idx(&v.drv), 16);
	virtio_blk_unquiesce(&v.b);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint8_t b0;
	CHECK_EQ(pread(fd, &b0, 1, 7 * 4096), 1);
	CHECK_EQ(b0, 0x47);
	close(fd);
	vdisk_close(&v);
	unlink(path);
	harness_fini();
}

TEST(virtio_blk_swap_backing_to_another_image)
{
	if (!uring_usable("virtio_blk_swap_backing_to_another_image"))
		return;
	harness_init();
	char a[128], b[128];
	temp_path(a, sizeof(a), "swap-a");
	temp_path(b, sizeof(b), "swap-b");
	make_file(a, 1 * MIB, 0xa1);
	make_file(b, 2 * MIB, 0xb2);
	struct vdisk v;
	CHECK(vdisk_open(&v, a));
	CHECK_EQ(vcap(&v), 2048);
	/* a write in flight on A when the swap comes */
	memset(vf_hva(&v.mem, G_DATA, 4096), 0x5a, 4096);
	uint64_t st = vreq(&v, VIRTIO_BLK_T_OUT, 16, G_DATA, 4096);
	vf_notify(&v.drv);
	CHECK_EQ(v.b.inflight, 1);
	uint32_t gen = v.b.vdev.config_generation;
	char err[256] = "";
	CHECK_EQ(virtio_blk_swap_backing(&v.b, b, false, err, sizeof(err)), 0);
	CHECK_EQ(*vf_hva(&v.mem, st, 1), VIRTIO_BLK_S_OK);
	CHECK_EQ(vf_used_idx(&v.drv), 1);
	CHECK_EQ(vcap(&v), 4096);
	CHECK_EQ(v.b.vdev.config_generation, gen + 1);
	CHECK_EQ(vf_config_signals, 1);
	/* A has the write, and is no longer locked */
	int fd = open(a, O_RDONLY | O_CLOEXEC);
	uint8_t x;
	CHECK_EQ(pread(fd, &x, 1, 16 * 512 + 4095), 1);
	CHECK_EQ(x, 0x5a);
	close(fd);
	struct blk_backend *other;
	CHECK_EQ(blk_uring_open(&other, a, false, 0, 16, err, sizeof(err)), 0);
	blk_destroy(other);
	/* B is, and reads come from it, up to its last sector */
	CHECK_EQ(blk_uring_open(&other, b, false, 0, 16, err, sizeof(err)),
		 (unsigned long long)-EBUSY);
	st = vreq(&v, VIRTIO_BLK_T_IN, 4095, G_DATA + 8192, 512);
	vf_notify(&v.drv);
	CHECK(vrun(&v, 2));
	CHECK_EQ(*vf_hva(&v.mem, st, 1), VIRTIO_BLK_S_OK);
	CHECK_EQ(*vf_hva(&v.mem, G_DATA + 8192, 1), 0xb2);
	vdisk_close(&v);
	unlink(a);
	unlink(b);
	harness_fini();
}

TEST(virtio_blk_swap_backing_errors_keep_the_old_image)
{
	if (!uring_usable("virtio_blk_swap_backing_errors_keep_the_old_image"))
		return;
	harness_init();
	char a[128], p[128];
	temp_path(a, sizeof(a), "keep-a");
	make_file(a, 1 * MIB, 0xa1);
	struct vdisk v;
	CHECK(vdisk_open(&v, a));
	struct blk_backend *be = v.b.be;
	uint32_t gen = v.b.vdev.config_generation;
	char err[256];

	temp_path(p, sizeof(p), "keep-missing");
	unlink(p);
	CHECK_EQ(virtio_blk_swap_backing(&v.b, p, false, err, sizeof(err)),
		 (unsigned long long)-ENOENT);
	CHECK(strstr(err, "No such file"));
	/* a FIFO without a writer: refused at once, never waited on */
	temp_path(p, sizeof(p), "keep-fifo");
	unlink(p);
	CHECK_EQ(mkfifo(p, 0600), 0);
	CHECK(virtio_blk_swap_backing(&v.b, p, true, err, sizeof(err)) < 0);
	CHECK(strstr(err, "not a regular file or block device"));
	unlink(p);
	CHECK_EQ(virtio_blk_swap_backing(&v.b, "/tmp", true, err, sizeof(err)),
		 (unsigned long long)-EISDIR);
	/* locked by another writer */
	temp_path(p, sizeof(p), "keep-locked");
	make_file(p, 1 * MIB, 0);
	struct blk_backend *holder;
	CHECK_EQ(blk_uring_open(&holder, p, false, 0, 16, err, sizeof(err)), 0);
	CHECK_EQ(virtio_blk_swap_backing(&v.b, p, false, err, sizeof(err)),
		 (unsigned long long)-EBUSY);
	CHECK(strstr(err, "in use"));
	blk_destroy(holder);
	/* too small */
	make_file(p, 100, 0);
	CHECK_EQ(virtio_blk_swap_backing(&v.b, p, false, err, sizeof(err)),
		 (unsigned long long)-EINVAL);
	unlink(p);

	CHECK(v.b.be == be);
	CHECK_EQ(vcap(&v), 2048);
	CHECK_EQ(v.b.vdev.config_generation, gen);
	CHECK_EQ(vf_config_signals, 0);
	CHECK(!v.b.quiesced);
	uint64_t st = vreq(&v, VIRTIO_BLK_T_IN, 0, G_DATA, 512);
	vf_notify(&v.drv);
	CHECK(vrun(&v, 1));
	CHECK_EQ(*vf_hva(&v.mem, st, 1), VIRTIO_BLK_S_OK);
	CHECK_EQ(*vf_hva(&v.mem, G_DATA, 1), 0xa1);
	vdisk_close(&v);
	unlink(a);
	harness_fini();
}

TEST(virtio_blk_swap_backing_same_image_resized)
{
	if (!uring_usable("virtio_blk_swap_backing_same_image_resized"))
		return;
	harness_init();
	char a[128], l[128];
	temp_path(a, sizeof(a), "grow");
	temp_path(l, sizeof(l), "grow-link");
	make_file(a, 1 * MIB, 0x77);
	struct vdisk v;
	CHECK(vdisk_open(&v, a));
	struct blk_backend *be = v.b.be;
	char err[256] = "";
	/* grown in place, then PATCHed with the same path (or another name
	 * for the same file): no reopen (our own lock), the size is re-read */
	CHECK_EQ(truncate(a, 3 * MIB), 0);
	CHECK_EQ(virtio_blk_swap_backing(&v.b, a, false, err, sizeof(err)), 0);
	CHECK(v.b.be == be);
	CHECK_EQ(vcap(&v), 6144);
	CHECK_EQ(vf_config_signals, 1);
	unlink(l);
	CHECK_EQ(link(a, l), 0);
	CHECK_EQ(truncate(a, 2 * MIB), 0);
	CHECK_EQ(virtio_blk_swap_backing(&v.b, l, false, err, sizeof(err)), 0);
	CHECK_EQ(vcap(&v), 4096);
	/* the read-only setting cannot change in place */
	CHECK_EQ(virtio_blk_swap_backing(&v.b, a, true, err, sizeof(err)),
		 (unsigned long long)-EBUSY);
	CHECK(strstr(err, "read-only"));
	/* shrunk below a sector: refused, size kept */
	CHECK_EQ(truncate(a, 100), 0);
	CHECK(virtio_blk_swap_backing(&v.b, a, false, err, sizeof(err)) < 0);
	CHECK_EQ(vcap(&v), 4096);
	CHECK_EQ(truncate(a, 2 * MIB), 0);
	uint64_t st = vreq(&v, VIRTIO_BLK_T_IN, 4095, G_DATA, 512);
	vf_notify(&v.drv);
	CHECK(vrun(&v, 1));
	CHECK_EQ(*vf_hva(&v.mem, st, 1), VIRTIO_BLK_S_OK);
	vdisk_close(&v);
	unlink(l);
	unlink(a);
	harness_fini();
}

TEST_MAIN()
