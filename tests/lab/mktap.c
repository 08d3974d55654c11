/* SPDX-License-Identifier: MIT */
/*
 * mktap: a persistent tap device that a given user may attach to, for the
 * jailer tests (a jailed VMM has no CAP_NET_ADMIN to make one; busybox has
 * neither `ip tuntap` nor `tunctl -u`).
 *
 *   mktap NAME UID GID
 *
 * Makes tap NAME (IFF_TAP | IFF_NO_PI) in the caller's network namespace,
 * owned by UID and GID, persistent; exits 0, or 1 with a message.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 4 || strlen(argv[1]) >= IFNAMSIZ) {
		fprintf(stderr, "usage: mktap NAME UID GID\n");
		return 1;
	}
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "mktap: /dev/net/tun: %s\n", strerror(errno));
		return 1;
	}
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", argv[1]);
	unsigned long uid = strtoul(argv[2], NULL, 10), gid = strtoul(argv[3], NULL, 10);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETOWNER, uid) < 0 ||
	    ioctl(fd, TUNSETGROUP, gid) < 0 || ioctl(fd, TUNSETPERSIST, 1UL) < 0) {
		fprintf(stderr, "mktap: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	close(fd);
	return 0;
}
