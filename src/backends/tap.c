/* SPDX-License-Identifier: MIT */
/*
 * tap.c - network back end on a Linux tap interface; see net.h.
 *
 * Uses the tun/tap character device (/dev/net/tun) with:
 *   TUNSETIFF        IFF_TAP | IFF_NO_PI | IFF_VNET_HDR: Ethernet frames,
 *                    no packet-information prefix, each frame preceded by a
 *                    virtio-net header;
 *   TUNSETVNETHDRSZ  12, the VERSION_1 header (struct virtio_net_hdr_v1;
 *                    the tap ignores num_buffers on write and leaves it
 *                    untouched on read);
 *   TUNSETOFFLOAD    TUN_F_CSUM / TSO4 / TSO6 / TSO_ECN: what the kernel may
 *                    hand us (partial checksums, GSO frames).  Frames we
 *                    write may use any offload the header can express.
 * The header is in the host's byte order unless TUNSETVNETLE; hosts are
 * little-endian (x86), like virtio 1.x, so no conversion is needed.
 *
 * One read() or write() moves exactly one frame; the fd is non-blocking.
 */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "net.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "the tap's virtio-net header is host-endian; virtio 1.x wants little-endian");

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

#define TUN_PATH "/dev/net/tun"

struct tap {
	struct net_backend be;
	char name[IFNAMSIZ];
};

static struct tap *to_tap(struct net_backend *be)
{
	return container_of(be, struct tap, be);
}

static ssize_t tap_send(struct net_backend *be, const struct iovec *iov, int iovcnt)
{
	ssize_t n;
	do
		n = writev(be->fd, iov, iovcnt);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

static ssize_t tap_recv(struct net_backend *be, const struct iovec *iov, int iovcnt)
{
	ssize_t n;
	do
		n = readv(be->fd, iov, iovcnt);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static unsigned to_tun_flags(unsigned offloads)
{
	unsigned f = 0;
	if (offloads & NET_OFFLOAD_CSUM)
		f |= TUN_F_CSUM;
	if (offloads & NET_OFFLOAD_TSO4)
		f |= TUN_F_TSO4;
	if (offloads & NET_OFFLOAD_TSO6)
		f |= TUN_F_TSO6;
	if (offloads & NET_OFFLOAD_TSO_ECN)
		f |= TUN_F_TSO_ECN;
	return f;
}

static int set_offload_fd(int fd, unsigned offloads)
{
	/* The argument is passed by value (an unsigned long). */
	return ioctl(fd, TUNSETOFFLOAD, (unsigned long)to_tun_flags(offloads)) < 0 ? -errno : 0;
}

static int tap_set_offload(struct net_backend *be, unsigned offloads)
{
	if (offloads & ~be->rx_offloads)
		return -EINVAL;
	return set_offload_fd(be->fd, offloads);
}

static void tap_close(struct net_backend *be)
{
	struct tap *t = to_tap(be);
	if (be->fd >= 0)
		close(be->fd);
	free(t);
}

static const struct net_backend_ops tap_ops = {
	.send = tap_send,
	.recv = tap_recv,
	.set_offload = tap_set_offload,
	.close = tap_close,
};

/* The kernel's dev_valid_name() rules, plus '%' (a pattern would make the
 * kernel pick the name) and an explicit length limit. */
static bool name_ok(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len >= IFNAMSIZ || !strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c == '/' || c == ':' || c == '%' || c <= ' ' || c == 0x7f)
			return false;
	}
	return true;
}

/* Which offloads the kernel accepts, from the most to the least. */
static unsigned probe_offloads(int fd)
{
	static const unsigned tries[] = {
		NET_OFFLOAD_ALL,
		NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6,
		NET_OFFLOAD_CSUM,
	};
	unsigned got = 0;
	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		if (set_offload_fd(fd, tries[i]) == 0) {
			got = tries[i];
			break;
		}
	}
	return got;
}

static int open_error(int e, char *err, size_t errlen)
{
	const char *hint;
	switch (e) {
	case ENOENT:
		hint = " (no TUN/TAP device node: load the tun module with 'modprobe tun', "
		       "or create it with 'mknod " TUN_PATH " c 10 200')";
		break;
	case ENODEV:
	case ENXIO:
		hint = " (the kernel has no TUN/TAP support: 'modprobe tun')";
		break;
	case EACCES:
	case EPERM:
		hint = " (visor needs read-write access to " TUN_PATH ")";
		break;
	default:
		hint = "";
		break;
	}
	snprintf(err, errlen, TUN_PATH ": %s%s", strerror(e), hint);
	return -e;
}

static int setiff_error(int e, const char *name, char *err, size_t errlen)
{
	switch (e) {
	case EPERM:
	case EACCES:
		snprintf(err, errlen,
			 "tap %s: %s (creating a tap, or using one that belongs to another user, "
			 "needs CAP_NET_ADMIN; as root: 'ip tuntap add %s mode tap user USER')",
			 name, strerror(e), name);
		break;
	case EBUSY:
		snprintf(err, errlen, "tap %s: %s (already attached to another process)", name,
			 strerror(e));
		break;
	case EINVAL:
		snprintf(err, errlen,
			 "tap %s: %s (an interface of that name exists but is not a "
			 "single-queue tap device)",
			 name, strerror(e));
		break;
	default:
		snprintf(err, errlen, "tap %s: %s", name, strerror(e));
		break;
	}
	return -e;
}

/* Taps handed over by a local-mode migration's source (tap_adopt): their
 * fds, by device name, taken by tap_open instead of opening the name. */
#define TAP_ADOPT_MAX 8
static struct {
	char name[IFNAMSIZ];
	int fd; /* -1: free */
} adopted[TAP_ADOPT_MAX] = {[0 ... TAP_ADOPT_MAX - 1] = {"", -1}};
static pthread_mutex_t adopt_lock = PTHREAD_MUTEX_INITIALIZER;

int tap_adopt(int fd)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	if (ioctl(fd, TUNGETIFF, &ifr) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	ifr.ifr_name[IFNAMSIZ - 1] = 0;
	pthread_mutex_lock(&adopt_lock);
	for (int i = 0; i < TAP_ADOPT_MAX; i++) {
		if (adopted[i].fd < 0) {
			adopted[i].fd = fd;
			memcpy(adopted[i].name, ifr.ifr_name, IFNAMSIZ);
			pthread_mutex_unlock(&adopt_lock);
			return 0;
		}
	}
	pthread_mutex_unlock(&adopt_lock);
	close(fd);
	return -ENOSPC;
}

void tap_adopt_clear(void)
{
	pthread_mutex_lock(&adopt_lock);
	for (int i = 0; i < TAP_ADOPT_MAX; i++) {
		if (adopted[i].fd >= 0)
			close(adopted[i].fd);
		adopted[i].fd = -1;
	}
	pthread_mutex_unlock(&adopt_lock);
}

/* The adopted fd of tap @name (taken out of the table), or -1. */
static int take_adopted(const char *name)
{
	int fd = -1;
	pthread_mutex_lock(&adopt_lock);
	for (int i = 0; i < TAP_ADOPT_MAX && fd < 0; i++) {
		if (adopted[i].fd >= 0 && !strcmp(adopted[i].name, name)) {
			fd = adopted[i].fd;
			adopted[i].fd = -1;
		}
	}
	pthread_mutex_unlock(&adopt_lock);
	return fd;
}

int tap_open(struct net_backend **out, const char *name, char *err, size_t errlen)
{
	*out = NULL;
	if (!name || !name_ok(name)) {
		snprintf(err, errlen,
			 "tap name \"%s\": must be 1 to %d characters, without '/', ':', '%%' or "
			 "white space",
			 name ? name : "", IFNAMSIZ - 1);
		return -EINVAL;
	}
	/* a tap the previous visor had attached (local-mode migration) */
	int fd = take_adopted(name);
	if (fd >= 0)
		goto attached;
	fd = open(TUN_PATH, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return open_error(errno, err, errlen);

	unsigned int features = 0;
	if (ioctl(fd, TUNGETFEATURES, &features) == 0 && !(features & IFF_VNET_HDR)) {
		snprintf(err, errlen, TUN_PATH ": the kernel's tun driver has no IFF_VNET_HDR");
		close(fd);
		return -EOPNOTSUPP;
	}

	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	memcpy(ifr.ifr_name, name, strlen(name)); /* < IFNAMSIZ, NUL-padded */
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;
		close(fd);
		return setiff_error(e, name, err, errlen);
	}
attached:;
	int hdrsz = NET_HDR_LEN;
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdrsz) < 0) {
		int e = errno;
		snprintf(err, errlen, "tap %s: cannot set the virtio-net header size: %s", name,
			 strerror(e));
		close(fd);
		return -e;
	}
	unsigned rx = probe_offloads(fd);
	/* Nothing negotiated yet: plain frames until the driver says more. */
	int r = set_offload_fd(fd, 0);
	if (r < 0) {
		snprintf(err, errlen, "tap %s: cannot turn offloads off: %s", name, strerror(-r));
		close(fd);
		return r;
	}

	struct tap *t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, errlen, "tap %s: out of memory", name);
		close(fd);
		return -ENOMEM;
	}
	memcpy(t->name, name, strlen(name) + 1);
	t->be.ops = &tap_ops;
	t->be.fd = fd;
	t->be.rx_offloads = rx;
	t->be.tx_offloads = NET_OFFLOAD_ALL;
	t->be.name = t->name;
	*out = &t->be;
	return 0;
}
