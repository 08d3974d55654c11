/* SPDX-License-Identifier: MIT */
#include "bus.h"

#include <errno.h>
#include <string.h>

#include "../util/log.h"

void bus_init(struct bus *bus, const char *name)
{
	memset(bus, 0, sizeof(*bus));
	bus->name = name;
	pthread_rwlock_init(&bus->lock, NULL);
}

int bus_register(struct bus *bus, struct bus_dev *dev, uint64_t base, uint64_t len)
{
	if (!bus || !dev || len == 0 || base + len < base)
		return -EINVAL;
	uint64_t end = base + len; /* exclusive */
	int r = 0;
	pthread_rwlock_wrlock(&bus->lock);
	if (bus->ndevs >= BUS_MAX_DEVS) {
		r = -ENOSPC;
		goto out;
	}
	size_t pos = 0;
	for (size_t i = 0; i < bus->ndevs; i++) {
		struct bus_dev *o = bus->devs[i];
		if (o == dev || (base < o->base + o->len && o->base < end)) {
			r = -EEXIST;
			goto out;
		}
		if (o->base < base)
			pos = i + 1;
	}
	memmove(&bus->devs[pos + 1], &bus->devs[pos], (bus->ndevs - pos) * sizeof(bus->devs[0]));
	dev->base = base;
	dev->len = len;
	bus->devs[pos] = dev;
	bus->ndevs++;
out:
	pthread_rwlock_unlock(&bus->lock);
	return r;
}

int bus_unregister(struct bus *bus, struct bus_dev *dev)
{
	if (!bus || !dev)
		return -EINVAL;
	int r = -ENOENT;
	pthread_rwlock_wrlock(&bus->lock);
	for (size_t i = 0; i < bus->ndevs; i++) {
		if (bus->devs[i] != dev)
			continue;
		memmove(&bus->devs[i], &bus->devs[i + 1],
			(bus->ndevs - i - 1) * sizeof(bus->devs[0]));
		bus->ndevs--;
		bus->devs[bus->ndevs] = NULL;
		r = 0;
		break;
	}
	pthread_rwlock_unlock(&bus->lock);
	return r;
}

/* The window holding [addr, addr+len) and the offset in it; lock held. */
static struct bus_dev *find_locked(struct bus *bus, uint64_t addr, uint32_t len, uint64_t *off_out)
{
	/* binary search for the last window starting at or below addr */
	size_t lo = 0, hi = bus->ndevs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (bus->devs[mid]->base <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return NULL;
	struct bus_dev *d = bus->devs[lo - 1];
	uint64_t off = addr - d->base;
	if (off >= d->len || len > d->len - off)
		return NULL;
	*off_out = off;
	return d;
}

struct bus_dev *bus_find(struct bus *bus, uint64_t addr, uint32_t len)
{
	uint64_t off;
	pthread_rwlock_rdlock(&bus->lock);
	struct bus_dev *d = find_locked(bus, addr, len, &off);
	pthread_rwlock_unlock(&bus->lock);
	return d;
}

bool bus_access(struct bus *bus, uint64_t addr, void *data, uint32_t len, bool is_write)
{
	uint64_t off = 0;
	pthread_rwlock_rdlock(&bus->lock);
	struct bus_dev *d = find_locked(bus, addr, len, &off);
	pthread_rwlock_unlock(&bus->lock);
	/* Dispatch without the lock (see bus.h: ops may (un)register windows). */
	if (d) {
		if (is_write)
			d->ops->write(d, off, data, len);
		else
			d->ops->read(d, off, data, len);
		return true;
	}
	static struct ratelimit rl;
	__atomic_add_fetch(&bus->unhandled, 1, __ATOMIC_RELAXED);
	if (!is_write)
		memset(data, 0xff, len);
	log_ratelimited(&rl, LOG_DEBUG, "unhandled %s %s at 0x%llx len %u", bus->name,
			is_write ? "write" : "read", (unsigned long long)addr, len);
	return false;
}
