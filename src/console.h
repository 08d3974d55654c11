/* SPDX-License-Identifier: MIT */
/*
 * console.h - visor's terminal: raw mode, the escape sequence, guest output.
 *
 * When stdin is a terminal it is put in raw mode (so Ctrl-C, Ctrl-Z, ... go
 * to the guest) and restored on every exit path: normal exit (atexit), fatal
 * and terminating signals (the handler restores, then re-raises).
 *
 * Escape: Ctrl-A x quits visor; Ctrl-A Ctrl-A sends one Ctrl-A; Ctrl-A
 * followed by anything else sends both bytes.
 */
#ifndef VISOR_CONSOLE_H
#define VISOR_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONSOLE_ESCAPE 0x01 /* Ctrl-A */

struct console {
	int in_fd;
	int out_fd;
	bool raw;            /* terminal switched to raw mode */
	bool escape_pending; /* last byte was the escape character */
	uint64_t out_dropped;
};

/* Set up the console on @in_fd/@out_fd; switches a terminal to raw mode
 * and installs the restore handlers.  0 / -errno. */
int console_init(struct console *c, int in_fd, int out_fd);

/* Restore the terminal (idempotent, async-signal-safe). */
void console_restore(void);

/* Apply the escape sequence to input bytes in[0..n): writes what goes to
 * the guest into out (at least n+1 bytes) and returns its length; sets
 * *quit when Ctrl-A x was seen (bytes after it are dropped). */
size_t console_filter_input(struct console *c, const uint8_t *in, size_t n, uint8_t *out,
			    bool *quit);

/* Write guest output (blocking, retried on EINTR/partial writes). */
void console_write(struct console *c, const uint8_t *buf, size_t len);

#endif
