/* SPDX-License-Identifier: MIT */
/*
 * virtio_blk.c - virtio block device; see virtio_blk.h.
 */
#include "virtio_blk.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/epoll.h>
#include <sys/stat.h>

#include "../../event/loop.h"
#include "../../util/bytes.h"
#include "../../util/str.h"

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

#define BLK_HDR_SIZE 16
#define BLK_DWZ_SEG_SIZE 16

struct dwz_seg {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

/* One request in flight (a slot of the pool). */
struct virtio_blk_req {
	struct blk_io io;
	struct virtio_blk *blk;
	struct virtio_blk_req *next_free;
	uint32_t gen;
	uint16_t head;
	uint32_t type;
	uint8_t *status;   /* last writable byte of the chain */
	uint32_t used_ok;  /* used length on success */
	uint64_t expect;   /* READ/WRITE: bytes */
	uint64_t sector;
	unsigned dwz_n, dwz_i;
	struct dwz_seg dwz[VIRTIO_BLK_DWZ_MAX_SEG];
	struct iovec iov[VIRTQ_MAX_SEGS];
};

static struct virtio_blk *to_blk(struct virtio_dev *d)
{
	return container_of(d, struct virtio_blk, vdev);
}

/* ---- device ops ---- */

static uint64_t blk_features(struct virtio_dev *d)
{
	struct virtio_blk *b = to_blk(d);
	uint64_t f = (1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_BLK_SIZE) |
		     (1ULL << VIRTIO_BLK_F_FLUSH);
	if (b->be->readonly)
		f |= 1ULL << VIRTIO_BLK_F_RO;
	else
		f |= (1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES);
	return f;
}

static void blk_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	struct virtio_blk *b = to_blk(d);
	uint8_t *out = data;
	for (uint32_t i = 0; i < len; i++) {
		uint64_t o = (uint64_t)off + i;
		out[i] = o < VIRTIO_BLK_CONFIG_SIZE ? b->config[o] : 0;
	}
}

static void blk_config_write(struct virtio_dev *d, uint32_t off, const void *data, uint32_t len)
{
	/* Every implemented field is read-only (no CONFIG_WCE). */
	to_blk(d)->m.cfg_fails++;
}

static int blk_activate(struct virtio_dev *d)
{
	return 0;
}

static int blk_reset(struct virtio_dev *d)
{
	struct virtio_blk *b = to_blk(d);
	b->gen++;
	b->slots_full = false;
	/* A held chain belongs to the old ring: forget it. */
	b->held = false;
	virtio_deferred_cancel(&b->deferred);
	if (b->inflight == 0)
		return 0;
	b->resetting = true;
	return -EINPROGRESS;
}

/* ---- requests ---- */

/* Fill @iov with the bytes [off, off+len) of the readable (or writable)
 * part of @c.  Returns the number of iovecs (zero-length pieces skipped). */
static unsigned chain_iov(const struct virtq_chain *c, bool writable, uint64_t off, uint64_t len,
			  struct iovec *iov)
{
	unsigned n = 0;
	unsigned first = writable ? c->nread : 0, end = writable ? c->nsegs : c->nread;
	for (unsigned i = first; i < end && len; i++) {
		uint64_t sl = c->segs[i].len;
		if (off >= sl) {
			off -= sl;
			continue;
		}
		uint64_t take = sl - off < len ? sl - off : len;
		iov[n].iov_base = c->segs[i].hva + off;
		iov[n].iov_len = (size_t)take;
		n++;
		len -= take;
		off = 0;
	}
	return n;
}

/* The last byte of the writable part, or NULL if there is none. */
static uint8_t *chain_status(const struct virtq_chain *c)
{
	for (unsigned i = c->nsegs; i > c->nread; i--)
		if (c->segs[i - 1].len)
			return c->segs[i - 1].hva + c->segs[i - 1].len - 1;
	return NULL;
}

#define TYPE_UNREAD UINT32_MAX /* the header could not be read */

/* Count a request of @type that completed with @st, having moved @bytes
 * (d->lock held).  @host: an IOERR came from the host (the back end
 * refused or failed the request), not from checking the request. */
static void count_done(struct virtio_blk *b, uint32_t type, uint8_t st, uint64_t bytes,
		       bool host)
{
	struct virtio_blk_metrics *m = &b->m;
	if (st == VIRTIO_BLK_S_UNSUPP) {
		m->unsupported_reqs_count++;
		return;
	}
	if (st != VIRTIO_BLK_S_OK) {
		if (host)
			m->execute_fails++;
		else
			m->invalid_reqs_count++;
		return;
	}
	switch (type) {
	case VIRTIO_BLK_T_IN:
		m->read_count++;
		m->read_bytes += bytes;
		break;
	case VIRTIO_BLK_T_OUT:
		m->write_count++;
		m->write_bytes += bytes;
		break;
	case VIRTIO_BLK_T_FLUSH:
		m->flush_count++;
		break;
	case VIRTIO_BLK_T_GET_ID:
		m->get_id_count++;
		break;
	case VIRTIO_BLK_T_DISCARD:
		m->discard_count++;
		break;
	case VIRTIO_BLK_T_WRITE_ZEROES:
		m->write_zeroes_count++;
		break;
	}
}

static void mark_broken(struct virtio_blk *b, const char *why)
{
	if (!b->vdev.broken)
		b->m.event_fails++;
	virtio_dev_mark_broken(&b->vdev, why);
}

/* Finish a request of @type synchronously: status, used element, counts
 * (@host as for count_done).  d->lock held. */
static void finish_sync(struct virtio_blk *b, uint32_t type, uint16_t head, uint8_t *status,
			uint8_t st, uint32_t used, bool host)
{
	if (status)
		*status = st;
	count_done(b, type, st, 0, host);
	if (virtq_push(&b->vdev.vqs[0], head, status ? used : 0) < 0)
		mark_broken(b, "push of a head not in flight");
}

/* sector + bytes within the disk, overflow-safe. */
static bool range_ok(const struct virtio_blk *b, uint64_t sector, uint64_t bytes)
{
	return sector <= b->capacity && bytes / VIRTIO_BLK_SECTOR <= b->capacity - sector;
}

static void req_done(struct blk_io *io, int64_t res);

static struct virtio_blk_req *req_alloc(struct virtio_blk *b)
{
	struct virtio_blk_req *r = b->free_reqs;
	if (r) {
		b->free_reqs = r->next_free;
		r->next_free = NULL;
		r->dwz_n = r->dwz_i = 0;
		b->inflight++;
	}
	return r;
}

static void req_free(struct virtio_blk *b, struct virtio_blk_req *r)
{
	r->next_free = b->free_reqs;
	b->free_reqs = r;
	b->inflight--;
}

/* Start the current discard/write-zeroes segment of @r. */
static int dwz_submit(struct virtio_blk *b, struct virtio_blk_req *r)
{
	const struct dwz_seg *s = &r->dwz[r->dwz_i];
	r->io = (struct blk_io){
		.op = r->type == VIRTIO_BLK_T_DISCARD ? BLK_OP_DISCARD : BLK_OP_WRITE_ZEROES,
		.offset = s->sector * VIRTIO_BLK_SECTOR,
		.len = (uint64_t)s->num_sectors * VIRTIO_BLK_SECTOR,
		.unmap = (s->flags & VIRTIO_BLK_WZ_F_UNMAP) != 0,
		.done = req_done,
	};
	return blk_submit(b->be, &r->io);
}

/* Validate the discard / write-zeroes payload of @c into @r.
 * Returns a status (OK: @r->dwz filled). */
static uint8_t dwz_parse(struct virtio_blk *b, const struct virtq_chain *c, uint32_t type,
			 struct virtio_blk_req *r)
{
	bool discard = type == VIRTIO_BLK_T_DISCARD;
	uint32_t data_out = c->read_len - BLK_HDR_SIZE;
	if (c->write_len != 1 || data_out == 0 || data_out % BLK_DWZ_SEG_SIZE)
		return VIRTIO_BLK_S_IOERR;
	uint32_t n = data_out / BLK_DWZ_SEG_SIZE;
	if (n > VIRTIO_BLK_DWZ_MAX_SEG)
		return VIRTIO_BLK_S_IOERR;
	uint8_t st = VIRTIO_BLK_S_OK;
	for (uint32_t i = 0; i < n; i++) {
		uint8_t raw[BLK_DWZ_SEG_SIZE];
		virtq_chain_read(c, BLK_HDR_SIZE + i * BLK_DWZ_SEG_SIZE, raw, sizeof(raw));
		struct dwz_seg s;
		uint64_t sec;
		uint32_t num, flags;
		memcpy(&sec, raw, 8);
		memcpy(&num, raw + 8, 4);
		memcpy(&flags, raw + 12, 4);
		s.sector = le64toh(sec);
		s.num_sectors = le32toh(num);
		s.flags = le32toh(flags);
		/* §5.2.6.2: unknown flags, or unmap on a discard: UNSUPP. */
		if ((s.flags & ~(uint32_t)VIRTIO_BLK_WZ_F_UNMAP) ||
		    (discard && (s.flags & VIRTIO_BLK_WZ_F_UNMAP))) {
			st = VIRTIO_BLK_S_UNSUPP;
			continue;
		}
		if (s.num_sectors == 0 || s.num_sectors > VIRTIO_BLK_DWZ_MAX_SECTORS ||
		    !range_ok(b, s.sector, (uint64_t)s.num_sectors * VIRTIO_BLK_SECTOR)) {
			if (st == VIRTIO_BLK_S_OK)
				st = VIRTIO_BLK_S_IOERR;
			continue;
		}
		r->dwz[i] = s;
	}
	if (st == VIRTIO_BLK_S_OK) {
		r->dwz_n = n;
		r->dwz_i = 0;
	}
	return st;
}

enum chain_result { CHAIN_DONE, CHAIN_SUBMITTED };

/* Handle one popped chain.  d->lock held, a pool slot is free. */
static enum chain_result handle_chain(struct virtio_blk *b, const struct virtq_chain *c)
{
	struct virtio_dev *d = &b->vdev;
	uint8_t *status = chain_status(c);
	if (!status) {
		/* Nowhere to put a status: give the chain back untouched. */
		log_ratelimited(&b->rl, LOG_WARN, "virtio-blk: request without a status byte");
		finish_sync(b, TYPE_UNREAD, c->head, NULL, VIRTIO_BLK_S_IOERR, 0, false);
		return CHAIN_DONE;
	}
	/* Used length on failure: only the status byte counts as written when
	 * it is the whole writable part (§2.7.8: len bytes from the start). */
	uint32_t used_err = c->write_len == 1 ? 1 : 0;
	if (c->read_len < BLK_HDR_SIZE) {
		log_ratelimited(&b->rl, LOG_WARN, "virtio-blk: request header shorter than 16 bytes");
		finish_sync(b, TYPE_UNREAD, c->head, status, VIRTIO_BLK_S_IOERR, used_err, false);
		return CHAIN_DONE;
	}
	uint8_t hdr[BLK_HDR_SIZE];
	virtq_chain_read(c, 0, hdr, sizeof(hdr));
	uint32_t type;
	uint64_t sector;
	memcpy(&type, hdr, 4);
	memcpy(&sector, hdr + 8, 8);
	type = le32toh(type);
	sector = le64toh(sector);
	uint32_t data_out = c->read_len - BLK_HDR_SIZE; /* readable bytes after the header */
	uint32_t data_in = c->write_len - 1;             /* writable bytes before the status */
	bool ro = b->be->readonly;

	struct virtio_blk_req *r = NULL;
	uint8_t st = VIRTIO_BLK_S_IOERR;
	switch (type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT: {
		bool in = type == VIRTIO_BLK_T_IN;
		uint32_t len = in ? data_in : data_out;
		if ((in ? data_out : data_in) != 0 || len % VIRTIO_BLK_SECTOR ||
		    !range_ok(b, sector, len) || (!in && ro))
			break;
		if (len == 0) {
			finish_sync(b, type, c->head, status, VIRTIO_BLK_S_OK, in ? 1 + data_in : 1,
				    false);
			return CHAIN_DONE;
		}
		r = req_alloc(b);
		r->io = (struct blk_io){
			.op = in ? BLK_OP_READ : BLK_OP_WRITE,
			.offset = sector * VIRTIO_BLK_SECTOR,
			.iov = r->iov,
			.done = req_done,
		};
		r->io.iovcnt = chain_iov(c, in, in ? 0 : BLK_HDR_SIZE, len, r->iov);
		r->expect = len;
		r->used_ok = in ? c->write_len : 1;
		break;
	}
	case VIRTIO_BLK_T_FLUSH:
		if (data_in || data_out || b->flush_failed)
			break;
		r = req_alloc(b);
		r->io = (struct blk_io){.op = BLK_OP_FLUSH, .done = req_done};
		r->used_ok = 1;
		break;
	case VIRTIO_BLK_T_GET_ID: {
		if (data_out || data_in == 0)
			break;
		uint32_t n = data_in < VIRTIO_BLK_ID_BYTES ? data_in : VIRTIO_BLK_ID_BYTES;
		virtq_chain_write(c, 0, b->serial, n);
		finish_sync(b, type, c->head, status, VIRTIO_BLK_S_OK, n == data_in ? n + 1 : n,
			    false);
		return CHAIN_DONE;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES: {
		unsigned feat = type == VIRTIO_BLK_T_DISCARD ? VIRTIO_BLK_F_DISCARD
							     : VIRTIO_BLK_F_WRITE_ZEROES;
		if (ro)
			break; /* IOERR, nothing reaches the file */
		if (!(d->driver_features & (1ULL << feat))) {
			st = VIRTIO_BLK_S_UNSUPP;
			break;
		}
		r = req_alloc(b);
		st = dwz_parse(b, c, type, r);
		if (st != VIRTIO_BLK_S_OK) {
			req_free(b, r);
			r = NULL;
		} else {
			r->used_ok = 1; /* the status byte: its whole writable part */
		}
		break;
	}
	default:
		st = VIRTIO_BLK_S_UNSUPP;
		break;
	}
	if (!r) {
		if (st == VIRTIO_BLK_S_IOERR)
			log_ratelimited(&b->rl, LOG_DEBUG,
					"virtio-blk: rejected request type %u sector %llu "
					"(out %u in %u bytes)",
					type, (unsigned long long)sector, data_out, data_in);
		finish_sync(b, type, c->head, status, st, used_err, false);
		return CHAIN_DONE;
	}
	r->gen = b->gen;
	r->head = c->head;
	r->type = type;
	r->status = status;
	r->sector = sector;
	int rc = (type == VIRTIO_BLK_T_DISCARD || type == VIRTIO_BLK_T_WRITE_ZEROES)
			 ? dwz_submit(b, r)
			 : blk_submit(b->be, &r->io);
	if (rc < 0) {
		log_ratelimited(&b->rl, LOG_WARN, "virtio-blk: %s: request type %u refused: %s",
				b->be->name, type, strerror(-rc));
		req_free(b, r);
		finish_sync(b, type, c->head, status, VIRTIO_BLK_S_IOERR, used_err, true);
		return CHAIN_DONE;
	}
	return CHAIN_SUBMITTED;
}

/* What the rate limiter charges for @c: the data length of a read or a
 * write (taken from the chain as the guest built it; a malformed request
 * is charged too, it cost the host work), nothing for other types. */
static uint64_t chain_bytes(const struct virtq_chain *c)
{
	if (c->read_len < BLK_HDR_SIZE)
		return 0;
	uint8_t raw[4];
	virtq_chain_read(c, 0, raw, sizeof(raw));
	uint32_t type = get_le32(raw);
	if (type == VIRTIO_BLK_T_IN)
		return c->write_len ? c->write_len - 1 : 0;
	if (type == VIRTIO_BLK_T_OUT)
		return c->read_len - BLK_HDR_SIZE;
	return 0;
}

/* Take chains from the ring while slots are free, at most
 * VIRTIO_BLK_BUDGET of them (the loop continues the pass), and while the
 * rate limiter lets them through: a chain it refuses is held in b->chain
 * and handled first when the limiter's timer has fired.  d->lock held. */
static void process_queue(struct virtio_blk *b)
{
	struct virtio_dev *d = &b->vdev;
	struct virtq *q = &d->vqs[0];
	bool pushed = false, submitted = false;
	uint64_t taken = 0;
	if (!q->active || d->broken || b->resetting || b->quiesced)
		return;
	b->m.queue_event_count++;
	for (;;) {
		while (b->inflight < b->max_inflight) {
			if (!b->held) {
				int r = virtq_pop(q, &b->chain);
				if (r < 0) {
					mark_broken(b, "invalid descriptor chain");
					goto out;
				}
				if (r == 0) {
					if (taken == 0)
						b->m.no_avail_buffer++;
					break;
				}
			}
			if (b->limited && !rate_limiter_consume(&b->limiter, chain_bytes(&b->chain), 1)) {
				/* Resumed by the limiter's timer (limiter_cb). */
				b->held = true;
				b->m.rate_limiter_throttled_events++;
				goto out;
			}
			b->held = false;
			if (handle_chain(b, &b->chain) == CHAIN_SUBMITTED)
				submitted = true;
			else
				pushed = true;
			if (d->broken)
				goto out;
			/* Every chain counts, also those answered at once:
			 * they are what a driver can re-post endlessly. */
			if (virtio_deferred_yield(&b->deferred, 0, ++taken, VIRTIO_BLK_BUDGET)) {
				b->m.budget_yields++;
				goto out;
			}
		}
		if (b->inflight >= b->max_inflight) {
			/* Resumed by the next completion. */
			b->slots_full = true;
			b->m.io_engine_throttled_events++;
			break;
		}
		if (!virtq_enable_notify(q))
			break;
	}
out:
	if (submitted)
		blk_commit(b->be);
	if (pushed && !d->broken)
		virtio_dev_signal_used(d, 0);
}

static void blk_queue_notify(struct virtio_dev *d, uint16_t q)
{
	if (q == 0)
		process_queue(to_blk(d));
}

static const char *op_name(uint32_t type)
{
	switch (type) {
	case VIRTIO_BLK_T_IN:
		return "read";
	case VIRTIO_BLK_T_OUT:
		return "write";
	case VIRTIO_BLK_T_FLUSH:
		return "flush";
	case VIRTIO_BLK_T_DISCARD:
		return "discard";
	default:
		return "write-zeroes";
	}
}

/* A back-end operation of request @r finished (loop thread, no lock held). */
static void req_done(struct blk_io *io, int64_t res)
{
	struct virtio_blk_req *r = container_of(io, struct virtio_blk_req, io);
	struct virtio_blk *b = r->blk;
	struct virtio_dev *d = &b->vdev;
	bool reset_done = false;

	pthread_mutex_lock(&d->lock);
	bool live = r->gen == b->gen && !d->broken;
	uint8_t st = VIRTIO_BLK_S_OK;
	switch (r->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		if (res != (int64_t)r->expect)
			st = VIRTIO_BLK_S_IOERR;
		break;
	case VIRTIO_BLK_T_FLUSH:
		if (res < 0) {
			st = VIRTIO_BLK_S_IOERR;
			b->flush_failed = true;
		}
		break;
	case VIRTIO_BLK_T_DISCARD:
		/* Discarding is a hint (§5.2.6.2: the device MAY deallocate). */
		if (res < 0 && res != -EOPNOTSUPP)
			st = VIRTIO_BLK_S_IOERR;
		break;
	default:
		if (res < 0)
			st = VIRTIO_BLK_S_IOERR;
		break;
	}
	if (st != VIRTIO_BLK_S_OK)
		log_ratelimited(&b->rl, LOG_WARN, "virtio-blk: %s: %s at sector %llu failed: %s",
				b->be->name, op_name(r->type),
				(unsigned long long)(r->dwz_n ? r->dwz[r->dwz_i].sector : r->sector),
				res < 0 ? strerror((int)-res) : "short transfer");

	if (live && st == VIRTIO_BLK_S_OK && r->dwz_n && r->dwz_i + 1 < r->dwz_n) {
		/* Next discard / write-zeroes segment. */
		r->dwz_i++;
		int rc = dwz_submit(b, r);
		if (rc == 0) {
			blk_commit(b->be);
			pthread_mutex_unlock(&d->lock);
			return;
		}
		st = VIRTIO_BLK_S_IOERR;
	}
	if (live) {
		*r->status = st;
		count_done(b, r->type, st,
			   r->type == VIRTIO_BLK_T_IN || r->type == VIRTIO_BLK_T_OUT ? r->expect : 0,
			   true);
		if (virtq_push(&d->vqs[0], r->head, st == VIRTIO_BLK_S_OK ? r->used_ok
									   : (r->used_ok == 1 ? 1 : 0)) < 0)
			mark_broken(b, "push of a head not in flight");
		else
			virtio_dev_signal_used(d, 0);
	}
	r->dwz_n = 0;
	req_free(b, r);
	if (b->resetting) {
		if (b->inflight == 0) {
			b->resetting = false;
			reset_done = true;
		}
	} else if (b->slots_full && live) {
		b->slots_full = false;
		process_queue(b);
	}
	pthread_mutex_unlock(&d->lock);
	if (reset_done)
		virtio_dev_reset_done(d);
}

/* The rate limiter's timer fired (loop thread): retry the held request. */
static void limiter_cb(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct virtio_blk *b = ctx;
	struct virtio_dev *d = &b->vdev;
	pthread_mutex_lock(&d->lock);
	rate_limiter_timer_fired(&b->limiter);
	b->m.rate_limiter_event_count++;
	virtio_dev_queue_notify(d, 0);
	pthread_mutex_unlock(&d->lock);
}

static const struct virtio_dev_ops blk_ops = {
	.features = blk_features,
	.config_read = blk_config_read,
	.config_write = blk_config_write,
	.activate = blk_activate,
	.reset = blk_reset,
	.queue_notify = blk_queue_notify,
};

static void build_config(struct virtio_blk *b)
{
	uint8_t *c = b->config;
	memset(c, 0, sizeof(b->config));
	put_le64(c + VIRTIO_BLK_CFG_CAPACITY, b->capacity);
	put_le32(c + VIRTIO_BLK_CFG_SEG_MAX, VIRTIO_BLK_SEG_MAX);
	put_le32(c + VIRTIO_BLK_CFG_BLK_SIZE, VIRTIO_BLK_SECTOR);
	put_le16(c + VIRTIO_BLK_CFG_NUM_QUEUES, 1);
	if (!b->be->readonly) {
		put_le32(c + VIRTIO_BLK_CFG_MAX_DISCARD_SECTORS, VIRTIO_BLK_DWZ_MAX_SECTORS);
		put_le32(c + VIRTIO_BLK_CFG_MAX_DISCARD_SEG, VIRTIO_BLK_DWZ_MAX_SEG);
		put_le32(c + VIRTIO_BLK_CFG_DISCARD_ALIGNMENT, VIRTIO_BLK_DISCARD_ALIGNMENT);
		put_le32(c + VIRTIO_BLK_CFG_MAX_WZ_SECTORS, VIRTIO_BLK_DWZ_MAX_SECTORS);
		put_le32(c + VIRTIO_BLK_CFG_MAX_WZ_SEG, VIRTIO_BLK_DWZ_MAX_SEG);
		c[VIRTIO_BLK_CFG_WZ_MAY_UNMAP] = 1;
	}
}

int virtio_blk_init(struct virtio_blk *b, struct blk_backend *be, bool own_be, const char *id,
		    const struct guest_mem *mem, struct loop *loop, char *err, size_t errlen)
{
	memset(b, 0, sizeof(*b));
	if (!id)
		id = "visor-disk";
	size_t idlen = strlen(id);
	if (idlen > VIRTIO_BLK_ID_BYTES) {
		snprintf(err, errlen, "disk id \"%s\" is longer than %d bytes", id,
			 VIRTIO_BLK_ID_BYTES);
		return -EINVAL;
	}
	for (size_t i = 0; i < idlen; i++) {
		if (id[i] < 0x20 || id[i] > 0x7e) {
			snprintf(err, errlen, "disk id must be printable ASCII");
			return -EINVAL;
		}
	}
	memcpy(b->serial, id, idlen);
	b->be = be;
	b->quiesce_timeout_ms = VIRTIO_BLK_QUIESCE_TIMEOUT_MS;
	b->capacity = be->size / VIRTIO_BLK_SECTOR;
	if (b->capacity == 0) {
		snprintf(err, errlen, "%s: disk smaller than one 512-byte sector", be->name);
		return -EINVAL;
	}
	if (be->size % VIRTIO_BLK_SECTOR)
		log_warn("%s: size is not a multiple of 512; the last %u bytes are not visible",
			 be->name, (unsigned)(be->size % VIRTIO_BLK_SECTOR));
	b->max_inflight = be->capacity < VIRTIO_BLK_QUEUE_MAX ? be->capacity : VIRTIO_BLK_QUEUE_MAX;
	b->pool_size = b->max_inflight;
	b->reqs = calloc(b->max_inflight, sizeof(*b->reqs));
	if (!b->reqs) {
		snprintf(err, errlen, "virtio-blk: out of memory");
		return -ENOMEM;
	}
	for (unsigned i = 0; i < b->max_inflight; i++) {
		b->reqs[i].blk = b;
		b->reqs[i].next_free = i + 1 < b->max_inflight ? &b->reqs[i + 1] : NULL;
	}
	b->free_reqs = &b->reqs[0];
	build_config(b);
	int r = virtio_dev_init(&b->vdev, &blk_ops, "virtio-blk", VIRTIO_ID_BLOCK, 1,
				VIRTIO_BLK_QUEUE_MAX, mem, loop);
	if (r < 0) {
		snprintf(err, errlen, "virtio-blk: init: %s", strerror(-r));
		free(b->reqs);
		b->reqs = NULL;
		return r;
	}
	r = virtio_deferred_init(&b->deferred, &b->vdev);
	if (r < 0) {
		snprintf(err, errlen, "virtio-blk: deferred work: %s", strerror(-r));
		virtio_dev_destroy(&b->vdev);
		free(b->reqs);
		b->reqs = NULL;
		return r;
	}
	if (loop && be->ops->attach) {
		r = be->ops->attach(be, loop);
		if (r < 0) {
			snprintf(err, errlen, "%s: cannot watch the back end: %s", be->name,
				 strerror(-r));
			virtio_deferred_fini(&b->deferred);
			virtio_dev_destroy(&b->vdev);
			free(b->reqs);
			b->reqs = NULL;
			return r;
		}
	}
	b->own_be = own_be;
	return 0;
}

int virtio_blk_create(struct virtio_blk *b, const char *path, bool readonly, const char *id,
		      const struct guest_mem *mem, struct loop *loop, char *err, size_t errlen)
{
	struct blk_backend *be;
	int r = blk_uring_open(&be, path, readonly, 0, VIRTIO_BLK_QUEUE_MAX, err, errlen);
	if (r < 0)
		return r;
	r = virtio_blk_init(b, be, true, id, mem, loop, err, errlen);
	if (r < 0)
		blk_destroy(be);
	return r;
}

/* Wait until no request is in flight (loop thread, d->lock not held),
 * completing them through the back end's poll: their done callbacks push
 * them to the used ring and signal as usual.  0, -ETIMEDOUT after
 * @timeout_ms, -EOPNOTSUPP if the back end cannot be waited for, or the
 * back end's -errno. */
static int wait_idle(struct virtio_blk *b, unsigned timeout_ms)
{
	struct virtio_dev *d = &b->vdev;
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000u;
	for (;;) {
		pthread_mutex_lock(&d->lock);
		unsigned n = b->inflight;
		struct blk_backend *be = b->be;
		pthread_mutex_unlock(&d->lock);
		if (n == 0)
			return 0;
		if (!be->ops->poll)
			return -EOPNOTSUPP;
		uint64_t now = now_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		/* Slices of at most 100 ms: a back end whose submission the
		 * kernel refused is retried by every poll. */
		uint64_t left_ms = (deadline - now + 999999) / 1000000;
		int r = be->ops->poll(be, left_ms < 100 ? (int)left_ms : 100);
		if (r < 0)
			return r;
	}
}

/* Pause taking chains for a swap; returns whether the device was already
 * quiesced (by the VM pause), so that the swap leaves it that way. */
static bool swap_quiesce(struct virtio_blk *b)
{
	pthread_mutex_lock(&b->vdev.lock);
	bool was = b->quiesced;
	b->quiesced = true;
	pthread_mutex_unlock(&b->vdev.lock);
	return was;
}

static void swap_unquiesce(struct virtio_blk *b, bool was)
{
	if (!was)
		virtio_blk_unquiesce(b);
}

static void swap_flush_done(struct blk_io *io, int64_t res)
{
	struct virtio_blk_flush *f = container_of(io, struct virtio_blk_flush, io);
	f->res = res;
	f->pending = false;
}

/* fdatasync the image about to be let go (loop thread, d->lock not held,
 * nothing in flight), waiting through the back end's poll.  The operation
 * lives in the device: if the disk does not answer in time it completes
 * whenever it does, and until then no other swap starts.  0 / -errno. */
static int flush_old(struct virtio_blk *b, struct blk_backend *be)
{
	struct virtio_blk_flush *f = &b->swap_flush;
	if (be->readonly)
		return 0; /* nothing was written through it */
	if (!be->ops->poll)
		return -EOPNOTSUPP;
	f->io = (struct blk_io){.op = BLK_OP_FLUSH, .done = swap_flush_done};
	f->pending = true;
	int r = blk_submit(be, &f->io);
	if (r < 0) {
		f->pending = false;
		return r;
	}
	blk_commit(be);
	uint64_t deadline = now_ns() + (uint64_t)b->quiesce_timeout_ms * 1000000u;
	while (f->pending) {
		uint64_t now = now_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		uint64_t left_ms = (deadline - now + 999999) / 1000000;
		r = be->ops->poll(be, left_ms < 100 ? (int)left_ms : 100);
		if (r < 0)
			return r;
	}
	return f->res < 0 ? (int)f->res : 0;
}

int virtio_blk_sync(struct virtio_blk *b)
{
	if (b->swap_flush.pending)
		return -EBUSY; /* an earlier flush has not answered yet */
	return flush_old(b, b->be);
}

int virtio_blk_lock(struct virtio_blk *b, bool take)
{
	struct blk_backend *be = b->be;
	return be && be->ops->lock ? be->ops->lock(be, take) : 0;
}

/* The capacity changed: config space, generation, interrupt.  d->lock held. */
static void capacity_changed(struct virtio_blk *b)
{
	struct virtio_dev *d = &b->vdev;
	put_le64(b->config + VIRTIO_BLK_CFG_CAPACITY, b->capacity);
	/* §2.5: the driver re-reads a configuration that changed. */
	d->config_generation++;
	if (!d->reset_pending && (d->status & VIRTIO_STATUS_DRIVER_OK) && d->tops &&
	    d->tops->signal_config)
		d->tops->signal_config(d);
}

static void count_update(struct virtio_blk *b, int r)
{
	pthread_mutex_lock(&b->vdev.lock);
	if (r < 0)
		b->m.update_fails++;
	else
		b->m.update_count++;
	pthread_mutex_unlock(&b->vdev.lock);
}

int virtio_blk_swap_backend(struct virtio_blk *b, struct blk_backend *be, bool own_be, char *err,
			    size_t errlen)
{
	struct virtio_dev *d = &b->vdev;
	struct blk_backend *old = b->be;
	int r;
	if (be == old || be->size / VIRTIO_BLK_SECTOR == 0 || be->capacity == 0) {
		snprintf(err, errlen, "%s: not usable as a new image (%s)", be->name,
			 be == old ? "already in use" : "smaller than one sector or no capacity");
		r = -EINVAL;
		goto fail;
	}
	if (b->swap_flush.pending) {
		snprintf(err, errlen, "%s: the previous image's flush has not completed yet",
			 old->name);
		r = -EBUSY;
		goto fail;
	}
	if (d->loop && be->ops->attach) {
		r = be->ops->attach(be, d->loop);
		if (r < 0) {
			snprintf(err, errlen, "%s: cannot watch the back end: %s", be->name,
				 strerror(-r));
			goto fail;
		}
	}
	bool was = swap_quiesce(b);
	r = wait_idle(b, b->quiesce_timeout_ms);
	if (r < 0) {
		snprintf(err, errlen, "%s: requests in flight did not complete: %s", old->name,
			 strerror(-r));
		swap_unquiesce(b, was);
		goto fail;
	}
	r = flush_old(b, old);
	if (r < 0) {
		snprintf(err, errlen, "%s: flush before the swap failed: %s", old->name,
			 strerror(-r));
		swap_unquiesce(b, was);
		goto fail;
	}
	pthread_mutex_lock(&d->lock);
	bool old_own = b->own_be;
	b->be = be;
	b->own_be = own_be;
	b->capacity = be->size / VIRTIO_BLK_SECTOR;
	b->max_inflight = be->capacity < b->pool_size ? be->capacity : b->pool_size;
	/* A failed flush belonged to the old image (and was reported). */
	b->flush_failed = false;
	capacity_changed(b);
	b->m.update_count++;
	pthread_mutex_unlock(&d->lock);
	if (be->size % VIRTIO_BLK_SECTOR)
		log_warn("%s: size is not a multiple of 512; the last %u bytes are not visible",
			 be->name, (unsigned)(be->size % VIRTIO_BLK_SECTOR));
	log_info("virtio-blk: now on %s (%llu sectors%s)", be->name,
		 (unsigned long long)b->capacity, be->readonly ? ", read-only" : "");
	if (old_own)
		blk_destroy(old);
	swap_unquiesce(b, was);
	return 0;
fail:
	count_update(b, r);
	return r;
}

/* The image file itself changed size (same file, same mode). */
static int resize_in_place(struct virtio_blk *b, const char *path, char *err, size_t errlen)
{
	struct virtio_dev *d = &b->vdev;
	struct blk_backend *be = b->be;
	int r;
	if (!be->ops->refresh_size) {
		snprintf(err, errlen, "%s: this image's size cannot change", path);
		r = -EOPNOTSUPP;
		goto out;
	}
	bool was = swap_quiesce(b);
	r = wait_idle(b, b->quiesce_timeout_ms);
	if (r < 0) {
		snprintf(err, errlen, "%s: requests in flight did not complete: %s", path,
			 strerror(-r));
	} else {
		r = be->ops->refresh_size(be);
		if (r < 0) {
			snprintf(err, errlen, "%s: cannot re-read the size: %s", path,
				 strerror(-r));
		} else {
			pthread_mutex_lock(&d->lock);
			b->capacity = be->size / VIRTIO_BLK_SECTOR;
			capacity_changed(b);
			pthread_mutex_unlock(&d->lock);
			log_info("virtio-blk: %s: now %llu sectors", path,
				 (unsigned long long)b->capacity);
		}
	}
	swap_unquiesce(b, was);
out:
	count_update(b, r);
	return r;
}

int virtio_blk_swap_backing(struct virtio_blk *b, const char *path, bool readonly, char *err,
			    size_t errlen)
{
	struct blk_backend *cur = b->be;
	struct stat st;
	/* The image already open under this (or another) name: opening it
	 * again would run into our own lock.  It can only have changed size. */
	if ((cur->dev || cur->ino) && stat(path, &st) == 0 &&
	    (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) && (uint64_t)st.st_dev == cur->dev &&
	    (uint64_t)st.st_ino == cur->ino) {
		if (readonly != cur->readonly) {
			snprintf(err, errlen,
				 "%s: already this drive's image; it cannot switch between "
				 "read-only and read-write in place",
				 path);
			count_update(b, -EBUSY);
			return -EBUSY;
		}
		return resize_in_place(b, path, err, errlen);
	}
	struct blk_backend *be;
	int r = blk_uring_open(&be, path, readonly, 0, VIRTIO_BLK_QUEUE_MAX, err, errlen);
	if (r < 0) {
		count_update(b, r);
		return r;
	}
	r = virtio_blk_swap_backend(b, be, true, err, errlen);
	if (r < 0)
		blk_destroy(be);
	return r;
}

void virtio_blk_quiesce(struct virtio_blk *b)
{
	struct virtio_dev *d = &b->vdev;
	pthread_mutex_lock(&d->lock);
	b->quiesced = true;
	pthread_mutex_unlock(&d->lock);
	int r = wait_idle(b, b->quiesce_timeout_ms);
	if (r < 0) {
		pthread_mutex_lock(&d->lock);
		unsigned n = b->inflight;
		b->m.quiesce_timeouts++;
		pthread_mutex_unlock(&d->lock);
		log_warn("virtio-blk: %s: %u requests still in flight (%s after %u ms); pausing "
			 "anyway, they complete when the disk answers",
			 b->be->name, n, strerror(-r), b->quiesce_timeout_ms);
	}
}

void virtio_blk_unquiesce(struct virtio_blk *b)
{
	struct virtio_dev *d = &b->vdev;
	pthread_mutex_lock(&d->lock);
	b->quiesced = false;
	/* Notifications, deferred passes and limiter timers that arrived
	 * meanwhile did nothing: look at the queue (and a held chain) now. */
	virtio_dev_queue_notify(d, 0);
	pthread_mutex_unlock(&d->lock);
}

int virtio_blk_set_rate_limiter(struct virtio_blk *b, const struct rate_limiter_config *c)
{
	struct virtio_dev *d = &b->vdev;
	int r = 0;
	pthread_mutex_lock(&d->lock);
	if (b->limited) {
		rate_limiter_update(&b->limiter, c);
	} else if (rate_limiter_config_limits(c)) {
		/* Without a loop nobody would resume a throttled queue. */
		r = d->loop ? rate_limiter_init(&b->limiter, c, b->limiter_clock, b->limiter_clock_ctx)
			    : -EINVAL;
		if (r == 0) {
			r = loop_add(d->loop, b->limiter.timer_fd, EPOLLIN, limiter_cb, b);
			if (r < 0)
				rate_limiter_destroy(&b->limiter);
			else
				b->limited = true;
		}
	}
	/* At once: a request held under the old limits is looked at again
	 * (and held again, with a new timer, if it must still wait). */
	if (r == 0 && b->held)
		virtio_dev_queue_notify(d, 0);
	if (r < 0)
		b->m.update_fails++;
	else
		b->m.update_count++;
	pthread_mutex_unlock(&d->lock);
	return r;
}

void virtio_blk_get_metrics(struct virtio_blk *b, struct virtio_blk_metrics *out)
{
	pthread_mutex_lock(&b->vdev.lock);
	*out = b->m;
	out->inflight = b->inflight;
	pthread_mutex_unlock(&b->vdev.lock);
}

void virtio_blk_destroy(struct virtio_blk *b)
{
	if (!b->reqs)
		return;
	if (b->limited) {
		loop_del(b->vdev.loop, b->limiter.timer_fd);
		rate_limiter_destroy(&b->limiter);
		b->limited = false;
	}
	virtio_deferred_fini(&b->deferred);
	if (b->own_be)
		blk_destroy(b->be);
	virtio_dev_destroy(&b->vdev);
	free(b->reqs);
	b->reqs = NULL;
}

/* ---- snapshot state ------------------------------------------------------ */

int virtio_blk_state_get(struct virtio_blk *b, struct virtio_blk_state *st)
{
	struct virtio_dev *d = &b->vdev;
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&d->lock);
	if (b->inflight || b->resetting) {
		pthread_mutex_unlock(&d->lock);
		return -EBUSY;
	}
	st->capacity = b->capacity;
	st->flush_failed = b->flush_failed;
	/* A device that is not live holds nothing a restore could use. */
	if (b->held && virtio_dev_is_live(d) && d->vqs[0].active) {
		st->held = 1;
		st->held_head = b->chain.head;
	}
	pthread_mutex_unlock(&d->lock);
	return 0;
}

void virtio_blk_state_encode(const struct virtio_blk_state *st, struct snap_writer *w)
{
	snap_put_u64(w, st->capacity);
	snap_put_u8(w, st->flush_failed);
	snap_put_u8(w, st->held);
	snap_put_u16(w, st->held_head);
}

int virtio_blk_state_decode(struct snap_cursor *c, const struct virtio_blk *live,
			    struct virtio_blk_state *st, char *err, size_t errlen)
{
	memset(st, 0, sizeof(*st));
	st->capacity = snap_get_u64(c);
	st->flush_failed = snap_get_u8(c);
	st->held = snap_get_u8(c);
	st->held_head = snap_get_u16(c);
	if (c->overrun)
		return err_set(err, errlen, -EINVAL, "virtio-blk state truncated");
	if (st->capacity != live->capacity)
		return err_set(err, errlen, -EINVAL,
			       "virtio-blk: the disk had %llu sectors, this image has %llu (another "
			       "disk?)",
			       (unsigned long long)st->capacity, (unsigned long long)live->capacity);
	if (st->flush_failed > 1 || st->held > 1)
		return err_set(err, errlen, -EINVAL, "virtio-blk: flag %u/%u is not 0 or 1",
			       st->flush_failed, st->held);
	if (st->held_head >= live->vdev.queue_max || (!st->held && st->held_head))
		return err_set(err, errlen, -EINVAL, "virtio-blk: held head %u%s", st->held_head,
			       st->held ? " out of range" : " without a held chain");
	return 0;
}

int virtio_blk_state_check(const struct virtio_blk_state *st, const struct virtio_dev_state *core,
			   char *err, size_t errlen)
{
	const struct virtq_state *q = &core->vqs[0];
	bool live = virtio_dev_state_is_live(core);
	if (st->held && (!live || !q->active))
		return err_set(err, errlen, -EINVAL,
			       "virtio-blk: a chain is held but the queue is not running");
	/* A device that is not live (broken, or FAILED by the driver; the
	 * core keeps its queues active) holds nothing and processes nothing
	 * until the driver resets it, which drops the chains in flight: they
	 * are not the device's to account for (virtio_dev_state_is_live). */
	if (live && (q->ninflight != st->held || (st->held && q->inflight[0] != st->held_head)))
		return err_set(err, errlen, -EINVAL,
			       "virtio-blk: %u chains in flight on the queue, the device holds %u",
			       q->ninflight, st->held);
	return 0;
}

int virtio_blk_state_put(struct virtio_blk *b, const struct virtio_blk_state *st)
{
	struct virtio_dev *d = &b->vdev;
	struct virtq *q = &d->vqs[0];
	int rc = 0;
	pthread_mutex_lock(&d->lock);
	b->flush_failed = st->flush_failed;
	b->held = false;
	b->slots_full = false;
	if (st->held) {
		rc = virtq_chain_reread(q, st->held_head, &b->chain);
		if (rc == -EIO) {
			mark_broken(b, "the held chain no longer passes at restore");
			rc = 0;
		} else if (!rc) {
			b->held = true;
		}
	}
	pthread_mutex_unlock(&d->lock);
	return rc;
}
