/* SPDX-License-Identifier: MIT */
/*
 * garp-watch: the host's side of the lab's announce test (issue 11).
 *
 *   garp-watch IFNAME MAC IPV4 COUNT SECS
 *
 * Watches the frames interface IFNAME (a tap) receives from the guest,
 * through a packet socket bound to it, and counts those from MAC that
 * announce it: gratuitous ARPs for IPV4 (an ARP request or reply whose
 * sender and target protocol addresses are both IPV4, as Linux sends for
 * every address when its virtio-net driver sees VIRTIO_NET_S_ANNOUNCE) and
 * RARP requests (EtherType 0x8035, what visor sends itself for a guest
 * that cannot announce).  Prints "WATCHING IFNAME" once the socket is
 * bound (start the VM after that line), "GARP n" / "RARP n" for each, and
 * at the end "GARP-COUNT n RARP-COUNT m".  Exits 0 once COUNT gratuitous
 * ARPs were seen, 1 if SECS seconds pass first (or on an error).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int parse_mac(const char *s, unsigned char mac[6])
{
	unsigned v[6];
	char tail;
	if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) !=
	    6)
		return -1;
	for (int i = 0; i < 6; i++) {
		if (v[i] > 0xff)
			return -1;
		mac[i] = (unsigned char)v[i];
	}
	return 0;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
	unsigned char mac[6];
	struct in_addr ip;
	if (argc != 6 || parse_mac(argv[2], mac) || inet_pton(AF_INET, argv[3], &ip) != 1 ||
	    atoi(argv[4]) < 1 || atoi(argv[5]) < 1) {
		fprintf(stderr, "usage: garp-watch IFNAME MAC IPV4 COUNT SECS\n");
		return 1;
	}
	int want = atoi(argv[4]);
	long long deadline = now_ms() + 1000LL * atoi(argv[5]);
	unsigned idx = if_nametoindex(argv[1]);
	if (!idx) {
		fprintf(stderr, "garp-watch: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	struct sockaddr_ll sll = {.sll_family = AF_PACKET,
				  .sll_protocol = htons(ETH_P_ALL),
				  .sll_ifindex = (int)idx};
	if (s < 0 || bind(s, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		fprintf(stderr, "garp-watch: packet socket on %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	printf("WATCHING %s\n", argv[1]);
	fflush(stdout);
	int garps = 0, rarps = 0;
	while (garps < want) {
		long long left = deadline - now_ms();
		if (left <= 0)
			break;
		struct pollfd p = {.fd = s, .events = POLLIN};
		if (poll(&p, 1, left > 1000 ? 1000 : (int)left) <= 0)
			continue;
		unsigned char f[2048];
		struct sockaddr_ll from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(s, f, sizeof(f), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		/* the guest's frames arrive on the tap; what the host sends
		 * out of it is not the guest's */
		if (n < 14 || from.sll_pkttype == PACKET_OUTGOING || memcmp(f + 6, mac, 6))
			continue;
		unsigned type = (unsigned)f[12] << 8 | f[13];
		if (type == 0x8035) {
			printf("RARP %d\n", ++rarps);
			fflush(stdout);
			continue;
		}
		/* ARP for Ethernet/IPv4: htype 1, ptype 0x0800, hlen 6, plen 4,
		 * opcode 1 or 2, sender (MAC, IP), target (MAC, IP) */
		if (type != 0x0806 || n < 42)
			continue;
		const unsigned char *a = f + 14;
		unsigned op = (unsigned)a[6] << 8 | a[7];
		if (a[0] || a[1] != 1 || a[2] != 8 || a[3] || a[4] != 6 || a[5] != 4 ||
		    (op != 1 && op != 2))
			continue;
		if (!memcmp(a + 8, mac, 6) && !memcmp(a + 14, &ip, 4) && !memcmp(a + 24, &ip, 4)) {
			printf("GARP %d\n", ++garps);
			fflush(stdout);
		}
	}
	printf("GARP-COUNT %d RARP-COUNT %d\n", garps, rarps);
	close(s);
	return garps >= want ? 0 : 1;
}
