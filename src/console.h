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
 *
 * Guest output never blocks the caller (a vCPU thread) or the shutdown of
 * the VM, whoever reads (or does not read) the other end:
 *
 *  - A regular file is written directly (its writes do not wait for a
 *    reader).
 *  - A pipe, FIFO, terminal or character device is written through a
 *    private open file description (reopened through /proc/self/fd/N, so
 *    the O_NONBLOCK set on it does not reach the description shared with
 *    the parent shell); a socket with send(MSG_DONTWAIT).  The writing
 *    thread writes at once what the descriptor takes without waiting; the
 *    rest goes into a CONSOLE_OUT_BUF_SIZE ring that a writer thread drains
 *    as the descriptor becomes writable (poll).  Bytes that find the ring
 *    full are dropped and counted.
 *  - When no private description can be made (no /proc, a pipe of another
 *    user, ...: a VMM in the jailer's jail) the writer thread writes the
 *    ring to the shared descriptor with blocking writes: it may block,
 *    alone; nobody ever waits for it.
 *  - Gathering (both of the above): output that comes within
 *    CONSOLE_GATHER_MS of the last write waits in the ring and leaves with
 *    what follows it: at the end of its line, or at most CONSOLE_GATHER_MS
 *    later (written by the writer thread when its time is up, or at once
 *    by the next output that comes after that), so that a guest writing a
 *    byte at a time (the UART: an exit per byte) costs a write, and at
 *    most one wake-up of the writer thread, per line or CONSOLE_GATHER_MS
 *    instead of per byte.  The first byte after a pause leaves at once; a
 *    ring half full leaves at once.
 *  - console_stop() gives buffered bytes at most CONSOLE_STOP_FLUSH_MS to
 *    leave, then drops the rest; if the machine never calls it, an atexit
 *    handler does the same (and reports the drops it saw) so that output
 *    written just before the guest powered off still appears.
 *
 * Writes after the reader of a pipe went away fail with EPIPE: the process
 * must ignore SIGPIPE (main.c does).  Drops are counted in out_dropped.
 */
#ifndef VISOR_CONSOLE_H
#define VISOR_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONSOLE_ESCAPE 0x01 /* Ctrl-A */

/* Guest output buffered for a slow or absent reader. */
#define CONSOLE_OUT_BUF_SIZE ((size_t)128 << 10)
/* How long console_stop() (and exit) lets buffered output drain. */
#define CONSOLE_STOP_FLUSH_MS 100
/* While guest output keeps coming, it is written at most this often (a
 * write, then what comes in this time is gathered; see above). */
#define CONSOLE_GATHER_MS 2
/* A FIFO output without a reader is reopened at most this often. */
#define CONSOLE_FIFO_RETRY_MS 200

/* console_set_output_fd() flag: write the descriptor as it is, never
 * through a private non-blocking description (tests; the fallback). */
#define CONSOLE_OUT_SHARED 0x1u

struct console_out; /* output state, owned by console.c */

struct console {
	int in_fd;
	int out_fd;
	bool raw;            /* terminal switched to raw mode */
	bool escape_pending; /* last byte was the escape character */
	/* Bytes of guest output dropped (full buffer, reader gone, write
	 * error).  Updated by console_write() and console_stop(); read it
	 * after the vCPUs have stopped. */
	uint64_t out_dropped;
	struct console_out *out; /* NULL: no output (bytes are dropped) */
};

/* Set up the console on @in_fd/@out_fd: switches a terminal @in_fd to raw
 * mode and installs the restore handlers, then sends guest output to
 * @out_fd as console_set_output_fd(c, out_fd, 0) does.  0 / -errno; on an
 * error of the output set-up the console still works with direct
 * (possibly blocking) writes to @out_fd. */
int console_init(struct console *c, int in_fd, int out_fd);

/* Send guest output to @fd (not taken over: it is duplicated or reopened)
 * from now on, see the file comment for how per kind of file.  The previous
 * output is stopped first as console_stop() does.  Call before the vCPUs
 * run or while none writes (not concurrently with console_write).
 * @flags: 0 or CONSOLE_OUT_SHARED.  0 / -errno (-EBADF for a closed fd,
 * -ENOMEM, or a thread creation error; the console then has no output). */
int console_set_output_fd(struct console *c, int fd, unsigned flags);

/* Send guest output to the file at @path (Firecracker's PUT /serial
 * "serial_out_path") instead: a regular file is created if missing (mode
 * 0600) and appended to; a FIFO is opened O_WRONLY|O_NONBLOCK, and while
 * nobody has it open for reading (or after the reader went away) guest
 * output is dropped and counted, the FIFO being reopened (by the output's
 * writer thread, not the caller) at most every CONSOLE_FIFO_RETRY_MS when
 * output arrives; other files (a terminal, a
 * character device) are written non-blocking through the ring.  Same
 * calling rules as console_set_output_fd().  0 / -errno with a one-line
 * message in @err; the previous output is kept on error. */
int console_set_output_path(struct console *c, const char *path, char *err, size_t errlen);

/* Stop the output: let buffered bytes drain for at most
 * CONSOLE_STOP_FLUSH_MS, drop (and count) the rest, stop the writer thread
 * (joined when it is not stuck in a blocking write, else left to end on its
 * own) and release the output.  Updates out_dropped; later console_write()
 * calls drop.  Never blocks longer than about CONSOLE_STOP_FLUSH_MS.  Call
 * after the vCPU threads have stopped.  Idempotent. */
void console_stop(struct console *c);

/* Restore the terminal (idempotent, async-signal-safe). */
void console_restore(void);

/* Apply the escape sequence to input bytes in[0..n): writes what goes to
 * the guest into out (at least n+1 bytes) and returns its length; sets
 * *quit when Ctrl-A x was seen (bytes after it are dropped). */
size_t console_filter_input(struct console *c, const uint8_t *in, size_t n, uint8_t *out,
			    bool *quit);

/* Write guest output; never blocks (see the file comment): what cannot be
 * written or buffered now is dropped and counted in out_dropped.  May be
 * called from several vCPU threads at once. */
void console_write(struct console *c, const uint8_t *buf, size_t len);

#endif
