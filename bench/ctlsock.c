/* SPDX-License-Identifier: MIT */
/*
 * ctlsock: send one command line to visor's control socket and print the
 * reply (used by bench/net --density to inflate balloons).
 *
 *   ctlsock PATH COMMAND...     e.g. ctlsock /tmp/c0.sock balloon 128M
 *
 * Prints the first reply line, or "CLOSED" if the socket closes without one.
 * Exit status 0 when the reply starts with "OK".
 */
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char cmd[512] = "", buf[1024];
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	size_t n = 0;
	int s, i;

	if (argc < 3) {
		fprintf(stderr, "usage: ctlsock PATH COMMAND...\n");
		return 2;
	}
	for (i = 2; i < argc; i++) {
		if (strlen(cmd) + strlen(argv[i]) + 2 >= sizeof(cmd))
			return 2;
		strcat(cmd, argv[i]);
		strcat(cmd, i + 1 < argc ? " " : "\n");
	}
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", argv[1]);
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("ctlsock: connect");
		return 2;
	}
	if (write(s, cmd, strlen(cmd)) != (ssize_t)strlen(cmd)) {
		perror("ctlsock: write");
		return 2;
	}
	while (n + 1 < sizeof(buf)) {
		struct pollfd p = {.fd = s, .events = POLLIN};
		ssize_t r;
		if (poll(&p, 1, 10000) <= 0)
			break;
		r = read(s, buf + n, 1);
		if (r <= 0 || buf[n] == '\n')
			break;
		n++;
	}
	buf[n] = 0;
	printf("%s\n", n ? buf : "CLOSED");
	return strncmp(buf, "OK", 2) ? 1 : 0;
}
