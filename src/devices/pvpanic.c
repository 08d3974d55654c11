/* SPDX-License-Identifier: MIT */
/*
 * pvpanic.c - pvpanic I/O port; see pvpanic.h.
 */
#include "pvpanic.h"

#include <string.h>

static void pvpanic_read(struct bus_dev *dev, uint64_t offset, void *data, uint32_t len)
{
	uint8_t *out = data;
	for (uint32_t i = 0; i < len; i++)
		out[i] = offset + i == 0 ? PVPANIC_EVENTS : 0xff;
}

static void pvpanic_write(struct bus_dev *dev, uint64_t offset, const void *data, uint32_t len)
{
	struct pvpanic *p = container_of(dev, struct pvpanic, bus);
	if (offset != 0 || len == 0)
		return;
	uint8_t v = ((const uint8_t *)data)[0];
	bool call = false;
	pthread_mutex_lock(&p->lock);
	if (v & PVPANIC_PANICKED) {
		p->panics++;
		call = !p->panic_sent;
		p->panic_sent = true;
	}
	if (v & PVPANIC_CRASH_LOADED) {
		p->crash_loaded++;
		log_ratelimited(&p->rl, LOG_WARN,
				"guest panicked; its crash kernel is taking over (pvpanic)");
	}
	pthread_mutex_unlock(&p->lock);
	if (call && p->panicked)
		p->panicked(p->ctx);
}

static const struct bus_dev_ops pvpanic_ops = {
	.read = pvpanic_read,
	.write = pvpanic_write,
};

int pvpanic_init(struct pvpanic *p, void (*panicked)(void *ctx), void *ctx)
{
	memset(p, 0, sizeof(*p));
	int rc = pthread_mutex_init(&p->lock, NULL);
	if (rc)
		return -rc;
	p->bus.ops = &pvpanic_ops;
	p->bus.name = "pvpanic";
	p->panicked = panicked;
	p->ctx = ctx;
	return 0;
}

void pvpanic_destroy(struct pvpanic *p)
{
	pthread_mutex_destroy(&p->lock);
}
