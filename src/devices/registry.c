/* SPDX-License-Identifier: MIT */
#include "registry.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/log.h"
#include "../util/str.h"
#include "virtio/virtio.h"

struct dev_record *registry_add(struct dev_registry *reg, const struct dev_record *rec)
{
	if (reg->n >= REGISTRY_MAX || registry_find(reg, rec->type, rec->id))
		return NULL;
	reg->r[reg->n] = *rec;
	return &reg->r[reg->n++];
}

struct dev_record *registry_find(struct dev_registry *reg, const char *type, const char *id)
{
	for (uint32_t i = 0; i < reg->n; i++)
		if ((!type || !strcmp(reg->r[i].type, type)) && !strcmp(reg->r[i].id, id))
			return &reg->r[i];
	return NULL;
}

void registry_pause_all(struct dev_registry *reg)
{
	for (uint32_t i = 0; i < reg->n; i++) {
		struct dev_record *r = &reg->r[i];
		if (r->paused)
			continue;
		if (r->ops && r->ops->pause)
			r->ops->pause(r);
		r->paused = true;
	}
}

void registry_resume_all(struct dev_registry *reg)
{
	/* reverse order: a device resumed last in pause order is the first a
	 * later one may depend on (none do today; the order is fixed anyway) */
	for (uint32_t i = reg->n; i-- > 0;) {
		struct dev_record *r = &reg->r[i];
		if (!r->paused)
			continue;
		if (r->ops && r->ops->resume)
			r->ops->resume(r);
		r->paused = false;
	}
}

void registry_destroy_all(struct dev_registry *reg)
{
	for (uint32_t i = reg->n; i-- > 0;) {
		struct dev_record *r = &reg->r[i];
		if (r->ops && r->ops->destroy)
			r->ops->destroy(r);
	}
	reg->n = 0;
}

unsigned registry_announce_all(struct dev_registry *reg)
{
	unsigned asked = 0;
	for (uint32_t i = 0; i < reg->n; i++) {
		struct dev_record *r = &reg->r[i];
		int rc;
		if (r->ops && r->ops->announce)
			rc = r->ops->announce(r);
		else if (r->cls == DEV_VIRTIO && r->vdev && r->vdev->ops && r->vdev->ops->announce)
			rc = r->vdev->ops->announce(r->vdev);
		else
			continue;
		asked++;
		if (rc)
			log_warn("%s '%s': announce: %s", r->type, r->id, strerror(-rc));
	}
	return asked;
}

/* ---- snapshot ---------------------------------------------------------------- */

int registry_sync_all(struct dev_registry *reg)
{
	int first = 0;
	for (uint32_t i = 0; i < reg->n; i++) {
		struct dev_record *r = &reg->r[i];
		int rc = r->ops && r->ops->sync ? r->ops->sync(r) : 0;
		if (rc && !first)
			first = rc;
	}
	return first;
}

static bool has_state(const struct dev_record *r)
{
	return r->ops && r->ops->save && r->ops->load && r->ops->apply && r->ops->state_size;
}

/* A name of 1 to @max printable ASCII characters (no space: types and ids
 * never have one, and a message quoting it stays one clean line) into
 * out[max + 1]. */
static bool get_name(struct snap_cursor *c, char *out, size_t max)
{
	int n = snap_get_str(c, out, max + 1);
	if (n <= 0)
		return false;
	for (int i = 0; i < n; i++)
		if (out[i] <= ' ' || out[i] > '~') {
			out[0] = 0;
			return false;
		}
	return true;
}

int registry_save_all(struct dev_registry *reg, struct snap_writer *w, char *err, size_t errlen)
{
	snap_writer_section_begin(w, REGISTRY_MANIFEST_ID, REGISTRY_MANIFEST_VERSION);
	snap_put_u32(w, reg->n);
	for (uint32_t i = 0; i < reg->n; i++) {
		const struct dev_record *r = &reg->r[i];
		snap_put_u8(w, (uint8_t)r->cls);
		snap_put_u8(w, r->cls == DEV_VIRTIO ? (uint8_t)r->transport : 0);
		snap_put_u8(w, has_state(r));
		snap_put_u8(w, 0);
		snap_put_str(w, r->type, CONFIG_ID_MAX);
		snap_put_str(w, r->id, CONFIG_ID_MAX);
	}
	snap_writer_section_end(w);
	for (uint32_t i = 0; i < reg->n; i++) {
		struct dev_record *r = &reg->r[i];
		if (!has_state(r))
			continue;
		char sid[SNAP_ID_FIELD];
		snprintf(sid, sizeof(sid), "dev.%u", i);
		snap_writer_section_begin(w, sid, r->ops->state_version);
		int rc = r->ops->save(r, w);
		if (rc)
			return err_set(err, errlen, rc, "%s %s: cannot save its state: %s", r->type,
				       r->id, strerror(-rc));
		snap_writer_section_end(w);
	}
	if (w->err)
		return err_set(err, errlen, w->err, "%s", snap_writer_error(w));
	return 0;
}

/* Check the manifest against @reg. */
static int check_manifest(const struct dev_registry *reg, const struct snap_reader *rd,
			  char *err, size_t errlen)
{
	uint32_t version;
	const uint8_t *p;
	size_t len;
	if (snap_reader_find(rd, REGISTRY_MANIFEST_ID, &version, &p, &len))
		return err_set(err, errlen, -ENOENT, "no \"%s\" section (the device list)",
			       REGISTRY_MANIFEST_ID);
	if (version != REGISTRY_MANIFEST_VERSION)
		return err_set(err, errlen, -EINVAL, "device list version %u (this visor reads %u)",
			       version, REGISTRY_MANIFEST_VERSION);
	struct snap_cursor c;
	snap_cursor_init(&c, p, len);
	uint32_t n = snap_get_u32(&c);
	if (c.overrun || n > REGISTRY_MAX)
		return err_set(err, errlen, -EINVAL, "device list: %u devices (at most %u)", n,
			       REGISTRY_MAX);
	for (uint32_t i = 0; i < n; i++) {
		uint8_t cls = snap_get_u8(&c), tr = snap_get_u8(&c), st = snap_get_u8(&c);
		uint8_t reserved = snap_get_u8(&c);
		char type[CONFIG_ID_MAX + 1], id[CONFIG_ID_MAX + 1];
		bool ok = get_name(&c, type, CONFIG_ID_MAX) && get_name(&c, id, CONFIG_ID_MAX);
		if (c.overrun)
			break;
		if (!ok || reserved || st > 1)
			return err_set(err, errlen, -EINVAL, "device list: entry %u is malformed", i);
		if (i >= reg->n)
			return err_set(err, errlen, -EINVAL,
				       "the snapshot has device %s \"%s\", which this VM lacks", type,
				       id);
		const struct dev_record *r = &reg->r[i];
		uint8_t rtr = r->cls == DEV_VIRTIO ? (uint8_t)r->transport : 0;
		if (strcmp(type, r->type) || strcmp(id, r->id) || cls != (uint8_t)r->cls ||
		    tr != rtr || st != has_state(r))
			return err_set(err, errlen, -EINVAL,
				       "device %u differs: the snapshot has %s \"%s\", this VM %s \"%s\"",
				       i, type, id, r->type, r->id);
	}
	int rc = snap_cursor_done(&c, "device list", err, errlen);
	if (rc)
		return rc;
	if (n < reg->n)
		return err_set(err, errlen, -EINVAL,
			       "this VM has device %s \"%s\", which the snapshot lacks", reg->r[n].type,
			       reg->r[n].id);
	return 0;
}

int registry_restore_all(struct dev_registry *reg, const struct snap_reader *rd, char *err,
			 size_t errlen)
{
	int rc = check_manifest(reg, rd, err, errlen);
	if (rc)
		return rc;
	void *states[REGISTRY_MAX] = {0};
	char sub[160];
	for (uint32_t i = 0; i < reg->n && !rc; i++) {
		struct dev_record *r = &reg->r[i];
		char sid[SNAP_ID_FIELD];
		snprintf(sid, sizeof(sid), "dev.%u", i);
		uint32_t version;
		const uint8_t *p;
		size_t len;
		bool present = !snap_reader_find(rd, sid, &version, &p, &len);
		if (!has_state(r)) {
			if (present)
				rc = err_set(err, errlen, -EINVAL,
					     "section %s: %s \"%s\" has no state to restore", sid,
					     r->type, r->id);
			continue;
		}
		if (!present) {
			rc = err_set(err, errlen, -ENOENT, "no section %s (the state of %s \"%s\")", sid,
				     r->type, r->id);
			break;
		}
		states[i] = calloc(1, r->ops->state_size);
		if (!states[i]) {
			rc = err_set(err, errlen, -ENOMEM, "out of memory");
			break;
		}
		sub[0] = 0;
		rc = r->ops->load(r, p, len, version, states[i], sub, sizeof(sub));
		if (rc)
			rc = err_set(err, errlen, rc, "%s (%s \"%s\"): %s", sid, r->type, r->id,
				     sub[0] ? sub : strerror(-rc));
	}
	for (uint32_t i = 0; i < reg->n && !rc; i++) {
		struct dev_record *r = &reg->r[i];
		if (!states[i])
			continue;
		sub[0] = 0;
		rc = r->ops->apply(r, states[i], sub, sizeof(sub));
		if (rc)
			rc = err_set(err, errlen, rc, "%s \"%s\": cannot restore its state: %s", r->type,
				     r->id, sub[0] ? sub : strerror(-rc));
	}
	for (uint32_t i = 0; i < reg->n; i++)
		free(states[i]);
	return rc;
}
