/* SPDX-License-Identifier: MIT */
/* The control socket: commands and replies, bounds. */
#include "../../src/control.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../src/event/loop.h"
#include "test.h"

static void handler(void *ctx, const char *line, char *reply, size_t len)
{
	int *count = ctx;
	(*count)++;
	if (!strcmp(line, "ping"))
		snprintf(reply, len, "OK pong");
	else
		snprintf(reply, len, "ERROR unknown command '%.40s'", line);
}

static void *run_loop(void *arg)
{
	loop_run(arg);
	return NULL;
}

static int connect_to(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static int read_line(int fd, char *buf, size_t len)
{
	size_t n = 0;
	while (n + 1 < len) {
		ssize_t r = read(fd, buf + n, 1);
		if (r <= 0)
			break;
		if (buf[n] == '\n')
			break;
		n++;
	}
	buf[n] = 0;
	return (int)n;
}

TEST(commands_replies_and_limits)
{
	char dir[] = "/tmp/visor-ctl-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[128];
	snprintf(path, sizeof(path), "%s/ctl.sock", dir);
	/* a regular file in the way is an error, not replaced */
	FILE *f = fopen(path, "w");
	fclose(f);
	struct loop l;
	CHECK_EQ(loop_init(&l), 0);
	struct control c;
	char err[256] = "";
	int count = 0;
	CHECK(control_init(&c, path, &l, handler, &count, err, sizeof(err)) < 0);
	CHECK(strstr(err, "not a socket") != NULL);
	unlink(path);
	CHECK_EQ(control_init(&c, path, &l, handler, &count, err, sizeof(err)), 0);
	pthread_t t;
	pthread_create(&t, NULL, run_loop, &l);

	int fd = connect_to(path);
	CHECK(fd >= 0);
	char line[512];
	CHECK(write(fd, "ping\nbogus\r\n", 12) == 12);
	read_line(fd, line, sizeof(line));
	CHECK_STR(line, "OK pong");
	read_line(fd, line, sizeof(line));
	CHECK(strncmp(line, "ERROR unknown command 'bogus'", 29) == 0);
	/* a line over the limit: error, then the client is dropped */
	char big[CONTROL_MAX_LINE + 10];
	memset(big, 'a', sizeof(big));
	CHECK(write(fd, big, sizeof(big)) == (ssize_t)sizeof(big));
	read_line(fd, line, sizeof(line));
	CHECK_STR(line, "ERROR line too long");
	CHECK(read(fd, line, 1) <= 0); /* closed (EOF or ECONNRESET: unread data) */
	close(fd);

	/* client limit */
	int fds[CONTROL_MAX_CLIENTS + 1];
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		fds[i] = connect_to(path);
		CHECK(fds[i] >= 0);
		CHECK(write(fds[i], "ping\n", 5) == 5);
		read_line(fds[i], line, sizeof(line));
		CHECK_STR(line, "OK pong");
	}
	fds[CONTROL_MAX_CLIENTS] = connect_to(path);
	read_line(fds[CONTROL_MAX_CLIENTS], line, sizeof(line));
	CHECK_STR(line, "ERROR too many clients");
	for (int i = 0; i <= CONTROL_MAX_CLIENTS; i++)
		close(fds[i]);
	CHECK(count >= CONTROL_MAX_CLIENTS + 2);

	loop_stop(&l);
	int wake = connect_to(path); /* wake epoll_wait so the loop sees stop */
	if (wake >= 0)
		close(wake);
	pthread_join(t, NULL);
	control_destroy(&c);
	CHECK(access(path, F_OK) != 0);
	loop_destroy(&l);
	rmdir(dir);
}

TEST_MAIN()
