/* SPDX-License-Identifier: MIT */
#include "console.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "util/log.h"

static struct termios saved_tio;
static volatile sig_atomic_t saved_valid;
static int saved_fd = -1;

void console_restore(void)
{
	if (saved_valid) {
		tcsetattr(saved_fd, TCSAFLUSH, &saved_tio);
		saved_valid = 0;
		log_set_raw(false);
	}
}

static void on_fatal(int sig)
{
	console_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

int console_init(struct console *c, int in_fd, int out_fd)
{
	memset(c, 0, sizeof(*c));
	c->in_fd = in_fd;
	c->out_fd = out_fd;
	if (!isatty(in_fd))
		return 0;
	struct termios t;
	if (tcgetattr(in_fd, &t) < 0)
		return -errno;
	saved_tio = t;
	saved_fd = in_fd;
	/* Restore on every way out: exit(), and signals that end the process. */
	static bool handlers;
	if (!handlers) {
		atexit(console_restore);
		static const int sigs[] = {SIGTERM, SIGHUP, SIGINT, SIGQUIT, SIGSEGV,
					   SIGBUS,  SIGFPE, SIGILL, SIGABRT};
		for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
			struct sigaction sa;
			memset(&sa, 0, sizeof(sa));
			sa.sa_handler = on_fatal;
			sa.sa_flags = SA_RESETHAND;
			sigaction(sigs[i], &sa, NULL);
		}
		handlers = true;
	}
	cfmakeraw(&t);
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	if (tcsetattr(in_fd, TCSANOW, &t) < 0)
		return -errno;
	saved_valid = 1;
	c->raw = true;
	log_set_raw(true);
	return 0;
}

size_t console_filter_input(struct console *c, const uint8_t *in, size_t n, uint8_t *out,
			    bool *quit)
{
	size_t o = 0;
	*quit = false;
	for (size_t i = 0; i < n; i++) {
		uint8_t b = in[i];
		if (c->escape_pending) {
			c->escape_pending = false;
			if (b == 'x' || b == 'X') {
				*quit = true;
				return o;
			}
			if (b != CONSOLE_ESCAPE)
				out[o++] = CONSOLE_ESCAPE;
			out[o++] = b;
			continue;
		}
		if (b == CONSOLE_ESCAPE) {
			c->escape_pending = true;
			continue;
		}
		out[o++] = b;
	}
	return o;
}

void console_write(struct console *c, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t w = write(c->out_fd, buf, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			/* EAGAIN on a non-blocking fd, EPIPE, ...: drop and count */
			c->out_dropped += len;
			return;
		}
		buf += w;
		len -= (size_t)w;
	}
}
