/* SPDX-License-Identifier: MIT */
/*
 * snapshot/mem_section.c - section "memory"; see mem_section.h.
 *
 * Payload (version 1, 48 bytes, little-endian):
 *   u8 kind (0 Full, 1 Diff, 2 Merging), u8 reserved[7] (0),
 *   u64 size (bytes of guest RAM), u8 id[16], u8 base[16]
 */
#include "mem_section.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "../util/str.h"
#include "config_section.h"

void snap_mem_write(const struct snap_mem_info *m, struct snap_writer *w)
{
	static const uint8_t reserved[7];
	snap_writer_section_begin(w, SNAP_MEMORY_ID, SNAP_MEMORY_VERSION);
	snap_put_u8(w, m->kind);
	snap_put_bytes(w, reserved, sizeof(reserved));
	snap_put_u64(w, m->size);
	snap_put_bytes(w, m->id, SNAP_MEM_ID_LEN);
	snap_put_bytes(w, m->base, SNAP_MEM_ID_LEN);
	snap_writer_section_end(w);
}

bool snap_mem_id_zero(const uint8_t id[SNAP_MEM_ID_LEN])
{
	for (int i = 0; i < SNAP_MEM_ID_LEN; i++)
		if (id[i])
			return false;
	return true;
}

const char *snap_mem_kind_name(uint8_t kind)
{
	switch (kind) {
	case SNAP_MEM_FULL:
		return "Full";
	case SNAP_MEM_DIFF:
		return "Diff";
	case SNAP_MEM_MERGING:
		return "Merging";
	}
	return "unknown";
}

int snap_mem_decode(const uint8_t *p, size_t len, uint32_t version, struct snap_mem_info *out,
		    char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (version != SNAP_MEMORY_VERSION)
		return err_set(err, errlen, -EINVAL, "memory: version %u (this visor reads %u)",
			       version, SNAP_MEMORY_VERSION);
	struct snap_cursor c;
	snap_cursor_init(&c, p, len);
	struct snap_mem_info m;
	uint8_t reserved[7];
	m.kind = snap_get_u8(&c);
	snap_get_bytes(&c, reserved, sizeof(reserved));
	m.size = snap_get_u64(&c);
	snap_get_bytes(&c, m.id, SNAP_MEM_ID_LEN);
	snap_get_bytes(&c, m.base, SNAP_MEM_ID_LEN);
	int rc = snap_cursor_done(&c, SNAP_MEMORY_ID, err, errlen);
	if (rc)
		return rc;
	if (m.kind > SNAP_MEM_MERGING)
		return err_set(err, errlen, -EINVAL, "memory: kind %u (0 Full, 1 Diff, 2 Merging)",
			       m.kind);
	for (size_t i = 0; i < sizeof(reserved); i++)
		if (reserved[i])
			return err_set(err, errlen, -EINVAL, "memory: reserved byte %zu is not 0",
				       i + 1);
	if (!m.size || m.size % 4096)
		return err_set(err, errlen, -EINVAL,
			       "memory: size %llu is not a whole number of 4 KiB pages",
			       (unsigned long long)m.size);
	if (snap_mem_id_zero(m.id))
		return err_set(err, errlen, -EINVAL, "memory: no identity (all zero)");
	bool full = m.kind == SNAP_MEM_FULL;
	if (full != snap_mem_id_zero(m.base))
		return err_set(err, errlen, -EINVAL, full ? "memory: a Full snapshot with a base"
							  : "memory: a %s snapshot without a base",
			       snap_mem_kind_name(m.kind));
	if (!memcmp(m.id, m.base, SNAP_MEM_ID_LEN))
		return err_set(err, errlen, -EINVAL, "memory: its own base");
	*out = m;
	return 0;
}

int snap_mem_find(const struct snap_reader *rd, struct snap_mem_info *out, bool *present,
		  char *err, size_t errlen)
{
	uint32_t version;
	const uint8_t *p;
	size_t len;
	if (present)
		*present = false;
	if (snap_reader_find(rd, SNAP_MEMORY_ID, &version, &p, &len)) {
		memset(out, 0, sizeof(*out));
		out->kind = SNAP_MEM_FULL;
		return 0;
	}
	int rc = snap_mem_decode(p, len, version, out, err, errlen);
	if (!rc && present)
		*present = true;
	return rc;
}

int snap_mem_new_id(uint8_t id[SNAP_MEM_ID_LEN])
{
	do {
		ssize_t n = getrandom(id, SNAP_MEM_ID_LEN, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n != SNAP_MEM_ID_LEN)
			return n < 0 ? -errno : -EIO;
	} while (snap_mem_id_zero(id));
	return 0;
}

void snap_mem_id_hex(const uint8_t id[SNAP_MEM_ID_LEN], char out[2 * SNAP_MEM_ID_LEN + 1])
{
	for (int i = 0; i < SNAP_MEM_ID_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", id[i]);
}

int snap_mem_rewrite(const struct snap_reader *rd, const struct snap_mem_info *m, uint8_t **buf,
		     size_t *len, char *err, size_t errlen)
{
	bool have = !snap_reader_find(rd, SNAP_MEMORY_ID, NULL, NULL, NULL);
	bool have_config = !snap_reader_find(rd, SNAP_CONFIG_ID, NULL, NULL, NULL);
	struct snap_writer w;
	snap_writer_init(&w);
	if (!have && !have_config)
		snap_mem_write(m, &w);
	struct snap_iter it = {0};
	struct snap_section s;
	while (snap_reader_next(rd, &it, &s)) {
		if (!strcmp(s.id, SNAP_MEMORY_ID)) {
			snap_mem_write(m, &w);
			continue;
		}
		snap_writer_section_begin(&w, s.id, s.version);
		snap_put_bytes(&w, s.payload, s.len);
		snap_writer_section_end(&w);
		if (!have && !strcmp(s.id, SNAP_CONFIG_ID))
			snap_mem_write(m, &w);
	}
	int rc = snap_writer_finish(&w, buf, len);
	if (rc)
		err_set(err, errlen, rc, "%s", snap_writer_error(&w));
	snap_writer_free(&w);
	return rc;
}
