/* SPDX-License-Identifier: MIT */
/*
 * vmgenid.c - the VM generation ID; see vmgenid.h.
 */
#include "vmgenid.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "../util/log.h"
#include "../util/str.h"

static int host_random(void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = getrandom((uint8_t *)buf + got, len - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	return 0;
}

int vmgenid_init(struct vmgenid *g, uint8_t *hva, uint64_t gpa, void (*notify)(void *ctx),
		 void *ctx)
{
	memset(g, 0, sizeof(*g));
	if (!hva || (gpa & 7))
		return -EINVAL;
	g->hva = hva;
	g->gpa = gpa;
	g->notify = notify;
	g->ctx = ctx;
	g->random = host_random;
	return 0;
}

int vmgenid_new_id(struct vmgenid *g)
{
	uint8_t id[VMGENID_ID_LEN];
	/* a repeat is a 2^-128 event for a working generator: a few tries,
	 * then the source is broken */
	for (int tries = 0; tries < 4; tries++) {
		int rc = g->random(id, sizeof(id));
		if (rc)
			return rc;
		if (memcmp(id, g->id, sizeof(id))) {
			memcpy(g->id, id, sizeof(id));
			memcpy(g->hva, id, sizeof(id));
			g->generations++;
			return 0;
		}
	}
	return -EIO;
}

bool vmgenid_notify_restored(struct vmgenid *g)
{
	if (!g->notify_pending)
		return false;
	g->notify_pending = false;
	if (g->notify)
		g->notify(g->ctx);
	return true;
}

/* ---- snapshot state ------------------------------------------------------ */

void vmgenid_state_get(const struct vmgenid *g, struct vmgenid_state *st)
{
	memset(st, 0, sizeof(*st));
	st->gpa = g->gpa;
	memcpy(st->id, g->id, sizeof(st->id));
}

void vmgenid_state_encode(const struct vmgenid_state *st, struct snap_writer *w)
{
	snap_put_u64(w, st->gpa);
	snap_put_bytes(w, st->id, sizeof(st->id));
}

int vmgenid_state_decode(const uint8_t *p, size_t len, uint32_t version, uint64_t gpa,
			 struct vmgenid_state *st, char *err, size_t errlen)
{
	memset(st, 0, sizeof(*st));
	if (version != VMGENID_STATE_VERSION)
		return err_set(err, errlen, -EINVAL, "vmgenid: state version %u (this visor reads %u)",
			       version, VMGENID_STATE_VERSION);
	struct snap_cursor c;
	snap_cursor_init(&c, p, len);
	st->gpa = snap_get_u64(&c);
	snap_get_bytes(&c, st->id, sizeof(st->id));
	int rc = snap_cursor_done(&c, "vmgenid", err, errlen);
	if (rc)
		return rc;
	if (st->gpa != gpa)
		return err_set(err, errlen, -EINVAL,
			       "vmgenid: the ID was at %#llx, this machine has it at %#llx",
			       (unsigned long long)st->gpa, (unsigned long long)gpa);
	return 0;
}

int vmgenid_state_put(struct vmgenid *g, const struct vmgenid_state *st)
{
	/* the guest has seen the saved ID: the new one must differ from it */
	memcpy(g->id, st->id, sizeof(g->id));
	if (g->keep_on_restore) {
		/* the guest memory that came with it holds this ID already */
		return 0;
	}
	int rc = vmgenid_new_id(g);
	if (rc)
		return rc;
	g->notify_pending = true;
	return 0;
}
