/* SPDX-License-Identifier: MIT */
#include "registry.h"

#include <string.h>

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
