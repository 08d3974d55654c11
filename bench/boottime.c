/*
 * boottime - timing harness for bench/boot.
 *
 *   boottime [-l LABEL] [-r RUN] [-i INIT_MARKER] [-p POWEROFF_MARKER]
 *            [-m GUEST_MEM_BYTES] [-t TIMEOUT_S] [-o CONSOLE_LOG [-T]] [-e STDERR_LOG]
 *            [-N] [-W] -- COMMAND [ARGS...]
 *
 * -o saves the console output; with -T each line is prefixed with the time
 * its first byte arrived ("[   1234.5] ", ms since t0).
 *
 * Runs COMMAND (a VMM) with stdin from /dev/null, stdout on a pipe and
 * stderr to STDERR_LOG (default /dev/null).
 *
 * Two switches for bench/boot's isolation variants (test set-ups, not
 * timed: both happen before the clock starts or in the child before exec):
 *   -N  COMMAND runs without /proc: in a new mount namespace with an empty
 *       tmpfs mounted on /proc (as in a jail: the console cannot reopen its
 *       stdout through /proc/self/fd/1).  Needs root.
 *   -W  the pipe is made writable by every user (mode 0666), so that a VMM
 *       running as another user can reopen it through /proc/self/fd/1.  Timestamps (CLOCK_MONOTONIC):
 *   t0      just before fork()
 *   t_init  when INIT_MARKER first appears in a console line on the pipe
 *   t_off   when POWEROFF_MARKER first appears
 *   t_exit  when the process has exited (pidfd readable; waitpid fallback)
 * At t_init it reads /proc/PID/smaps and splits the resident set into the
 * guest-RAM mapping(s) (every mapping at least GUEST_MEM_BYTES and less than
 * twice that long) and the rest (the VMM's own overhead).  Prints one line on stdout:
 *
 *   BOOTTIME label=L run=R status=S init_ms=.. off_ms=.. exit_ms=.. poweroff_ms=..
 *            rss_kb=.. ram_rss_kb=.. ram_thp_kb=.. ram_maps=N ram_size_kb=.. ovh_rss_kb=..
 *            ovh_anon_kb=.. ovh_pss_kb=.. con_bytes=.. con_fds=N con_nb=N ctxsw=..
 *
 * Sampled at t_init too: con_bytes, the console bytes read up to the init
 * line; con_fds, how many of the VMM's descriptors are the pipe's write end
 * and con_nb how many of those have O_NONBLOCK (a VMM console writing its
 * own non-blocking description has one); ctxsw, the context switches of
 * all the VMM's threads so far (voluntary + involuntary).  -1: not read.
 *
 * Times are milliseconds since t0; poweroff_ms = exit_ms - off_ms.  A value
 * that could not be measured is -1.  status is the exit status, "sigN" for a
 * signal, or "timeout".  The harness exits 0 when the VMM exited 0 and both
 * markers were seen, 1 otherwise.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void usage(void)
{
	fprintf(stderr, "usage: boottime [-l LABEL] [-r RUN] [-i INIT_MARKER] [-p POWEROFF_MARKER] "
			"[-m GUEST_MEM_BYTES] [-t TIMEOUT_S] [-o CONSOLE_LOG [-T]] [-e STDERR_LOG] "
			"[-N] [-W] -- COMMAND [ARGS...]\n");
	exit(2);
}

struct mem {
	long long rss_kb, ram_rss_kb, ram_size_kb, ram_thp_kb, ovh_anon_kb, ovh_pss_kb;
	int ram_maps;
	int ok;
};

/* Sum /proc/PID/smaps: mappings of ram_bytes up to (not incl.) twice that are
 * guest RAM (QEMU's RAM block may be a little larger than the guest memory;
 * a TCG code buffer of 1 GiB or more is not guest RAM). */
static void sample_smaps(pid_t pid, unsigned long long ram_bytes, struct mem *m)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	FILE *f = fopen(path, "r");
	memset(m, 0, sizeof(*m));
	if (!f)
		return;
	int is_ram = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long lo, hi;
		long long kb;
		char *nl = strchr(line, '\n');
		/* Lines longer than the buffer are only mapping names: skip the rest. */
		if (!nl && !feof(f)) {
			int c;
			while ((c = fgetc(f)) != EOF && c != '\n')
				;
		}
		/* Header line "start-end perms offset dev inode [name]"; no field
		 * line ("Rss:", "AnonHugePages:", ...) parses as hex-hex. */
		if (sscanf(line, "%llx-%llx ", &lo, &hi) == 2) {
			is_ram = (hi - lo) >= ram_bytes && (hi - lo) < 2 * ram_bytes;
			if (is_ram) {
				m->ram_maps++;
				m->ram_size_kb += (long long)((hi - lo) / 1024);
			}
			continue;
		}
		if (sscanf(line, "Rss: %lld kB", &kb) == 1) {
			m->rss_kb += kb;
			if (is_ram)
				m->ram_rss_kb += kb;
		} else if (sscanf(line, "AnonHugePages: %lld kB", &kb) == 1) {
			if (is_ram)
				m->ram_thp_kb += kb;
		} else if (sscanf(line, "Anonymous: %lld kB", &kb) == 1) {
			if (!is_ram)
				m->ovh_anon_kb += kb;
		} else if (sscanf(line, "Pss: %lld kB", &kb) == 1) {
			if (!is_ram)
				m->ovh_pss_kb += kb;
		}
	}
	fclose(f);
	m->ok = 1;
}

struct fdinfo {
	int con_fds, con_nb;
	long long ctxsw;
};

/* The VMM's descriptors on the pipe (inode @ino) and how many are
 * O_NONBLOCK; the context switches of all its threads. */
static void sample_fds(pid_t pid, unsigned long long ino, struct fdinfo *fi)
{
	char path[320], want[48], link[64], line[256];
	snprintf(want, sizeof(want), "pipe:[%llu]", ino);
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	if (d) {
		fi->con_fds = fi->con_nb = 0;
		struct dirent *e;
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "/proc/%d/fd/%s", (int)pid, e->d_name);
			ssize_t n = readlink(path, link, sizeof(link) - 1);
			if (n <= 0)
				continue;
			link[n] = 0;
			if (strcmp(link, want))
				continue;
			fi->con_fds++;
			snprintf(path, sizeof(path), "/proc/%d/fdinfo/%s", (int)pid, e->d_name);
			FILE *f = fopen(path, "r");
			unsigned flags;
			while (f && fgets(line, sizeof(line), f))
				if (sscanf(line, "flags: %o", &flags) == 1 && (flags & O_NONBLOCK))
					fi->con_nb++;
			if (f)
				fclose(f);
		}
		closedir(d);
	}
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (d) {
		fi->ctxsw = 0;
		struct dirent *e;
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "/proc/%d/task/%s/status", (int)pid, e->d_name);
			FILE *f = fopen(path, "r");
			long long v;
			while (f && fgets(line, sizeof(line), f))
				if (sscanf(line, "voluntary_ctxt_switches: %lld", &v) == 1 ||
				    sscanf(line, "nonvoluntary_ctxt_switches: %lld", &v) == 1)
					fi->ctxsw += v;
			if (f)
				fclose(f);
		}
		closedir(d);
	}
}

int main(int argc, char **argv)
{
	const char *label = "vmm", *run = "0", *init_marker = "Run /init as init process";
	const char *off_marker = "reboot: Power down", *console_log = NULL, *err_log = "/dev/null";
	unsigned long long ram_bytes = 256ULL << 20;
	double timeout_ms = 300e3;
	int opt, stamp = 0, noproc = 0, pipe_all = 0;

	while ((opt = getopt(argc, argv, "+l:r:i:p:m:t:o:e:TNW")) != -1) {
		switch (opt) {
		case 'l': label = optarg; break;
		case 'r': run = optarg; break;
		case 'i': init_marker = optarg; break;
		case 'p': off_marker = optarg; break;
		case 'm': ram_bytes = strtoull(optarg, NULL, 0); break;
		case 't': timeout_ms = atof(optarg) * 1e3; break;
		case 'o': console_log = optarg; break;
		case 'e': err_log = optarg; break;
		case 'T': stamp = 1; break;
		case 'N': noproc = 1; break;
		case 'W': pipe_all = 1; break;
		default: usage();
		}
	}
	if (optind >= argc || ram_bytes == 0)
		usage();
	char **cmd = argv + optind;

	FILE *con = NULL;
	if (console_log && !(con = fopen(console_log, "w"))) {
		perror(console_log);
		return 2;
	}
	int errfd = open(err_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	int p[2];
	if (errfd < 0 || nullfd < 0 || pipe2(p, O_CLOEXEC) < 0) {
		perror("boottime: setup");
		return 2;
	}
	if (pipe_all && fchmod(p[1], 0666) < 0) {
		perror("boottime: -W: fchmod of the pipe");
		return 2;
	}
	struct stat pst;
	unsigned long long pipe_ino = fstat(p[1], &pst) == 0 ? (unsigned long long)pst.st_ino : 0;

	double t0 = now_ms();
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 2;
	}
	if (pid == 0) {
		dup2(nullfd, 0);
		dup2(p[1], 1);
		dup2(errfd, 2);
		if (noproc && (unshare(CLONE_NEWNS) < 0 ||
			       mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
			       mount("none", "/proc", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
				     "size=4k,mode=755") < 0)) {
			dprintf(errfd, "boottime: -N: hiding /proc: %s\n", strerror(errno));
			_exit(127);
		}
		execvp(cmd[0], cmd);
		dprintf(errfd, "boottime: exec %s: %s\n", cmd[0], strerror(errno));
		_exit(127);
	}
	close(p[1]);
	close(errfd);
	close(nullfd);
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);

	double t_init = -1, t_off = -1, t_exit = -1;
	struct mem m = {0};
	struct fdinfo fi = {-1, -1, -1};
	long long con_bytes = 0, init_bytes = -1;
	char linebuf[4096];
	size_t len = 0;
	int at_bol = 1; /* console log: at the beginning of a line */
	int pipe_open = 1, exited = 0, status = 0, timed_out = 0;
	size_t init_len = strlen(init_marker), off_len = strlen(off_marker);

	while (!exited || pipe_open) {
		struct pollfd fds[2];
		int n = 0, pipe_idx = -1, pid_idx = -1;
		if (pipe_open) {
			fds[n] = (struct pollfd){.fd = p[0], .events = POLLIN};
			pipe_idx = n++;
		}
		if (!exited && pfd >= 0) {
			fds[n] = (struct pollfd){.fd = pfd, .events = POLLIN};
			pid_idx = n++;
		}
		double left = t0 + timeout_ms - now_ms();
		int wait = (!exited && pfd < 0) ? 1 : (int)(left > 0 ? left : 0) + 1;
		if (exited)
			wait = 2000; /* only draining the pipe now */
		int r = poll(fds, n, wait);
		if (r < 0 && errno != EINTR) {
			perror("poll");
			break;
		}
		if (!exited && pfd < 0) {
			int st;
			if (waitpid(pid, &st, WNOHANG) == pid) {
				t_exit = now_ms() - t0;
				status = st;
				exited = 2; /* already reaped */
			}
		}
		if (pid_idx >= 0 && r > 0 && (fds[pid_idx].revents & POLLIN)) {
			t_exit = now_ms() - t0;
			exited = 1;
		}
		if (pipe_idx >= 0 && r > 0 && (fds[pipe_idx].revents & (POLLIN | POLLHUP))) {
			char buf[4096];
			ssize_t got = read(p[0], buf, sizeof(buf));
			double t = now_ms() - t0;
			if (got <= 0) {
				if (got == 0 || (errno != EINTR && errno != EAGAIN))
					pipe_open = 0;
			} else {
				if (con && !stamp)
					fwrite(buf, 1, (size_t)got, con);
				for (ssize_t i = 0; i < got; i++) {
					char c = buf[i];
					if (con && stamp) {
						if (at_bol && c != '\r')
							fprintf(con, "[%9.1f] ", t);
						if (c != '\r')
							fputc(c, con);
						at_bol = c == '\n';
					}
					if (c == '\n' || c == '\r') {
						len = 0;
						continue;
					}
					if (len < sizeof(linebuf) - 1)
						linebuf[len++] = c;
					linebuf[len] = 0;
					/* A marker counts as soon as its last byte arrives. */
					if (t_init < 0 && len >= init_len &&
					    memcmp(linebuf + len - init_len, init_marker, init_len) == 0) {
						t_init = t;
						init_bytes = con_bytes + i + 1;
						if (!exited) {
							sample_smaps(pid, ram_bytes, &m);
							sample_fds(pid, pipe_ino, &fi);
						}
					}
					if (t_off < 0 && len >= off_len &&
					    memcmp(linebuf + len - off_len, off_marker, off_len) == 0)
						t_off = t;
				}
				con_bytes += got;
			}
		}
		if (!exited && now_ms() - t0 > timeout_ms) {
			kill(pid, SIGKILL);
			timed_out = 1;
			t_exit = -1;
			waitpid(pid, &status, 0);
			exited = 2;
		}
		if (exited && !pipe_open)
			break;
		if (exited && r == 0)
			break; /* pipe kept open by a descendant: stop waiting */
	}
	if (exited != 2)
		waitpid(pid, &status, 0);
	if (exited == 0 || t_exit < 0) {
		if (!timed_out)
			t_exit = now_ms() - t0;
	}
	if (timed_out)
		t_exit = -1;
	if (con)
		fclose(con);

	char st[32];
	if (timed_out)
		snprintf(st, sizeof(st), "timeout");
	else if (WIFEXITED(status))
		snprintf(st, sizeof(st), "%d", WEXITSTATUS(status));
	else
		snprintf(st, sizeof(st), "sig%d", WTERMSIG(status));
	double poweroff = (t_off >= 0 && t_exit >= 0) ? t_exit - t_off : -1;
	long long ovh = m.ok ? m.rss_kb - m.ram_rss_kb : -1;
	printf("BOOTTIME label=%s run=%s status=%s init_ms=%.1f off_ms=%.1f exit_ms=%.1f "
	       "poweroff_ms=%.1f rss_kb=%lld ram_rss_kb=%lld ram_thp_kb=%lld ram_maps=%d ram_size_kb=%lld "
	       "ovh_rss_kb=%lld ovh_anon_kb=%lld ovh_pss_kb=%lld con_bytes=%lld con_fds=%d con_nb=%d "
	       "ctxsw=%lld\n",
	       label, run, st, t_init, t_off, t_exit, poweroff, m.ok ? m.rss_kb : -1,
	       m.ok ? m.ram_rss_kb : -1, m.ok ? m.ram_thp_kb : -1, m.ram_maps, m.ok ? m.ram_size_kb : -1, ovh,
	       m.ok ? m.ovh_anon_kb : -1, m.ok ? m.ovh_pss_kb : -1, init_bytes, fi.con_fds, fi.con_nb,
	       fi.ctxsw);
	fflush(stdout);
	return (!timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0 && t_init >= 0 &&
		t_off >= 0) ? 0 : 1;
}
