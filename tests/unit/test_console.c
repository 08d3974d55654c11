/* SPDX-License-Identifier: MIT */
/* The console: the escape sequence, and guest output that never blocks the
 * writer (a vCPU) or the stop, whoever reads the other end. */
#include "../../src/console.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../src/util/log.h"
#include "test.h"

/* "Returns immediately": generous for a loaded machine and sanitizers,
 * far below anything that waits for a reader. */
#define QUICK_NS (500ULL * 1000000)

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Byte i of the test stream: a pattern that shows reordering. */
static uint8_t pat(size_t i)
{
	return (uint8_t)(i * 7 + (i >> 8));
}

/* Write @total pattern bytes in @chunk-byte calls starting at stream
 * offset @start; returns the longest single call in ns. */
static uint64_t write_pattern(struct console *c, size_t start, size_t total, size_t chunk)
{
	uint8_t buf[4096];
	uint64_t worst = 0;
	for (size_t off = 0; off < total; off += chunk) {
		size_t n = total - off < chunk ? total - off : chunk;
		for (size_t i = 0; i < n; i++)
			buf[i] = pat(start + off + i);
		uint64_t t0 = now_ns();
		console_write(c, buf, n);
		uint64_t dt = now_ns() - t0;
		if (dt > worst)
			worst = dt;
	}
	return worst;
}

/* Read what is in a (non-blocking) fd now; checks it continues the pattern
 * at *pos and advances *pos.  Returns false on a mismatch. */
static bool drain_check(int fd, size_t *pos)
{
	uint8_t buf[4096];
	bool ok = true;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != pat(*pos + (size_t)i))
				ok = false;
		*pos += (size_t)n;
	}
	return ok;
}

static void set_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

TEST(escape_sequence)
{
	struct console c = {0};
	uint8_t out[64];
	bool quit;
	size_t n = console_filter_input(&c, (const uint8_t *)"ab\x01\x01" "c", 5, out, &quit);
	CHECK(!quit);
	CHECK_EQ(n, 4);
	CHECK(memcmp(out, "ab\x01" "c", 4) == 0);
	/* escape split across reads, then x */
	n = console_filter_input(&c, (const uint8_t *)"z\x01", 2, out, &quit);
	CHECK_EQ(n, 1);
	CHECK(!quit);
	n = console_filter_input(&c, (const uint8_t *)"xyz", 3, out, &quit);
	CHECK(quit);
	CHECK_EQ(n, 0);
	/* escape + other byte passes both */
	c.escape_pending = false;
	n = console_filter_input(&c, (const uint8_t *)"\x01q", 2, out, &quit);
	CHECK_EQ(n, 2);
	CHECK_EQ(out[0], 1);
	CHECK_EQ(out[1], 'q');
}

TEST(no_output_drops_and_counts)
{
	struct console c = {0};
	console_write(&c, (const uint8_t *)"abc", 3);
	CHECK_EQ(c.out_dropped, 3);
	console_stop(&c); /* nothing to stop */
	CHECK_EQ(c.out_dropped, 3);
}

/* The defect: a pipe nobody reads.  Every write returns at once; what
 * neither the pipe nor the ring holds is dropped and counted; the stop
 * returns promptly; the bytes that did get out are the stream's prefix. */
TEST(pipe_nobody_reads_never_blocks)
{
	int p[2];
	CHECK(pipe(p) == 0);
	int null_in = open("/dev/null", O_RDONLY);
	struct console c;
	CHECK_EQ(console_init(&c, null_in, p[1]), 0);
	CHECK(!c.raw);
	/* the shared description (the shell's) stays blocking */
	CHECK(!(fcntl(p[1], F_GETFL) & O_NONBLOCK));
	size_t pipe_sz = (size_t)fcntl(p[1], F_GETPIPE_SZ);
	size_t total = pipe_sz + CONSOLE_OUT_BUF_SIZE + (256 << 10);
	uint64_t worst = write_pattern(&c, 0, total / 2, 1); /* byte by byte, like the UART */
	worst += write_pattern(&c, total / 2, total - total / 2, 4096);
	CHECK(worst < QUICK_NS);
	CHECK(c.out_dropped >= total - pipe_sz - CONSOLE_OUT_BUF_SIZE);
	CHECK(c.out_dropped <= total - CONSOLE_OUT_BUF_SIZE);
	uint64_t t0 = now_ns();
	console_stop(&c);
	uint64_t dt = now_ns() - t0;
	CHECK(dt < (CONSOLE_STOP_FLUSH_MS + 400) * 1000000ULL);
	CHECK(dt >= (CONSOLE_STOP_FLUSH_MS - 10) * 1000000ULL); /* it did wait a little */
	set_nonblock(p[0]);
	size_t got = 0;
	CHECK(drain_check(p[0], &got));
	CHECK_EQ(got + c.out_dropped, total);
	/* after the stop, writes are dropped */
	console_write(&c, (const uint8_t *)"x", 1);
	CHECK_EQ(got + c.out_dropped, total + 1);
	console_stop(&c);
	close(p[0]);
	close(p[1]);
	close(null_in);
}

struct slow_reader {
	int fd;
	size_t want, got;
	bool ok;
};

static void *slow_reader_main(void *arg)
{
	struct slow_reader *r = arg;
	uint8_t buf[1024];
	r->ok = true;
	uint64_t end = now_ns() + 20ULL * 1000000000ULL;
	while (r->got < r->want && now_ns() < end) {
		ssize_t n = read(r->fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != pat(r->got + (size_t)i))
				r->ok = false;
		r->got += (size_t)n;
		sleep_ms(1);
	}
	return NULL;
}

/* A slow reader gets every byte, in order, as long as it keeps up with
 * the ring; the writer never waits for it. */
TEST(slow_reader_gets_bytes_in_order)
{
	int p[2];
	CHECK(pipe(p) == 0);
	struct console c = {0};
	CHECK_EQ(console_set_output_fd(&c, p[1], 0), 0);
	size_t pipe_sz = (size_t)fcntl(p[1], F_GETPIPE_SZ);
	struct slow_reader r = {.fd = p[0], .want = pipe_sz + CONSOLE_OUT_BUF_SIZE - 1};
	pthread_t t;
	pthread_create(&t, NULL, slow_reader_main, &r);
	/* first burst at full speed (fits the pipe and the ring), then a
	 * trickle while the reader drains */
	size_t burst = pipe_sz + CONSOLE_OUT_BUF_SIZE / 2;
	uint64_t worst = write_pattern(&c, 0, burst, 4096);
	for (size_t off = burst; off < r.want; off += 512) {
		size_t n = r.want - off < 512 ? r.want - off : 512;
		uint64_t w = write_pattern(&c, off, n, 64);
		if (w > worst)
			worst = w;
		sleep_ms(1);
	}
	CHECK(worst < QUICK_NS);
	pthread_join(t, NULL);
	CHECK(r.ok);
	CHECK_EQ(r.got, r.want);
	CHECK_EQ(c.out_dropped, 0);
	console_stop(&c);
	CHECK_EQ(c.out_dropped, 0);
	close(p[0]);
	close(p[1]);
}

/* Output written just before the stop still leaves when the reader is
 * there: the stop flushes what the pipe takes. */
TEST(stop_flushes_buffered_output)
{
	int p[2];
	CHECK(pipe(p) == 0);
	struct console c = {0};
	CHECK_EQ(console_set_output_fd(&c, p[1], 0), 0);
	size_t pipe_sz = (size_t)fcntl(p[1], F_GETPIPE_SZ);
	struct slow_reader r = {.fd = p[0], .want = pipe_sz + 4096};
	write_pattern(&c, 0, r.want, 4096); /* 4 KiB wait in the ring */
	pthread_t t;
	pthread_create(&t, NULL, slow_reader_main, &r);
	console_stop(&c);
	pthread_join(t, NULL);
	CHECK(r.ok);
	CHECK_EQ(r.got, r.want);
	CHECK_EQ(c.out_dropped, 0);
	close(p[0]);
	close(p[1]);
}

/* No private description (CONSOLE_OUT_SHARED, the fallback): the writer
 * thread blocks in write() alone; the vCPU and the stop do not wait. */
TEST(shared_blocking_fd_stop_returns_promptly)
{
	int p[2];
	CHECK(pipe(p) == 0);
	struct console c = {0};
	CHECK_EQ(console_set_output_fd(&c, p[1], CONSOLE_OUT_SHARED), 0);
	size_t pipe_sz = (size_t)fcntl(p[1], F_GETPIPE_SZ);
	size_t total = pipe_sz + CONSOLE_OUT_BUF_SIZE + (128 << 10);
	uint64_t worst = write_pattern(&c, 0, total, 1000);
	CHECK(worst < QUICK_NS);
	sleep_ms(50);
	worst = write_pattern(&c, total, 1000, 1000);
	CHECK(worst < QUICK_NS);
	CHECK(c.out_dropped > 0);
	uint64_t t0 = now_ns();
	console_stop(&c);
	CHECK(now_ns() - t0 < (CONSOLE_STOP_FLUSH_MS + 400) * 1000000ULL);
	set_nonblock(p[0]);
	size_t got = 0;
	CHECK(drain_check(p[0], &got));
	CHECK(got >= pipe_sz / 2);
	/* the reader goes away: the left-behind writer ends (EPIPE) and
	 * frees what it still held */
	close(p[0]);
	sleep_ms(50);
	close(p[1]);
}

struct counting_reader {
	int fd;
	size_t want, got, reads;
	bool ok;
};

static void *counting_reader_main(void *arg)
{
	struct counting_reader *r = arg;
	uint8_t buf[4096];
	r->ok = true;
	while (r->got < r->want) {
		ssize_t n = read(r->fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		r->reads++;
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != pat(r->got + (size_t)i))
				r->ok = false;
		r->got += (size_t)n;
	}
	return NULL;
}

/* Output that comes a byte at a time (the UART: one exit per byte)
 * gathers in the ring for CONSOLE_GATHER_MS after each write, and leaves
 * in one write, instead of costing a write (and, through the fallback's
 * writer thread, two thread switches) per byte: a jailed VMM's console
 * cannot make a private description of its stdout, and the fallback's
 * per-byte wake-ups made its guests boot 13-17 % slower in the lab
 * (docs/benchmarks.md, Isolation).  Here one byte every 50 us for 0.2 s:
 * every byte arrives, in order, in far fewer writes than bytes; a lone
 * byte after a pause still leaves at once. */
static void check_gathers_bytewise(unsigned flags)
{
	int p[2];
	CHECK(pipe(p) == 0);
	struct console c = {0};
	CHECK_EQ(console_set_output_fd(&c, p[1], flags), 0);
	const size_t total = 4000;
	struct counting_reader r = {.fd = p[0], .want = total + 1};
	pthread_t t;
	CHECK(pthread_create(&t, NULL, counting_reader_main, &r) == 0);
	uint64_t t0 = now_ns(), worst = 0;
	size_t sent = 0;
	while (sent < total) {
		/* paced in time: a late wake-up sends the bytes that are due */
		size_t due = (size_t)((now_ns() - t0) / 50000) + 1;
		for (; sent < due && sent < total; sent++) {
			uint64_t w = write_pattern(&c, sent, 1, 1);
			if (w > worst)
				worst = w;
		}
		struct timespec ts = {0, 20000};
		nanosleep(&ts, NULL);
	}
	CHECK(worst < QUICK_NS);
	/* a lone byte after a pause leaves without waiting for more */
	sleep_ms(3 * CONSOLE_GATHER_MS + 20);
	/* (on a loaded machine the writer or the reader may not have run
	 * yet: give them time, the check is that every byte arrives) */
	for (uint64_t w0 = now_ns(); r.got < total && now_ns() - w0 < 10 * QUICK_NS;)
		sleep_ms(1);
	size_t before = r.got;
	CHECK_EQ(before, total);
	uint64_t t1 = now_ns();
	write_pattern(&c, total, 1, 1);
	while (r.got == before && now_ns() - t1 < QUICK_NS)
		sleep_ms(1);
	CHECK_EQ(r.got, total + 1);
	pthread_join(t, NULL);
	CHECK(r.ok);
	CHECK_EQ(c.out_dropped, 0);
	/* one read per write at most (the reader waits in read()) */
	CHECK(r.reads <= total / 8);
	console_stop(&c);
	CHECK_EQ(c.out_dropped, 0);
	close(p[0]);
	close(p[1]);
}

/* the private non-blocking description (written by the caller first) */
TEST(pipe_gathers_bytewise_output)
{
	check_gathers_bytewise(0);
}

/* the fallback (CONSOLE_OUT_SHARED): only the writer thread writes */
TEST(shared_fd_gathers_bytewise_output)
{
	check_gathers_bytewise(CONSOLE_OUT_SHARED);
}

/* A socket is written with MSG_DONTWAIT: same guarantees. */
TEST(socket_nobody_reads_never_blocks)
{
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	struct console c = {0};
	CHECK_EQ(console_set_output_fd(&c, sv[0], 0), 0);
	size_t total = (1 << 20) + CONSOLE_OUT_BUF_SIZE;
	CHECK(write_pattern(&c, 0, total, 4096) < QUICK_NS);
	CHECK(c.out_dropped > 0);
	uint64_t t0 = now_ns();
	console_stop(&c);
	CHECK(now_ns() - t0 < (CONSOLE_STOP_FLUSH_MS + 400) * 1000000ULL);
	CHECK(!(fcntl(sv[0], F_GETFL) & O_NONBLOCK));
	set_nonblock(sv[1]);
	size_t got = 0;
	CHECK(drain_check(sv[1], &got));
	CHECK_EQ(got + c.out_dropped, total);
	close(sv[0]);
	close(sv[1]);
}

/* The reader of a pipe goes away: EPIPE, everything after is dropped. */
TEST(pipe_reader_gone_drops)
{
	int p[2];
	CHECK(pipe(p) == 0);
	struct console c = {0};
	CHECK_EQ(console_set_output_fd(&c, p[1], 0), 0);
	close(p[0]);
	console_write(&c, (const uint8_t *)"hello", 5);
	console_write(&c, (const uint8_t *)"world", 5);
	CHECK_EQ(c.out_dropped, 10);
	console_stop(&c);
	CHECK_EQ(c.out_dropped, 10);
	close(p[1]);
}

static void tmp_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "/tmp/visor-test-console-%d-%s", (int)getpid(), name);
	unlink(buf);
}

TEST(output_path_regular_file_created_and_appended)
{
	char path[128];
	tmp_path(path, sizeof(path), "file");
	struct console c = {0};
	char err[256] = "";
	CHECK_EQ(console_set_output_path(&c, path, err, sizeof(err)), 0);
	struct stat st;
	CHECK(stat(path, &st) == 0);
	CHECK_EQ(st.st_mode & 0777, 0600);
	console_write(&c, (const uint8_t *)"first\n", 6);
	console_stop(&c);
	/* a second console appends */
	struct console c2 = {0};
	CHECK_EQ(console_set_output_path(&c2, path, err, sizeof(err)), 0);
	write_pattern(&c2, 0, 300 << 10, 4096); /* a file takes it all */
	console_stop(&c2);
	CHECK_EQ(c2.out_dropped, 0);
	int fd = open(path, O_RDONLY);
	char head[6];
	CHECK(read(fd, head, 6) == 6);
	CHECK(memcmp(head, "first\n", 6) == 0);
	size_t got = 0;
	CHECK(drain_check(fd, &got));
	CHECK_EQ(got, 300 << 10);
	close(fd);
	unlink(path);
}

TEST(output_path_errors_keep_previous_output)
{
	struct console c = {0};
	char err[256] = "";
	CHECK_EQ(console_set_output_path(&c, "/proc/self", err, sizeof(err)), -EISDIR);
	CHECK(strstr(err, "/proc/self") != NULL);
	CHECK(c.out == NULL);
	char path[128];
	tmp_path(path, sizeof(path), "keep");
	CHECK_EQ(console_set_output_path(&c, path, err, sizeof(err)), 0);
	CHECK(console_set_output_path(&c, "/nonexistent-dir/x", err, sizeof(err)) == -ENOENT);
	console_write(&c, (const uint8_t *)"kept", 4);
	console_stop(&c);
	struct stat st;
	CHECK(stat(path, &st) == 0);
	CHECK_EQ(st.st_size, 4);
	unlink(path);
	CHECK_EQ(console_set_output_fd(&c, 1000, 0), -EBADF);
}

/* A FIFO: without a reader output is dropped and counted (and writes
 * return at once); a reader that comes later gets what follows; when it
 * goes away again, drops resume. */
TEST(output_path_fifo_without_reader)
{
	char path[128];
	tmp_path(path, sizeof(path), "fifo");
	CHECK(mkfifo(path, 0600) == 0);
	struct console c = {0};
	char err[256] = "";
	CHECK_EQ(console_set_output_path(&c, path, err, sizeof(err)), 0);
	CHECK(write_pattern(&c, 0, 100000, 1000) < QUICK_NS);
	CHECK_EQ(c.out_dropped, 100000);
	int rfd = open(path, O_RDONLY | O_NONBLOCK);
	CHECK(rfd >= 0);
	sleep_ms(CONSOLE_FIFO_RETRY_MS + 50);
	/* output that finds no reader is dropped and makes the writer thread
	 * (not the caller, a vCPU) open the FIFO again */
	console_write(&c, (const uint8_t *)"x", 1);
	sleep_ms(100);
	console_write(&c, (const uint8_t *)"hello", 5);
	char buf[16] = "";
	CHECK_EQ(read(rfd, buf, sizeof(buf)), 5);
	CHECK(memcmp(buf, "hello", 5) == 0);
	CHECK_EQ(c.out_dropped, 100001);
	/* a reader that never reads: the FIFO fills, then drops */
	CHECK(write_pattern(&c, 0, (1 << 20), 4096) < QUICK_NS);
	CHECK(c.out_dropped > 100000);
	close(rfd);
	/* reader gone: dropped, and no blocking either */
	uint64_t before = c.out_dropped;
	CHECK(write_pattern(&c, 0, 1000, 100) < QUICK_NS);
	CHECK(c.out_dropped >= before + 1000);
	uint64_t t0 = now_ns();
	console_stop(&c);
	CHECK(now_ns() - t0 < (CONSOLE_STOP_FLUSH_MS + 400) * 1000000ULL);
	unlink(path);
}

struct writer_arg {
	struct console *c;
	uint8_t byte;
	size_t n;
};

static void *writer_main(void *arg)
{
	struct writer_arg *w = arg;
	for (size_t i = 0; i < w->n; i++)
		console_write(w->c, &w->byte, 1);
	return NULL;
}

/* Several vCPU threads at once: every byte is either delivered or counted. */
TEST(concurrent_writers_account_every_byte)
{
	int p[2];
	CHECK(pipe(p) == 0);
	struct console c = {0};
	CHECK_EQ(console_set_output_fd(&c, p[1], 0), 0);
	struct writer_arg w[3];
	pthread_t t[3];
	for (int i = 0; i < 3; i++) {
		w[i] = (struct writer_arg){&c, (uint8_t)('a' + i), 100000};
		pthread_create(&t[i], NULL, writer_main, &w[i]);
	}
	size_t got[3] = {0, 0, 0}, total = 0;
	uint8_t buf[4096];
	set_nonblock(p[0]);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	console_stop(&c);
	for (;;) {
		ssize_t n = read(p[0], buf, sizeof(buf));
		if (n <= 0)
			break;
		for (ssize_t j = 0; j < n; j++)
			if (buf[j] >= 'a' && buf[j] <= 'c')
				got[buf[j] - 'a']++;
		total += (size_t)n;
	}
	CHECK_EQ(got[0] + got[1] + got[2], total);
	CHECK_EQ(total + c.out_dropped, 300000);
	close(p[0]);
	close(p[1]);
}

/* console_init on a regular file: written directly, nothing lost. */
TEST(init_regular_file_direct)
{
	char path[128];
	tmp_path(path, sizeof(path), "init");
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	int null_in = open("/dev/null", O_RDONLY);
	struct console c;
	CHECK_EQ(console_init(&c, null_in, fd), 0);
	write_pattern(&c, 0, 500 << 10, 1);
	console_stop(&c);
	CHECK_EQ(c.out_dropped, 0);
	struct stat st;
	CHECK(fstat(fd, &st) == 0);
	CHECK_EQ(st.st_size, 500 << 10);
	close(fd);
	close(null_in);
	unlink(path);
}

__attribute__((constructor)) static void ignore_sigpipe(void)
{
	signal(SIGPIPE, SIG_IGN); /* as visor's main() */
}

TEST_MAIN()
