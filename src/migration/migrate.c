/* SPDX-License-Identifier: MIT */
#include "migrate.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../machine.h"
#include "../mem/guest_mem.h"
#include "../mem/uffd.h"
#include "../backends/net.h"
#include "../snapshot/config_section.h"
#include "../snapshot/format.h"
#include "../util/bytes.h"
#include "../util/file.h"
#include "../util/log.h"
#include "../util/str.h"
#include "../vm.h"
#include "stream.h"
#include "transport.h"
#include "../seccomp.h"

/* Passes over dirty memory before the source gives up converging and
 * switches over anyway with whatever is left (the pause is then longer
 * than the limit; the summary says so). */
#define MIG_MAX_PASSES 30
/* mode auto: pre-copy passes before it turns to post-copy instead. */
#define MIG_AUTO_PASSES 5
/* How long the source waits for the destination's answers once it has
 * sent the state (READY, RUNNING): applying it and taking the disks is
 * quick, but a loaded host may be slow. */
#define MIG_ANSWER_TIMEOUT_MS (60 * 1000)
/* A completed source keeps answering GET /migration until the final
 * status is read, or this long, before it exits, so whoever started it can
 * read it (a client polling every second on a loaded host missed 2 s: the
 * lab's migrate-local-pattern). */
#define MIG_LINGER_MS 10000
/* Connect timeout. */
#define MIG_CONNECT_TIMEOUT_MS (30 * 1000)

struct migration {
	struct vm *vm;
	bool incoming;
	struct vm_config *cfg; /* source: what the VM was built from */
	struct mig_send_params sp;
	struct mig_recv_params rp;
	struct mig_url url;
	struct mig_tls tls;
	int lfd; /* destination: the listening socket */

	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock; /* st, conn, go_sent, status_read */
	pthread_cond_t cond;
	struct mig_status st;
	struct mig_conn *conn;
	bool go_sent;         /* the destination was told to run: no cancel */
	bool status_read;     /* GET /migration saw the final state */
	_Atomic bool cancel;
	uint64_t t0;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- status ------------------------------------------------------------ */

static void set_state(struct migration *m, enum mig_state_kind s)
{
	pthread_mutex_lock(&m->lock);
	m->st.state = s;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

static void set_error(struct migration *m, enum mig_state_kind s, const char *msg)
{
	pthread_mutex_lock(&m->lock);
	m->st.state = s;
	m->st.elapsed_ms = (mono_ns() - m->t0) / 1000000;
	str_copy(m->st.error, sizeof(m->st.error), msg);
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

static bool in_flight(enum mig_state_kind s)
{
	return s == MIGS_SETUP || s == MIGS_ACTIVE || s == MIGS_SWITCHOVER || s == MIGS_POSTCOPY;
}

void mig_get_status(struct migration *m, struct mig_status *out)
{
	pthread_mutex_lock(&m->lock);
	*out = m->st;
	if (m->conn)
		out->bytes = m->incoming ? mig_conn_bytes_in(m->conn) : mig_conn_bytes_out(m->conn);
	if (in_flight(m->st.state))
		out->elapsed_ms = (mono_ns() - m->t0) / 1000000;
	if (m->st.state == MIGS_COMPLETED && !m->status_read) {
		m->status_read = true;
		pthread_cond_broadcast(&m->cond);
	}
	pthread_mutex_unlock(&m->lock);
}

bool mig_in_flight(struct migration *m)
{
	pthread_mutex_lock(&m->lock);
	bool r = in_flight(m->st.state);
	pthread_mutex_unlock(&m->lock);
	return r;
}

bool mig_incoming(struct migration *m)
{
	return m->incoming;
}

int mig_cancel(struct migration *m, char *err, size_t errlen)
{
	pthread_mutex_lock(&m->lock);
	int rc = 0;
	if (m->incoming)
		rc = err_set(err, errlen, -EINVAL, "this is the destination; cancel at the source");
	else if (m->go_sent)
		rc = err_set(err, errlen, -EINVAL, "too late: the destination is taking over");
	else if (!in_flight(m->st.state))
		rc = err_set(err, errlen, -EINVAL, "no migration is in progress");
	if (!rc) {
		atomic_store(&m->cancel, true);
		if (m->conn)
			mig_conn_shutdown(m->conn);
	}
	pthread_mutex_unlock(&m->lock);
	return rc;
}

/* ---- messages ------------------------------------------------------------- */

static int send_msg(struct mig_conn *c, uint32_t type, const void *p, uint32_t len)
{
	uint8_t h[MIG_HDR_LEN];
	mig_hdr_encode(h, type, p, len);
	int r = mig_conn_write(c, h, sizeof(h));
	if (!r && len)
		r = mig_conn_write(c, p, len);
	return r;
}

/* Best effort: tell the peer why the stream ends. */
static void send_error(struct mig_conn *c, const char *msg)
{
	size_t n = strlen(msg);
	if (n > MIG_ERROR_MAX)
		n = MIG_ERROR_MAX;
	(void)mig_conn_set_timeout(c, 2000);
	(void)send_msg(c, MIG_MSG_ERROR, msg, (uint32_t)n);
}

struct msgbuf {
	uint8_t *p;
	size_t cap;
};

/* Read one message: header checked, payload read into mb and checked.
 * @fd (may be NULL): a file descriptor that came with the header. */
/* @fds (1 + CONFIG_MAX_NICS): local mode's HELLO brings guest memory's
 * memfd, then the taps; they are only kept here (*@nfds of them): what
 * they are is asked on the loop (step_build), whose filter allows the
 * tap's ioctls, not this thread's. */
static int recv_msg(struct mig_conn *c, struct mig_hdr *h, struct msgbuf *mb, int *fds,
		    int *nfds, char *err, size_t errlen)
{
	uint8_t hb[MIG_HDR_LEN];
	int r;
	if (fds) {
		*nfds = 0;
		r = mig_conn_recv_fds(c, hb, sizeof(hb), fds, 1 + CONFIG_MAX_NICS, nfds);
	} else {
		r = mig_conn_read(c, hb, sizeof(hb));
	}
	if (r)
		return err_set(err, errlen, r, "reading the stream: %s",
			       r == -ECONNRESET ? "the peer closed the connection" : strerror(-r));
	if ((r = mig_hdr_decode(hb, h, err, errlen)))
		return r;
	if (h->len > mb->cap) {
		uint8_t *n = realloc(mb->p, h->len);
		if (!n)
			return err_set(err, errlen, -ENOMEM, "out of memory for a %u-byte message",
				       h->len);
		mb->p = n;
		mb->cap = h->len;
	}
	if (h->len && (r = mig_conn_read(c, mb->p, h->len)))
		return err_set(err, errlen, r, "reading a %s message: %s", mig_msg_name(h->type),
			       r == -ECONNRESET ? "the peer closed the connection" : strerror(-r));
	return mig_payload_check(h, mb->p, err, errlen);
}

/* The destination's ERROR message as text (printable ASCII only). */
static int peer_text(const struct mig_hdr *h, const struct msgbuf *mb, char *err, size_t errlen)
{
	char text[MIG_ERROR_MAX + 1];
	mig_error_text(mb->p, h->len, text, sizeof(text));
	return err_set(err, errlen, -EREMOTEIO, "the destination: %s", text);
}

/* The peer's next answer into *@h and @mb; its ERROR is a failure with
 * its text in err. */
static int answer(struct mig_conn *c, struct mig_hdr *h, struct msgbuf *mb, char *err,
		  size_t errlen)
{
	int r = recv_msg(c, h, mb, NULL, NULL, err, errlen);
	if (r)
		return r;
	if (h->type == MIG_MSG_ERROR)
		return peer_text(h, mb, err, errlen);
	return 0;
}

/* Wait for one of the peer's answers: @want, or ERROR (its text in err). */
static int expect(struct mig_conn *c, uint32_t want, struct msgbuf *mb, char *err, size_t errlen)
{
	struct mig_hdr h;
	int r = answer(c, &h, mb, err, errlen);
	if (r)
		return r;
	if (h.type != want || h.len)
		return err_set(err, errlen, -EPROTO, "the destination sent %s (%u bytes) where %s "
				 "was due", mig_msg_name(h.type), h.len, mig_msg_name(want));
	return 0;
}

/* After a failed write: read what the peer sent before it closed, up to
 * its ERROR (2 s at most).  True, with its text in err, if there was one. */
static bool peer_error(struct mig_conn *c, struct msgbuf *mb, char *err, size_t errlen)
{
	(void)mig_conn_set_timeout(c, 2000);
	for (int i = 0; i < 64; i++) {
		struct mig_hdr h;
		char e[256];
		if (recv_msg(c, &h, mb, NULL, NULL, e, sizeof(e)))
			return false;
		if (h.type == MIG_MSG_ERROR) {
			peer_text(&h, mb, err, errlen);
			return true;
		}
	}
	return false;
}

/* ---- loop-side steps (vm_call) ---------------------------------------------- */

struct call {
	struct migration *m;
	int rc;
	char err[400];
	/* in/out of the individual steps */
	uint64_t *bits;
	uint64_t pages;
	bool was_running;
	uint8_t *buf;
	size_t len;
	const struct snap_reader *rd;
	int memfd;
	struct guest_mem *mem;
	bool take;
	unsigned pct;
	int taps[CONFIG_MAX_NICS];
	int ntaps;
};

static int on_loop(struct migration *m, void (*fn)(struct vm *, void *), struct call *c)
{
	c->m = m;
	c->rc = -ESHUTDOWN;
	snprintf(c->err, sizeof(c->err), "the VM has stopped");
	if (vm_call(m->vm, fn, c))
		return -ESHUTDOWN;
	return c->rc;
}

static struct machine *live_machine(struct vm *vm, struct call *c)
{
	enum vm_state s = vm_get_state(vm);
	struct machine *mc = vm_machine(vm);
	if (!mc || (s != VM_RUNNING && s != VM_PAUSED)) {
		c->rc = err_set(c->err, sizeof(c->err), -ESHUTDOWN, "the VM has stopped");
		return NULL;
	}
	return mc;
}

static void step_begin(struct vm *vm, void *arg)
{
	struct call *c = arg;
	struct machine *mc = live_machine(vm, c);
	if (mc)
		c->rc = machine_mig_begin(mc, c->err, sizeof(c->err));
}

static void step_collect(struct vm *vm, void *arg)
{
	struct call *c = arg;
	struct machine *mc = live_machine(vm, c);
	if (mc)
		c->rc = machine_mig_collect(mc, c->bits, &c->pages, c->err, sizeof(c->err));
}

static void step_throttle(struct vm *vm, void *arg)
{
	struct call *c = arg;
	struct machine *mc = live_machine(vm, c);
	if (mc) {
		machine_set_throttle(mc, c->pct);
		c->rc = 0;
	}
}

/* The switch-over's pause, the last dirty pages, the state. */
static void step_stop(struct vm *vm, void *arg)
{
	struct call *c = arg;
	struct machine *mc = live_machine(vm, c);
	if (!mc)
		return;
	machine_set_throttle(mc, 0);
	c->rc = vm_mig_pause(vm, &c->was_running);
	if (c->rc) {
		err_set(c->err, sizeof(c->err), c->rc, "cannot pause the VM: %s", strerror(-c->rc));
		return;
	}
	if (c->bits && (c->rc = machine_mig_collect(mc, c->bits, &c->pages, c->err,
						    sizeof(c->err))))
		goto undo;
	if ((c->rc = machine_mig_state(mc, &c->buf, &c->len, c->err, sizeof(c->err))))
		goto undo;
	return;
undo:
	if (c->was_running)
		(void)vm_mig_resume(vm);
	c->was_running = false;
}

/* Undo: dirty logging off, the disks' locks back, running again if the
 * migration paused it. */
static void step_abort(struct vm *vm, void *arg)
{
	struct call *c = arg;
	struct machine *mc = vm_machine(vm);
	c->rc = 0;
	if (!mc)
		return;
	machine_mig_end(mc);
	if (c->take && (c->rc = machine_disks_lock(mc, true, c->err, sizeof(c->err)))) {
		/* someone else has the disks now: running on would corrupt them */
		log_error("migration: %s; the VM stays paused", c->err);
		return;
	}
	if (c->was_running)
		c->rc = vm_mig_resume(vm);
}

static void step_disks(struct vm *vm, void *arg)
{
	struct call *c = arg;
	struct machine *mc = live_machine(vm, c);
	if (mc)
		c->rc = machine_disks_lock(mc, c->take, c->err, sizeof(c->err));
}

static void step_taps(struct vm *vm, void *arg)
{
	struct call *c = arg;
	struct machine *mc = live_machine(vm, c);
	if (mc) {
		c->ntaps = machine_tap_fds(mc, c->taps, CONFIG_MAX_NICS);
		c->rc = 0;
	}
}

static void step_mem(struct vm *vm, void *arg)
{
	struct call *c = arg;
	struct machine *mc = live_machine(vm, c);
	if (mc) {
		c->mem = machine_guest_mem(mc);
		c->rc = 0;
	}
}

static void step_end(struct vm *vm, void *arg)
{
	struct call *c = arg;
	struct machine *mc = vm_machine(vm);
	if (mc)
		machine_mig_end(mc);
	c->rc = 0;
}

/* The VM lives at the destination now: this process's teardown (freeing
 * guest memory is kernel work in proportion to its size) must not take
 * CPU time from it where both share a host (local mode, a busy host). */
static void step_yield(struct vm *vm, void *arg)
{
	struct call *c = arg;
	struct sched_param sp = {0};
	(void)sched_setscheduler(0, SCHED_IDLE, &sp);
	c->rc = 0;
}

/* destination */
static void step_build(struct vm *vm, void *arg)
{
	struct call *c = arg;
	/* local mode: the taps that came with HELLO, for the NICs to take */
	for (int i = 0; i < c->ntaps; i++)
		if (tap_adopt(c->taps[i]))
			log_warn("migration: an fd that came with HELLO is not a tap: closed");
	c->ntaps = 0;
	c->rc = vm_mig_incoming_build(vm, c->rd, c->memfd, &c->mem, c->err, sizeof(c->err));
}

static void step_apply(struct vm *vm, void *arg)
{
	struct call *c = arg;
	c->rc = vm_mig_incoming_apply(vm, c->rd, c->err, sizeof(c->err));
}

static void step_run(struct vm *vm, void *arg)
{
	struct call *c = arg;
	c->rc = vm_mig_incoming_run(vm, c->err, sizeof(c->err));
}

/* ---- the source ------------------------------------------------------------- */

struct src {
	struct migration *m;
	struct mig_conn *c;
	uint64_t npages;
	uint8_t *base;
	/* the PAGES batch: runs, then the pages' bytes; the runs part is
	 * written just before the data so the payload is one buffer */
	uint8_t *buf;
	struct mig_run druns[MIG_BATCH_PAGES];
	uint32_t ndruns, ndpages;
	struct mig_run *zruns;
	uint32_t nzruns;
	uint64_t pass_bytes0, pass_t0;
	uint64_t sent_data, sent_zero;
};

#define DATA_OFF mig_runs_len(MIG_BATCH_PAGES)

static int check_stop(struct src *s, char *err, size_t errlen)
{
	struct migration *m = s->m;
	if (atomic_load(&m->cancel))
		return err_set(err, errlen, -ECANCELED, "cancelled");
	if (m->sp.timeout_s && mono_ns() - m->t0 > (uint64_t)m->sp.timeout_s * 1000000000ull)
		return err_set(err, errlen, -ETIMEDOUT, "not done within timeout_s (%u s)",
			       m->sp.timeout_s);
	return 0;
}

static void publish_progress(struct src *s)
{
	struct migration *m = s->m;
	pthread_mutex_lock(&m->lock);
	m->st.pages_data = s->sent_data;
	m->st.pages_zero = s->sent_zero;
	pthread_mutex_unlock(&m->lock);
}

/* Keep to max_bandwidth_mib: sleep until the pass's bytes fit its time. */
static void pace(struct src *s)
{
	uint64_t mib = s->m->sp.max_bandwidth_mib;
	if (!mib)
		return;
	uint64_t bytes = mig_conn_bytes_out(s->c) - s->pass_bytes0;
	uint64_t due_ns = bytes * 1000000000ull / (mib << 20);
	uint64_t spent = mono_ns() - s->pass_t0;
	if (due_ns > spent) {
		uint64_t d = due_ns - spent;
		struct timespec ts = {(time_t)(d / 1000000000ull), (long)(d % 1000000000ull)};
		nanosleep(&ts, NULL);
	}
}

static int flush_data(struct src *s, char *err, size_t errlen)
{
	if (!s->ndruns)
		return 0;
	size_t rl = mig_runs_len(s->ndruns);
	uint8_t *payload = s->buf + DATA_OFF - rl;
	mig_runs_encode(payload, s->druns, s->ndruns);
	uint32_t len = (uint32_t)(rl + (size_t)s->ndpages * 4096);
	int r = send_msg(s->c, MIG_MSG_PAGES, payload, len);
	if (r)
		return err_set(err, errlen, r, "sending pages: %s", strerror(-r));
	s->sent_data += s->ndpages;
	s->ndruns = s->ndpages = 0;
	publish_progress(s);
	pace(s);
	return check_stop(s, err, errlen);
}

static int flush_zero(struct src *s, char *err, size_t errlen)
{
	if (!s->nzruns)
		return 0;
	size_t rl = mig_runs_len(s->nzruns);
	uint8_t *payload = malloc(rl);
	if (!payload)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	mig_runs_encode(payload, s->zruns, s->nzruns);
	uint64_t n = 0;
	for (uint32_t i = 0; i < s->nzruns; i++)
		n += s->zruns[i].count;
	int r = send_msg(s->c, MIG_MSG_ZERO, payload, (uint32_t)rl);
	free(payload);
	if (r)
		return err_set(err, errlen, r, "sending zero pages: %s", strerror(-r));
	s->sent_zero += n;
	s->nzruns = 0;
	publish_progress(s);
	return check_stop(s, err, errlen);
}

static int add_page(struct src *s, uint64_t pg, char *err, size_t errlen)
{
	const uint8_t *p = s->base + pg * 4096;
	int r;
	if (mig_page_is_zero(p)) {
		struct mig_run *last = s->nzruns ? &s->zruns[s->nzruns - 1] : NULL;
		if (last && last->first + last->count == pg) {
			last->count++;
			return 0;
		}
		if (s->nzruns == MIG_MAX_RUNS && (r = flush_zero(s, err, errlen)))
			return r;
		s->zruns[s->nzruns++] = (struct mig_run){pg, 1};
		return 0;
	}
	memcpy(s->buf + DATA_OFF + (size_t)s->ndpages * 4096, p, 4096);
	s->ndpages++;
	struct mig_run *last = s->ndruns ? &s->druns[s->ndruns - 1] : NULL;
	if (last && last->first + last->count == pg)
		last->count++;
	else
		s->druns[s->ndruns++] = (struct mig_run){pg, 1};
	if (s->ndpages == MIG_BATCH_PAGES)
		return flush_data(s, err, errlen);
	return 0;
}

/* Send every page of @bits (NULL: all of memory), then PASS. */
static int send_pass(struct src *s, const uint64_t *bits, uint32_t pass, char *err, size_t errlen)
{
	int r;
	uint64_t n = 0;
	for (uint64_t pg = 0; pg < s->npages; pg++) {
		if (bits && !(bits[pg / 64] & (1ull << (pg % 64)))) {
			if (!bits[pg / 64])
				pg |= 63; /* a clear word: skip it */
			continue;
		}
		if ((r = add_page(s, pg, err, errlen)))
			return r;
		n++;
	}
	if ((r = flush_data(s, err, errlen)) || (r = flush_zero(s, err, errlen)))
		return r;
	uint8_t pp[16];
	put_le32(pp, pass);
	put_le32(pp + 4, 0);
	put_le64(pp + 8, n);
	if ((r = send_msg(s->c, MIG_MSG_PASS, pp, sizeof(pp))))
		return err_set(err, errlen, r, "sending: %s", strerror(-r));
	return 0;
}

/* PASS_DONE for @pass: the destination took every page of it. */
static int pass_done(struct mig_conn *c, struct msgbuf *mb, uint32_t pass, char *err, size_t errlen)
{
	struct mig_hdr h;
	int r = answer(c, &h, mb, err, errlen);
	if (r)
		return r;
	if (h.type != MIG_MSG_PASS_DONE || h.len != 16 || get_le32(mb->p) != pass ||
	    get_le32(mb->p + 4))
		return err_set(err, errlen, -EPROTO, "the destination sent %s (%u bytes) where "
				 "PASS_DONE of pass %u was due", mig_msg_name(h.type), h.len, pass);
	return 0;
}

/* VERIFY (the guest paused, its last pass sent): every page's CRC, for
 * the destination to compare with what it holds. */
static int send_verify(struct src *s, char *err, size_t errlen)
{
	uint8_t *p = malloc(MIG_VERIFY_HDR + 4ull * MIG_VERIFY_PAGES);
	if (!p)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	int r = 0;
	for (uint64_t pg = 0; pg < s->npages && !r; pg += MIG_VERIFY_PAGES) {
		uint32_t n = (uint32_t)(s->npages - pg < MIG_VERIFY_PAGES ? s->npages - pg
									  : MIG_VERIFY_PAGES);
		put_le64(p, pg);
		put_le32(p + 8, n);
		put_le32(p + 12, 0);
		mig_verify_crcs(s->base, pg, n, p + MIG_VERIFY_HDR);
		if ((r = send_msg(s->c, MIG_MSG_VERIFY, p, MIG_VERIFY_HDR + 4u * n)))
			err_set(err, errlen, r, "sending VERIFY: %s", strerror(-r));
	}
	free(p);
	if (!r)
		log_info("migration: the CRC of each of %llu pages sent for the destination to "
			 "verify", (unsigned long long)s->npages);
	return r;
}

static int hello(struct migration *m, struct mig_conn *c, struct msgbuf *mb, int memfd, char *err,
		 size_t errlen)
{
	uint8_t pre[MIG_PREAMBLE_LEN];
	mig_preamble_encode(pre);
	int r = mig_conn_write(c, pre, sizeof(pre));
	if (!r)
		r = mig_conn_read(c, pre, sizeof(pre));
	if (r)
		return err_set(err, errlen, r, "the destination does not answer: %s",
			       r == -ECONNRESET ? "it closed the connection" : strerror(-r));
	if ((r = mig_preamble_check(pre, err, errlen)))
		return r;
	struct snap_writer w;
	snap_writer_init(&w);
	snap_config_write(m->cfg, &w);
	struct mig_hello h = {.mem_size = m->cfg->mem_size,
			      .page_size = 4096,
			      .mode = (uint32_t)m->sp.mode};
	mig_hello_write(&h, &w);
	uint8_t *buf;
	size_t len;
	if ((r = snap_writer_finish(&w, &buf, &len)))
		return err_set(err, errlen, r, "%s", snap_writer_error(&w));
	if (memfd >= 0) {
		/* local mode: guest memory's memfd rides with the header, and
		 * the taps the NICs have attached (a tap takes one attachment) */
		int fds[1 + CONFIG_MAX_NICS];
		fds[0] = memfd;
		struct call tf = {0};
		(void)on_loop(m, step_taps, &tf);
		int nfds = 1;
		for (int i = 0; i < tf.ntaps; i++)
			fds[nfds++] = tf.taps[i];
		uint8_t *all = malloc(MIG_HDR_LEN + len);
		if (!all) {
			free(buf);
			return err_set(err, errlen, -ENOMEM, "out of memory");
		}
		mig_hdr_encode(all, MIG_MSG_HELLO, buf, (uint32_t)len);
		memcpy(all + MIG_HDR_LEN, buf, len);
		r = mig_conn_send_fds(c, all, MIG_HDR_LEN + len, fds, nfds);
		free(all);
	} else {
		r = send_msg(c, MIG_MSG_HELLO, buf, (uint32_t)len);
	}
	free(buf);
	if (r)
		return err_set(err, errlen, r, "sending HELLO: %s", strerror(-r));
	return expect(c, MIG_MSG_HELLO_OK, mb, err, errlen);
}

/* READY came: drop the disks' locks and tell the destination to run
 * (from here on a cancel is refused).  *@go: GO was sent. */
static int send_go(struct migration *m, struct mig_conn *c, bool *go, char *err, size_t errlen)
{
	struct call cl = {.take = false};
	int r = on_loop(m, step_disks, &cl);
	if (r)
		return err_set(err, errlen, r, "%s", cl.err);
	pthread_mutex_lock(&m->lock);
	bool cancelled = atomic_load(&m->cancel);
	if (!cancelled)
		m->go_sent = true;
	pthread_mutex_unlock(&m->lock);
	if (cancelled)
		return err_set(err, errlen, -ECANCELED, "cancelled");
	*go = true;
	if ((r = send_msg(c, MIG_MSG_GO, NULL, 0)))
		return err_set(err, errlen, r, "sending GO: %s", strerror(-r));
	return 0;
}

/* The hand-over after the state was sent: READY, disks, GO, RUNNING.
 * *@go: GO was sent (the source must not run again unless told). */
static int handover(struct migration *m, struct mig_conn *c, struct msgbuf *mb, bool *go,
		    uint64_t *t_ready, char *err, size_t errlen)
{
	(void)mig_conn_set_timeout(c, MIG_ANSWER_TIMEOUT_MS);
	int r = expect(c, MIG_MSG_READY, mb, err, errlen);
	*t_ready = mono_ns();
	if (r)
		return r;
	if ((r = send_go(m, c, go, err, errlen)))
		return r;
	return expect(c, MIG_MSG_RUNNING, mb, err, errlen);
}

/* POSTCOPY: how many pages are left and which (the bitmap's bytes). */
static int send_postcopy_bitmap(struct src *s, const uint64_t *bits, char *err, size_t errlen)
{
	size_t bytes = (size_t)((s->npages + 7) / 8);
	uint8_t *p = malloc(8 + bytes);
	if (!p)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	uint64_t n = 0;
	for (uint64_t w = 0; w < (s->npages + 63) / 64; w++)
		n += (uint64_t)__builtin_popcountll(bits[w]);
	put_le64(p, n);
	for (size_t i = 0; i < bytes; i++)
		p[8 + i] = (uint8_t)(bits[i / 8] >> (8 * (i % 8)));
	int r = send_msg(s->c, MIG_MSG_POSTCOPY, p, (uint32_t)(8 + bytes));
	free(p);
	pthread_mutex_lock(&s->m->lock);
	s->m->st.remaining_bytes = n * 4096;
	pthread_mutex_unlock(&s->m->lock);
	log_info("migration: post-copy of %llu pages (%llu MiB)", (unsigned long long)n,
		 (unsigned long long)(n >> 8));
	return r ? err_set(err, errlen, r, "sending POSTCOPY: %s", strerror(-r)) : 0;
}

/* Send page @pg of @bits now (asked for, or the next pushed) and take it
 * out of the bitmap.  Batched with the pages after it that are left too. */
static int push_from(struct src *s, uint64_t *bits, uint64_t pg, unsigned max, uint64_t *left,
		     char *err, size_t errlen)
{
	int r = 0;
	for (unsigned k = 0; k < max && pg < s->npages; pg++) {
		if (!(bits[pg / 64] & (1ull << (pg % 64)))) {
			if (k)
				break; /* a run ends: send what we have */
			continue;
		}
		bits[pg / 64] &= ~(1ull << (pg % 64));
		(*left)--;
		k++;
		if ((r = add_page(s, pg, err, errlen)))
			return r;
	}
	if ((r = flush_data(s, err, errlen)) || (r = flush_zero(s, err, errlen)))
		return r;
	pthread_mutex_lock(&s->m->lock);
	s->m->st.remaining_bytes = *left * 4096;
	pthread_mutex_unlock(&s->m->lock);
	return 0;
}

/*
 * After STATE in post-copy: serve the destination's page requests first,
 * push the rest in order meanwhile, hand the disks over at READY (GO), and
 * finish with POSTCOPY_END once the destination runs and every page went;
 * DONE says they are all in.  *@running: the destination said RUNNING (from
 * then on this side can never run the VM again).
 */
static int postcopy_source(struct src *s, uint64_t *bits, struct msgbuf *mb, uint64_t t_stop,
			   bool *go, bool *running, uint64_t *downtime, char *err, size_t errlen)
{
	struct migration *m = s->m;
	struct mig_conn *c = s->c;
	uint64_t left = 0, next = 0;
	for (uint64_t w = 0; w < (s->npages + 63) / 64; w++)
		left += (uint64_t)__builtin_popcountll(bits[w]);
	bool end_sent = false;
	int r;
	for (;;) {
		/* the destination's messages first: a request holds up a vCPU */
		struct pollfd pfd = {.fd = mig_conn_fd(c), .events = POLLIN};
		int wait_ms = left ? 0 : 1000;
		if (!mig_conn_pending(c) && poll(&pfd, 1, wait_ms) <= 0) {
			if (!left && !end_sent && *running) {
				if ((r = send_msg(c, MIG_MSG_POSTCOPY_END, NULL, 0)))
					return err_set(err, errlen, r, "sending: %s", strerror(-r));
				end_sent = true;
				continue;
			}
			if (!*go && (r = check_stop(s, err, errlen)))
				return r;
			if (left) {
				/* push the next pages */
				while (next < s->npages && !(bits[next / 64] & (1ull << (next % 64))))
					next = bits[next / 64] ? next + 1 : (next | 63) + 1;
				if ((r = push_from(s, bits, next, MIG_BATCH_PAGES, &left, err, errlen)))
					return r;
			}
			continue;
		}
		struct mig_hdr h;
		if ((r = recv_msg(c, &h, mb, NULL, NULL, err, errlen)))
			return r;
		switch (h.type) {
		case MIG_MSG_PAGE_REQ: {
			uint64_t pg = h.len == 8 ? get_le64(mb->p) : UINT64_MAX;
			if (pg >= s->npages)
				return err_set(err, errlen, -EPROTO, "the destination asked for page "
						 "%llu of %llu", (unsigned long long)pg,
						 (unsigned long long)s->npages);
			if (bits[pg / 64] & (1ull << (pg % 64)))
				r = push_from(s, bits, pg, 16, &left, err, errlen);
			if (r)
				return r;
			break;
		}
		case MIG_MSG_READY: {
			if (*go || h.len)
				return err_set(err, errlen, -EPROTO, "READY out of turn");
			if ((r = send_go(m, c, go, err, errlen)))
				return r;
			break;
		}
		case MIG_MSG_RUNNING:
			if (!*go || *running || h.len)
				return err_set(err, errlen, -EPROTO, "RUNNING out of turn");
			*running = true;
			*downtime = (mono_ns() - t_stop) / 1000000;
			log_info("migration: the destination runs after %llu ms; %llu pages to go",
				 (unsigned long long)*downtime, (unsigned long long)left);
			break;
		case MIG_MSG_DONE:
			if (!end_sent || h.len)
				return err_set(err, errlen, -EPROTO, "DONE out of turn");
			return 0;
		case MIG_MSG_ERROR:
			return peer_text(&h, mb, err, errlen);
		default:
			return err_set(err, errlen, -EPROTO, "the destination sent %s in post-copy",
				       mig_msg_name(h.type));
		}
	}
}

/* A migration's thread, once connected: the migration-run filter on top
 * of its own, before it reads the stream.  0 or -errno with @err. */
static int mig_narrow(char *err, size_t errlen)
{
	int r = sec_enter(SEC_MIG_RUN);
	return r ? err_set(err, errlen, r, "seccomp: cannot narrow the migration thread: %s",
			   strerror(-r))
		 : 0;
}

static void *source_thread(void *arg)
{
	struct migration *m = arg;
	pthread_setname_np(pthread_self(), "migrate-out");
	char err[512] = "";
	struct msgbuf mb = {0};
	struct src s = {.m = m};
	uint64_t *bits = NULL;
	bool paused_by_us = false, go = false, began = false, postcopy = false, running = false;
	struct mig_conn *c = NULL;
	int r = mig_connect(&m->url, &m->tls, MIG_CONNECT_TIMEOUT_MS, &c, err, sizeof(err));
	if (r)
		goto fail;
	/* connected (and TLS's handshake done): the narrow list from here */
	if ((r = mig_narrow(err, sizeof(err))))
		goto fail;
	pthread_mutex_lock(&m->lock);
	m->conn = c;
	bool cancelled = atomic_load(&m->cancel);
	pthread_mutex_unlock(&m->lock);
	if (cancelled) {
		r = err_set(err, sizeof(err), -ECANCELED, "cancelled");
		goto fail;
	}
	if (m->sp.timeout_s)
		(void)mig_conn_set_timeout(c, (int)(m->sp.timeout_s > 2000000 ? 2000000000
									  : m->sp.timeout_s * 1000));
	/* guest memory is read from this thread while the guest writes it;
	 * the mapping stays valid until this thread is joined (vm_destroy
	 * joins it before the machine goes) */
	struct call gmc = {0};
	if ((r = on_loop(m, step_mem, &gmc))) {
		str_copy(err, sizeof(err), gmc.err);
		goto fail;
	}
	struct guest_mem *gm = gmc.mem;
	int memfd = -1;
	if (m->sp.mode == MIGP_LOCAL)
		memfd = gm->memfd;
	s.c = c;
	s.npages = guest_mem_pages(gm);
	s.base = gm->base;
	if ((r = hello(m, c, &mb, memfd, err, sizeof(err))))
		goto fail;
	if (m->sp.mode != MIGP_LOCAL) {
		s.buf = malloc(DATA_OFF + (size_t)MIG_BATCH_PAGES * 4096);
		s.zruns = malloc(MIG_MAX_RUNS * sizeof(*s.zruns));
		bits = calloc((size_t)guest_mem_bitmap_words(gm), sizeof(*bits));
		if (!s.buf || !s.zruns || !bits) {
			r = err_set(err, sizeof(err), -ENOMEM, "out of memory");
			goto fail;
		}
		struct call b = {0};
		if ((r = on_loop(m, step_begin, &b))) {
			str_copy(err, sizeof(err), b.err);
			goto fail;
		}
		began = true;
		set_state(m, MIGS_ACTIVE);
		/* pass 0: all of memory */
		uint32_t pass = 0;
		unsigned throttle = 0;
		for (;;) {
			s.pass_t0 = mono_ns();
			s.pass_bytes0 = mig_conn_bytes_out(c);
			if ((r = send_pass(&s, pass ? bits : NULL, pass, err, sizeof(err))) ||
			    (r = pass_done(c, &mb, pass, err, sizeof(err))))
				goto fail;
			/* from the pass's start to the destination having taken it
			 * all: the rate of the whole path, queues drained */
			uint64_t dt = mono_ns() - s.pass_t0;
			uint64_t sent = mig_conn_bytes_out(c) - s.pass_bytes0;
			uint64_t bw = dt ? sent * 1000000000ull / dt : 0; /* bytes/s */
			memset(bits, 0, (size_t)guest_mem_bitmap_words(gm) * sizeof(*bits));
			struct call k = {.bits = bits};
			if ((r = on_loop(m, step_collect, &k))) {
				str_copy(err, sizeof(err), k.err);
				goto fail;
			}
			uint64_t remaining = k.pages * 4096;
			uint64_t rate = dt ? remaining * 1000000000ull / dt : 0;
			uint64_t expect_ms = bw ? remaining * 1000 / bw : 0;
			pass++;
			pthread_mutex_lock(&m->lock);
			m->st.pass = pass;
			m->st.remaining_bytes = remaining;
			m->st.bandwidth = bw;
			m->st.dirty_rate = rate;
			m->st.expected_downtime_ms = expect_ms;
			m->st.throttle_pct = throttle;
			pthread_mutex_unlock(&m->lock);
			log_debug("migration pass %u: %llu bytes in %llu ms, %llu dirty pages left, "
				  "expected downtime %llu ms",
				  pass, (unsigned long long)sent, (unsigned long long)(dt / 1000000),
				  (unsigned long long)k.pages, (unsigned long long)expect_ms);
			if (expect_ms <= m->sp.downtime_limit_ms)
				break;
			/* post-copy right after the first pass; auto once pre-copy
			 * shows it does not converge */
			if (m->sp.mode == MIGP_POSTCOPY ||
			    (m->sp.mode == MIGP_AUTO && pass >= MIG_AUTO_PASSES)) {
				postcopy = true;
				break;
			}
			if (pass >= MIG_MAX_PASSES) {
				log_warn("migration: %u passes did not converge (%llu dirty pages "
					 "left); switching over anyway",
					 pass, (unsigned long long)k.pages);
				break;
			}
			/* the guest dirties faster than half the link carries:
			 * take vCPU time away, more each pass (auto-converge) */
			if (pass >= 2 && rate > bw / 2 && throttle < 99) {
				throttle = throttle ? throttle + 10 : 20;
				if (throttle > 99)
					throttle = 99;
				struct call t = {.pct = throttle};
				(void)on_loop(m, step_throttle, &t);
				log_info("migration: the guest dirties %llu MiB/s, the link carries "
					 "%llu MiB/s: vCPUs throttled to %u%%",
					 (unsigned long long)(rate >> 20), (unsigned long long)(bw >> 20),
					 100 - throttle);
			}
		}
	}
	/* switch-over */
	set_state(m, MIGS_SWITCHOVER);
	uint64_t t_stop = mono_ns();
	/* bits holds the last pass's dirty pages, not sent yet: the pause's
	 * collect adds what was dirtied since */
	struct call st = {.bits = bits};
	if ((r = on_loop(m, step_stop, &st))) {
		str_copy(err, sizeof(err), st.err);
		goto fail;
	}
	paused_by_us = st.was_running;
	uint64_t t_paused = mono_ns(), t_pages = 0, t_verify = 0, t_state = 0;
	log_debug("migration: switch-over: %llu more dirty pages", (unsigned long long)st.pages);
	if (bits && postcopy) {
		/* the pages left go after the switch-over: first which they are */
		r = send_postcopy_bitmap(&s, bits, err, sizeof(err));
	} else if (bits) {
		s.pass_t0 = mono_ns();
		s.pass_bytes0 = mig_conn_bytes_out(c);
		r = send_pass(&s, bits, UINT32_MAX, err, sizeof(err));
		t_pages = mono_ns();
		if (!r && m->sp.verify)
			r = send_verify(&s, err, sizeof(err));
		t_verify = mono_ns();
	}
	if (!r && (r = send_msg(c, MIG_MSG_STATE, st.buf, (uint32_t)st.len)))
		err_set(err, sizeof(err), r, "sending the state: %s", strerror(-r));
	t_state = mono_ns();
	free(st.buf);
	if (r)
		goto fail;
	uint64_t downtime = 0;
	if (postcopy) {
		set_state(m, MIGS_POSTCOPY);
		r = postcopy_source(&s, bits, &mb, t_stop, &go, &running, &downtime, err, sizeof(err));
		if (r)
			goto fail;
	} else {
		uint64_t t_ready = 0;
		if ((r = handover(m, c, &mb, &go, &t_ready, err, sizeof(err))))
			goto fail;
		uint64_t t_end = mono_ns();
		downtime = (t_end - t_stop) / 1000000;
		/* where the pause went (from the stop to the destination running) */
		if (!t_pages)
			t_pages = t_verify = t_paused;
		log_info("migration: switch-over of %llu ms: pause, collect and state %llu ms; last "
			 "%llu pages %llu ms; verify %llu ms; state (%zu bytes) sent %llu ms; "
			 "destination applied it %llu ms; ran %llu ms",
			 (unsigned long long)downtime,
			 (unsigned long long)((t_paused - t_stop) / 1000000),
			 (unsigned long long)st.pages,
			 (unsigned long long)((t_pages - t_paused) / 1000000),
			 (unsigned long long)((t_verify - t_pages) / 1000000), st.len,
			 (unsigned long long)((t_state - t_verify) / 1000000),
			 (unsigned long long)((t_ready - t_state) / 1000000),
			 (unsigned long long)((t_end - t_ready) / 1000000));
	}
	pthread_mutex_lock(&m->lock);
	m->st.state = MIGS_COMPLETED;
	m->st.downtime_ms = downtime;
	m->st.remaining_bytes = 0;
	m->st.bytes = mig_conn_bytes_out(c);
	m->st.elapsed_ms = (mono_ns() - m->t0) / 1000000;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	log_info("migration to %s completed: %llu MiB sent in %u passes, downtime %llu ms",
		 m->sp.url, (unsigned long long)(m->st.bytes >> 20), m->st.pass,
		 (unsigned long long)downtime);
	{
		struct sched_param sp = {0};
		(void)sched_setscheduler(0, SCHED_IDLE, &sp);
		struct call y = {0};
		(void)on_loop(m, step_yield, &y);
	}
	/* let whoever started it read the final status, then end */
	{
		struct timespec dl;
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += MIG_LINGER_MS / 1000;
		pthread_mutex_lock(&m->lock);
		while (!m->status_read && !atomic_load(&m->cancel))
			if (pthread_cond_timedwait(&m->cond, &m->lock, &dl))
				break;
		pthread_mutex_unlock(&m->lock);
	}
	vm_shutdown(m->vm, 0);
	goto out;
fail:
	if (r == -ECANCELED)
		snprintf(err, sizeof(err), "cancelled");
	/* a write refused because the destination gave up: its ERROR, if it
	 * sent one, says why */
	if (c && (r == -EPIPE || r == -ECONNRESET) && peer_error(c, &mb, err, sizeof(err)))
		r = -EREMOTEIO;
	if (c && r != -EREMOTEIO)
		send_error(c, err);
	if (running) {
		/* post-copy: the destination ran with pages only this side had */
		char msg[sizeof(m->st.error)];
		snprintf(msg, sizeof(msg), "post-copy interrupted: %.300s; the VM ran at the "
			 "destination with pages it never got, so neither side can carry it on "
			 "(this one stays paused)", err);
		set_error(m, MIGS_FAILED, msg);
		struct call e = {0};
		(void)on_loop(m, step_end, &e);
	} else if (go) {
		/* The destination was told to run and did not confirm: it may be
		 * running.  Running here too would fork the VM; stay paused. */
		if (r == -EREMOTEIO) {
			/* it answered that it cannot run: carry on here */
			struct call a = {.was_running = paused_by_us, .take = true};
			(void)on_loop(m, step_abort, &a);
			set_error(m, MIGS_FAILED, err);
		} else {
			char msg[sizeof(m->st.error)];
			snprintf(msg, sizeof(msg), "%.300s; the destination may be running the VM, "
				 "so this one stays paused (resume it only if the destination is not "
				 "running)", err);
			set_error(m, MIGS_FAILED, msg);
			struct call e = {0};
			(void)on_loop(m, step_end, &e);
		}
	} else {
		struct call a = {.was_running = paused_by_us, .take = paused_by_us || began};
		(void)on_loop(m, step_abort, &a);
		set_error(m, r == -ECANCELED ? MIGS_CANCELLED : MIGS_FAILED, err);
	}
	log_error("migration to %s %s: %s", m->sp.url,
		  r == -ECANCELED ? "cancelled" : "failed", m->st.error);
out:
	pthread_mutex_lock(&m->lock);
	m->conn = NULL;
	if (c)
		m->st.bytes = mig_conn_bytes_out(c);
	pthread_mutex_unlock(&m->lock);
	if (c)
		mig_conn_close(c);
	free(mb.p);
	free(s.buf);
	free(s.zruns);
	free(bits);
	return NULL;
}

/* ---- the destination ---------------------------------------------------------- */

/* ---- the destination's post-copy -------------------------------------------- */

/* While post-copy runs the migration thread keeps the connection (it
 * alone reads and writes it, TLS included) and installs the pages that
 * arrive; a fault thread reads the userfaultfd and hands the pages a
 * fault needs to it through a pipe (each page asked for once); steps on
 * the loop run on a short-lived thread, because the loop itself may fault
 * on a page that is still to come (restoring a device reads its rings). */
struct pc_dst {
	struct mig_rx *rx;
	struct guest_mem *mem;
	int uffd;     /* made before the thread narrowed (-1: uffd_err says why) */
	char uffd_err[256];
	int req[2];   /* the fault thread's page numbers (u64 each) */
	int stop_efd;
	uint8_t *asked;
	pthread_t thread;
	bool started;
	/* the loop step in flight */
	struct migration *m;
	void (*fn)(struct vm *, void *);
	struct call call;
	struct snap_reader rd;
	uint8_t *state; /* STATE's payload: the reader's buffer */
	int done_efd;
	pthread_t athread;
	bool abusy;
};

static int pc_install(void *ctx, uint64_t pg, const uint8_t *data)
{
	struct pc_dst *pc = ctx;
	uint64_t addr = (uint64_t)(uintptr_t)(pc->mem->base + pg * 4096);
	for (;;) {
		int r;
		if (data) {
			struct uffdio_copy cp = {.dst = addr, .src = (uint64_t)(uintptr_t)data,
						 .len = 4096};
			r = ioctl(pc->uffd, UFFDIO_COPY, &cp);
		} else {
			struct uffdio_zeropage z = {.range = {.start = addr, .len = 4096}};
			r = ioctl(pc->uffd, UFFDIO_ZEROPAGE, &z);
		}
		if (!r || errno == EEXIST)
			return 0;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
	}
}

static void pc_fault(struct pc_dst *pc, uint64_t addr)
{
	uint8_t *base = pc->mem->base;
	uint64_t a = addr & ~4095ull;
	if (a < (uint64_t)(uintptr_t)base || a - (uint64_t)(uintptr_t)base >= pc->mem->size)
		return;
	uint64_t pg = (a - (uint64_t)(uintptr_t)base) / 4096;
	if (mig_rx_pending(pc->rx, pg)) {
		if (!(pc->asked[pg / 8] & (1u << (pg % 8)))) {
			pc->asked[pg / 8] |= (uint8_t)(1u << (pg % 8));
			ssize_t w = write(pc->req[1], &pg, sizeof(pg));
			(void)w; /* a full pipe: the page is pushed anyway */
		}
		return;
	}
	/* not to come: a page that was zero at the source and never sent
	 * (or one installed just now: then EEXIST, and a wake) */
	struct uffdio_zeropage z = {.range = {.start = a, .len = 4096}};
	if (ioctl(pc->uffd, UFFDIO_ZEROPAGE, &z) && errno == EEXIST) {
		struct uffdio_range w = {.start = a, .len = 4096};
		(void)ioctl(pc->uffd, UFFDIO_WAKE, &w);
	}
}

static void *pc_fault_thread(void *arg)
{
	struct pc_dst *pc = arg;
	pthread_setname_np(pthread_self(), "postcopy-fault");
	for (;;) {
		struct pollfd p[2] = {{.fd = pc->uffd, .events = POLLIN},
				      {.fd = pc->stop_efd, .events = POLLIN}};
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		struct uffd_msg msgs[16];
		ssize_t n = read(pc->uffd, msgs, sizeof(msgs));
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msgs[0]); i++)
			if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
				pc_fault(pc, msgs[i].arg.pagefault.address);
		/* UFFD_EVENT_REMOVE (the balloon): nothing to do */
	}
	return NULL;
}

/* POSTCOPY arrived: the pages to come are made missing (the stream may
 * have written older versions of them), guest memory is registered for
 * missing-page faults, and the fault thread starts. */
static int pc_start(struct pc_dst *pc, struct mig_rx *rx, char *err, size_t errlen)
{
	pc->rx = rx;
	pc->mem = rx->mem;
	uint8_t *base = pc->mem->base;
	int adv = pc->mem->shared ? MADV_REMOVE : MADV_DONTNEED;
	for (uint64_t pg = 0; pg < rx->npages;) {
		if (!mig_rx_pending(rx, pg)) {
			pg++;
			continue;
		}
		uint64_t end = pg;
		while (end < rx->npages && mig_rx_pending(rx, end))
			end++;
		if (madvise(base + pg * 4096, (size_t)(end - pg) * 4096, adv))
			return err_set(err, errlen, -errno, "post-copy: madvise: %s", strerror(errno));
		pg = end;
	}
	pc->asked = calloc((size_t)((rx->npages + 7) / 8), 1);
	if (!pc->asked)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	if (pc->uffd < 0)
		return err_set(err, errlen, -EPERM, "post-copy: %s", pc->uffd_err);
	int r;
	if ((r = uffd_register(pc->uffd, pc->mem, err, errlen)))
		return r;
	if (pipe2(pc->req, O_CLOEXEC | O_NONBLOCK) ||
	    (pc->stop_efd = eventfd(0, EFD_CLOEXEC)) < 0 ||
	    (pc->done_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		return err_set(err, errlen, -errno, "post-copy: %s", strerror(errno));
	rx->install = pc_install;
	rx->install_ctx = pc;
	if ((r = sec_thread_create(SEC_POSTCOPY, &pc->thread, NULL, pc_fault_thread, pc)))
		return err_set(err, errlen, -r, "post-copy: no fault thread: %s", strerror(r));
	pc->started = true;
	log_info("post-copy: %llu pages to come; guest memory served on fault",
		 (unsigned long long)rx->npending);
	return 0;
}

/* Every page is in (or the migration failed): faults go back to the kernel. */
static void pc_stop(struct pc_dst *pc)
{
	/* faults first (a loop step in flight may wait on one), then the
	 * step */
	if (pc->uffd >= 0 && pc->mem) {
		for (int i = 0; i < pc->mem->nregions; i++) {
			struct uffdio_range rg = {
				.start = (uint64_t)(uintptr_t)pc->mem->regions[i].hva,
				.len = pc->mem->regions[i].size};
			(void)ioctl(pc->uffd, UFFDIO_UNREGISTER, &rg);
		}
	}
	if (pc->started) {
		uint64_t one = 1;
		ssize_t w = write(pc->stop_efd, &one, sizeof(one));
		(void)w;
		pthread_join(pc->thread, NULL);
		pc->started = false;
	}
	if (pc->abusy) {
		pthread_join(pc->athread, NULL);
		pc->abusy = false;
	}
	if (pc->uffd >= 0)
		close(pc->uffd);
	pc->uffd = -1;
	for (int i = 0; i < 2; i++)
		if (pc->req[i] >= 0)
			close(pc->req[i]);
	pc->req[0] = pc->req[1] = -1;
	if (pc->stop_efd >= 0)
		close(pc->stop_efd);
	if (pc->done_efd >= 0)
		close(pc->done_efd);
	pc->stop_efd = pc->done_efd = -1;
	free(pc->asked);
	pc->asked = NULL;
	free(pc->state);
	pc->state = NULL;
}

static void *pc_async(void *arg)
{
	struct pc_dst *pc = arg;
	pc->call.m = pc->m;
	pc->call.rc = -ESHUTDOWN;
	snprintf(pc->call.err, sizeof(pc->call.err), "the VM has stopped");
	(void)vm_call(pc->m->vm, pc->fn, &pc->call);
	uint64_t one = 1;
	ssize_t w = write(pc->done_efd, &one, sizeof(one));
	(void)w;
	return NULL;
}

/* Run @fn on the loop without waiting; done_efd says when it is done. */
static int pc_call(struct pc_dst *pc, void (*fn)(struct vm *, void *))
{
	if (pc->abusy) {
		pthread_join(pc->athread, NULL);
		pc->abusy = false;
	}
	pc->fn = fn;
	int r = sec_thread_create(SEC_POSTCOPY, &pc->athread, NULL, pc_async, pc);
	if (r)
		return -r;
	pc->abusy = true;
	return 0;
}

/* One round of the destination's post-copy loop: forward the fault
 * thread's requests, finish a loop step that ended (READY after the
 * state, RUNNING after the run), and say whether a message can be read
 * (1) or not yet (0); -errno with err on failure. */
static int pc_poll(struct pc_dst *pc, struct mig_conn *c, int *step, struct mig_rx *rx,
		   uint64_t *t_go, char *err, size_t errlen)
{
	struct pollfd p[3] = {{.fd = mig_conn_fd(c), .events = POLLIN},
			      {.fd = pc->req[0], .events = POLLIN},
			      {.fd = pc->done_efd, .events = POLLIN}};
	if (mig_conn_pending(c))
		return 1;
	if (poll(p, 3, 1000) < 0)
		return errno == EINTR ? 0 : err_set(err, errlen, -errno, "poll: %s", strerror(errno));
	int r;
	if (p[1].revents & POLLIN) {
		uint64_t pgs[64];
		ssize_t n = read(pc->req[0], pgs, sizeof(pgs));
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(pgs[0]); i++) {
			uint8_t b[8];
			put_le64(b, pgs[i]);
			if ((r = send_msg(c, MIG_MSG_PAGE_REQ, b, sizeof(b))))
				return err_set(err, errlen, r, "asking for a page: %s", strerror(-r));
		}
	}
	if (p[2].revents & POLLIN) {
		uint64_t v;
		ssize_t n = read(pc->done_efd, &v, sizeof(v));
		(void)n;
		pthread_join(pc->athread, NULL);
		pc->abusy = false;
		if (pc->call.rc)
			return err_set(err, errlen, pc->call.rc, "%s%s",
				       *step == 1 ? "cannot apply the state: " : "", pc->call.err);
		if (*step == 1) {
			mig_rx_applied(rx);
			r = send_msg(c, MIG_MSG_READY, NULL, 0);
		} else {
			pthread_mutex_lock(&pc->m->lock);
			pc->m->st.state = MIGS_POSTCOPY;
			pc->m->st.downtime_ms = (mono_ns() - *t_go) / 1000000;
			pthread_mutex_unlock(&pc->m->lock);
			log_info("post-copy: running %llu ms after GO; %llu pages to come",
				 (unsigned long long)((mono_ns() - *t_go) / 1000000),
				 (unsigned long long)rx->npending);
			r = send_msg(c, MIG_MSG_RUNNING, NULL, 0);
		}
		*step = 0;
		if (r)
			return err_set(err, errlen, r, "writing to the source: %s", strerror(-r));
	}
	return (p[0].revents & (POLLIN | POLLHUP | POLLERR)) ? 1 : 0;
}

/* Wait for the source to connect, watching for a cancel (the process
 * ends) every half second. */
static int wait_source(struct migration *m, char *err, size_t errlen)
{
	uint64_t end = m->t0 + (uint64_t)m->rp.timeout_s * 1000000000ull;
	for (;;) {
		if (atomic_load(&m->cancel))
			return err_set(err, errlen, -ECANCELED, "cancelled");
		if (mono_ns() > end)
			return err_set(err, errlen, -ETIMEDOUT, "no source connected within %u s",
				       m->rp.timeout_s);
		struct pollfd pfd = {.fd = m->lfd, .events = POLLIN};
		int n = poll(&pfd, 1, 500);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return err_set(err, errlen, -errno, "waiting for the source: %s",
				       strerror(errno));
	}
}

static void *dest_thread(void *arg)
{
	struct migration *m = arg;
	pthread_setname_np(pthread_self(), "migrate-in");
	char err[512] = "";
	struct msgbuf mb = {0};
	struct mig_rx rx;
	mig_rx_init(&rx);
	struct mig_conn *c = NULL;
	int memfd = -1;
	struct pc_dst pc = {.uffd = -1, .req = {-1, -1}, .stop_efd = -1, .done_efd = -1, .m = m};
	bool pc_on = false;
	int taps[CONFIG_MAX_NICS], ntaps = 0; /* local mode: from HELLO, for step_build */
	int ms = (int)(m->rp.timeout_s > 2000000 ? 2000000000 : m->rp.timeout_s * 1000);
	int r = wait_source(m, err, sizeof(err));
	if (!r)
		r = mig_accept(m->lfd, &m->tls, ms, &c, err, sizeof(err));
	pthread_mutex_lock(&m->lock);
	close(m->lfd);
	m->lfd = -1;
	pthread_mutex_unlock(&m->lock);
	if (m->url.kind == MIG_URL_UNIX)
		unlink(m->url.path);
	if (r)
		goto fail;
	pthread_mutex_lock(&m->lock);
	m->conn = c;
	pthread_mutex_unlock(&m->lock);
	/* post-copy's userfaultfd, made now in case the source asks for
	 * post-copy: the stream is read under the narrow list, which cannot
	 * make one (nor open /dev/userfaultfd) */
	pc.uffd = uffd_create(pc.uffd_err, sizeof(pc.uffd_err));
	if ((r = mig_narrow(err, sizeof(err))))
		goto fail;
	(void)mig_conn_set_timeout(c, (int)(m->rp.timeout_s > 2000000 ? 2000000000
								       : m->rp.timeout_s * 1000));
	uint8_t pre[MIG_PREAMBLE_LEN];
	if ((r = mig_conn_read(c, pre, sizeof(pre)))) {
		err_set(err, sizeof(err), r, "reading the preamble: %s", strerror(-r));
		goto fail;
	}
	if ((r = mig_preamble_check(pre, err, sizeof(err))))
		goto fail;
	mig_preamble_encode(pre);
	if ((r = mig_conn_write(c, pre, sizeof(pre)))) {
		err_set(err, sizeof(err), r, "writing the preamble: %s", strerror(-r));
		goto fail;
	}
	uint64_t t_go = 0, t_apply = 0;
	int step = 0; /* post-copy: the loop step in flight (1 apply, 2 run) */
	for (;;) {
		if (pc_on) {
			r = pc_poll(&pc, c, &step, &rx, &t_go, err, sizeof(err));
			if (r < 0)
				goto fail;
			if (r == 0)
				continue; /* nothing to read on the connection yet */
		}
		struct mig_hdr h;
		int fds[1 + CONFIG_MAX_NICS], nfds = 0;
		bool first = rx.phase == MIG_RX_HELLO;
		r = recv_msg(c, &h, &mb,
			     first && m->url.kind == MIG_URL_UNIX && !m->tls.enabled ? fds : NULL, &nfds,
			     err, sizeof(err));
		if (nfds > 0) {
			if (memfd >= 0)
				close(memfd);
			memfd = fds[0];
			for (int i = 1; i < nfds; i++)
				taps[ntaps++] = fds[i];
		}
		if (r)
			goto fail;
		int a = mig_rx_msg(&rx, &h, mb.p);
		if (a < 0) {
			str_copy(err, sizeof(err), rx.err);
			r = a;
			goto fail;
		}
		pthread_mutex_lock(&m->lock);
		m->st.pass = (uint32_t)rx.passes;
		m->st.pages_data = rx.pages_data;
		m->st.pages_zero = rx.pages_zero;
		m->st.mem_bytes = rx.mem_size;
		m->st.mode = (enum mig_mode_param)rx.mode;
		pthread_mutex_unlock(&m->lock);
		if (a == MIG_RX_PEER_ERROR) {
			snprintf(err, sizeof(err), "the source: %.400s", rx.err);
			r = -EREMOTEIO;
			goto fail;
		}
		if (a == MIG_RX_DO_PASS_DONE) {
			uint8_t pd[16];
			put_le32(pd, rx.last_pass);
			put_le32(pd + 4, 0);
			put_le64(pd + 8, rx.pages_data + rx.pages_zero);
			if ((r = send_msg(c, MIG_MSG_PASS_DONE, pd, sizeof(pd))))
				goto io_fail;
		} else if (a == MIG_RX_DO_BUILD) {
			struct snap_reader rd;
			if ((r = snap_reader_open(mb.p, h.len, &rd, err, sizeof(err))))
				goto fail;
			if (rx.mode == MIG_MODE_LOCAL && memfd < 0) {
				r = err_set(err, sizeof(err), -EPROTO,
					    "a local-mode HELLO came without guest memory's memfd");
				goto fail;
			}
			if (rx.mode != MIG_MODE_LOCAL && memfd >= 0) {
				close(memfd);
				memfd = -1;
			}
			struct call b = {.rd = &rd, .memfd = memfd, .ntaps = ntaps};
			memcpy(b.taps, taps, sizeof(taps));
			ntaps = 0; /* step_build's now */
			r = on_loop(m, step_build, &b);
			for (int i = 0; i < b.ntaps; i++) /* the loop never ran it */
				close(b.taps[i]);
			tap_adopt_clear(); /* what the machine did not take */
			if (memfd >= 0) {
				close(memfd); /* the machine keeps its own */
				memfd = -1;
			}
			if (r) {
				str_copy(err, sizeof(err), b.err);
				goto fail;
			}
			if ((r = mig_rx_built(&rx, b.mem))) {
				str_copy(err, sizeof(err), rx.err);
				goto fail;
			}
			set_state(m, MIGS_ACTIVE);
			if ((r = send_msg(c, MIG_MSG_HELLO_OK, NULL, 0)))
				goto io_fail;
		} else if (a == MIG_RX_DO_POSTCOPY) {
			if ((r = pc_start(&pc, &rx, err, sizeof(err))))
				goto fail;
			pc_on = true;
		} else if (a == MIG_RX_DO_APPLY && pc_on) {
			/* pages may still have to come for it: keep serving */
			set_state(m, MIGS_SWITCHOVER);
			pc.state = malloc(h.len);
			if (!pc.state) {
				r = err_set(err, sizeof(err), -ENOMEM, "out of memory");
				goto fail;
			}
			memcpy(pc.state, mb.p, h.len);
			if ((r = snap_reader_open(pc.state, h.len, &pc.rd, err, sizeof(err))))
				goto fail;
			memset(&pc.call, 0, sizeof(pc.call));
			pc.call.rd = &pc.rd;
			step = 1;
			if ((r = pc_call(&pc, step_apply))) {
				err_set(err, sizeof(err), r, "no thread: %s", strerror(-r));
				goto fail;
			}
		} else if (a == MIG_RX_DO_RUN && pc_on) {
			t_go = mono_ns();
			memset(&pc.call, 0, sizeof(pc.call));
			step = 2;
			if ((r = pc_call(&pc, step_run))) {
				err_set(err, sizeof(err), r, "no thread: %s", strerror(-r));
				goto fail;
			}
		} else if (a == MIG_RX_DO_FINISH) {
			pc_stop(&pc);
			pc_on = false;
			if ((r = send_msg(c, MIG_MSG_DONE, NULL, 0)))
				goto io_fail;
			break;
		} else if (a == MIG_RX_DO_APPLY) {
			set_state(m, MIGS_SWITCHOVER);
			struct snap_reader rd;
			if ((r = snap_reader_open(mb.p, h.len, &rd, err, sizeof(err))))
				goto fail;
			struct call ap = {.rd = &rd};
			t_apply = mono_ns();
			if ((r = on_loop(m, step_apply, &ap))) {
				snprintf(err, sizeof(err), "cannot apply the state: %s", ap.err);
				goto fail;
			}
			mig_rx_applied(&rx);
			t_apply = mono_ns() - t_apply;
			if ((r = send_msg(c, MIG_MSG_READY, NULL, 0)))
				goto io_fail;
		} else if (a == MIG_RX_DO_RUN) {
			t_go = mono_ns();
			struct call rn = {0};
			if ((r = on_loop(m, step_run, &rn))) {
				str_copy(err, sizeof(err), rn.err);
				goto fail;
			}
			(void)send_msg(c, MIG_MSG_RUNNING, NULL, 0);
			break;
		}
	}
	pthread_mutex_lock(&m->lock);
	m->st.state = MIGS_COMPLETED;
	m->st.bytes = mig_conn_bytes_in(c);
	m->st.elapsed_ms = (mono_ns() - m->t0) / 1000000;
	if (!rx.postcopy) /* GO to running, this side's share (post-copy: set at RUNNING) */
		m->st.downtime_ms = (mono_ns() - t_go) / 1000000;
	m->conn = NULL;
	pthread_mutex_unlock(&m->lock);
	log_info("incoming migration completed: %llu MiB received (%llu pages, %llu zero) in "
		 "%llu passes; state applied in %llu ms, GO to running %llu ms%s; running",
		 (unsigned long long)(mig_conn_bytes_in(c) >> 20),
		 (unsigned long long)rx.pages_data, (unsigned long long)rx.pages_zero,
		 (unsigned long long)rx.passes, (unsigned long long)(t_apply / 1000000),
		 (unsigned long long)((mono_ns() - t_go) / 1000000),
		 rx.verified ? ", every page verified" : "");
	mig_conn_close(c);
	pc_stop(&pc); /* pre-copy: the userfaultfd made in case */
	mig_rx_free(&rx);
	free(mb.p);
	return NULL;
io_fail:
	err_set(err, sizeof(err), r, "writing to the source: %s", strerror(-r));
fail:
	if (c && r != -EREMOTEIO)
		send_error(c, err);
	if (memfd >= 0)
		close(memfd);
	for (int i = 0; i < ntaps; i++)
		close(taps[i]);
	tap_adopt_clear();
	bool ran = pc.rx && m->st.state == MIGS_POSTCOPY;
	pc_stop(&pc); /* blocked faults are let go: the VM is stopped next */
	if (ran) {
		char msg[sizeof(err)];
		snprintf(msg, sizeof(msg), "post-copy interrupted after the VM ran here: %.300s; "
			 "pages it never got were only at the source, so it is stopped", err);
		str_copy(err, sizeof(err), msg);
	}
	set_error(m, MIGS_FAILED, err);
	log_error("incoming migration failed: %s", err);
	pthread_mutex_lock(&m->lock);
	m->conn = NULL;
	pthread_mutex_unlock(&m->lock);
	if (c)
		mig_conn_close(c);
	mig_rx_free(&rx);
	free(mb.p);
	/* nothing ran here: end the process with an error */
	vm_shutdown(m->vm, VMM_EXIT_ERROR);
	return NULL;
}

/* ---- start, stop ----------------------------------------------------------------- */

static int tls_from(const struct mig_tls_params *p, struct mig_tls *t, char *err, size_t errlen)
{
	memset(t, 0, sizeof(*t));
	if (!p->enabled)
		return 0;
	if (!p->cert[0] || !p->key[0] || !p->ca[0])
		return err_set(err, errlen, -EINVAL, "tls needs cert, key and ca");
	t->enabled = true;
	str_copy(t->cert, sizeof(t->cert), p->cert);
	str_copy(t->key, sizeof(t->key), p->key);
	str_copy(t->ca, sizeof(t->ca), p->ca);
	str_copy(t->server_name, sizeof(t->server_name), p->server_name);
	return 0;
}

static struct migration *mig_new(struct vm *vm, bool incoming)
{
	struct migration *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->vm = vm;
	m->incoming = incoming;
	m->lfd = -1;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	m->st.state = MIGS_SETUP;
	m->st.incoming = incoming;
	m->t0 = mono_ns();
	return m;
}

static int start_thread(struct migration *m, void *(*fn)(void *), char *err, size_t errlen)
{
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 << 10);
	int r = sec_thread_create(SEC_MIGRATION, &m->thread, &attr, fn, m);
	pthread_attr_destroy(&attr);
	if (r)
		return err_set(err, errlen, -r, "cannot start the migration thread: %s", strerror(r));
	m->thread_started = true;
	return 0;
}

int mig_send_start(struct vm *vm, const struct vm_config *cfg, const struct mig_send_params *p,
		   struct migration **out, char *err, size_t errlen)
{
	*out = NULL;
	struct machine *mc = vm_machine(vm);
	if (!mc)
		return err_set(err, errlen, -EINVAL, "the microVM is not running");
	struct mig_url url;
	int r = mig_url_parse(p->url, &url, err, errlen);
	if (r)
		return r;
	if ((unsigned)p->mode > MIGP_LOCAL)
		return err_set(err, errlen, -EINVAL, "unknown mode");
	if (p->mode == MIGP_LOCAL) {
		if (url.kind != MIG_URL_UNIX || p->tls.enabled)
			return err_set(err, errlen, -EINVAL, "local mode hands guest memory over a "
					 "Unix socket: it needs a unix: URL and no TLS");
		if (!machine_guest_mem(mc)->shared)
			return err_set(err, errlen, -EINVAL,
				       "local mode needs guest memory in a memfd: boot the VM with "
				       "--mem-shared (machine-config \"mem_shared\": true); a VM "
				       "restored from a snapshot's memory file maps it private");
	}
	struct migration *m = mig_new(vm, false);
	if (!m)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	m->sp = *p;
	if (!m->sp.downtime_limit_ms)
		m->sp.downtime_limit_ms = MIG_DEFAULT_DOWNTIME_MS;
	m->url = url;
	m->cfg = malloc(sizeof(*m->cfg));
	if (!m->cfg || (r = tls_from(&p->tls, &m->tls, err, errlen))) {
		if (!m->cfg)
			r = err_set(err, errlen, -ENOMEM, "out of memory");
		mig_destroy(m);
		return r;
	}
	*m->cfg = *cfg;
	m->st.mode = p->mode;
	m->st.mem_bytes = cfg->mem_size;
	m->st.downtime_limit_ms = m->sp.downtime_limit_ms;
	str_copy(m->st.url, sizeof(m->st.url), p->url);
	if ((r = start_thread(m, source_thread, err, errlen))) {
		mig_destroy(m);
		return r;
	}
	static const char *const modes[] = {"pre-copy", "post-copy", "auto", "local"};
	log_info("migration to %s started (%s, downtime limit %u ms)", p->url, modes[p->mode],
		 m->sp.downtime_limit_ms);
	*out = m;
	return 0;
}

int mig_recv_start(struct vm *vm, const struct mig_recv_params *p, struct migration **out,
		   char *err, size_t errlen)
{
	*out = NULL;
	struct migration *m = mig_new(vm, true);
	if (!m)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	m->rp = *p;
	if (!m->rp.timeout_s)
		m->rp.timeout_s = MIG_DEFAULT_TIMEOUT_S;
	int r = mig_url_parse(p->url, &m->url, err, errlen);
	if (!r)
		r = tls_from(&p->tls, &m->tls, err, errlen);
	if (!r)
		r = mig_listen(&m->url, &m->lfd, err, errlen);
	if (r) {
		mig_destroy(m);
		return r;
	}
	str_copy(m->st.url, sizeof(m->st.url), p->url);
	if ((r = start_thread(m, dest_thread, err, errlen))) {
		mig_destroy(m);
		return r;
	}
	log_info("waiting for an incoming migration on %s", p->url);
	*out = m;
	return 0;
}

void mig_destroy(struct migration *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	atomic_store(&m->cancel, true);
	if (m->conn)
		mig_conn_shutdown(m->conn);
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	if (m->thread_started)
		pthread_join(m->thread, NULL);
	if (m->lfd >= 0) {
		close(m->lfd);
		if (m->url.kind == MIG_URL_UNIX)
			unlink(m->url.path);
	}
	free(m->cfg);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	free(m);
}
