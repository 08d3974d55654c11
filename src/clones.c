/* SPDX-License-Identifier: MIT */
#include "clones.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api/api.h"
#include "snapshot/config_section.h"
#include "snapshot/format.h"
#include "util/log.h"
#include "util/str.h"

#define CLONE_MARK "{n}"
/* How long the command waits for every clone to run. */
#define CLONES_WAIT_MS (300 * 1000)

/* @s with every "{n}" replaced by @k (malloc'd), or NULL. */
static char *subst(const char *s, unsigned k)
{
	char num[16];
	int nl = snprintf(num, sizeof(num), "%u", k);
	size_t marks = 0;
	for (const char *p = strstr(s, CLONE_MARK); p; p = strstr(p + 3, CLONE_MARK))
		marks++;
	char *out = malloc(strlen(s) + marks * (size_t)nl + 1);
	if (!out)
		return NULL;
	char *w = out;
	for (const char *p = s; *p;) {
		if (!strncmp(p, CLONE_MARK, 3)) {
			memcpy(w, num, (size_t)nl);
			w += nl;
			p += 3;
		} else {
			*w++ = *p++;
		}
	}
	*w = 0;
	return out;
}

void clones_argv_free(char **av)
{
	if (!av)
		return;
	for (char **p = av; *p; p++)
		free(*p);
	free(av);
}

/* "--opt" or "--opt=..." is @opt; *@sep: the value is the next argument */
static bool is_opt(const char *arg, const char *opt, bool *sep)
{
	size_t n = strlen(opt);
	if (strncmp(arg, opt, n) || (arg[n] && arg[n] != '='))
		return false;
	*sep = !arg[n];
	return true;
}

char **clones_child_argv(int argc, char *const *argv, const char *prefix, unsigned k,
			 int ready_fd)
{
	char **av = calloc((size_t)argc + 5, sizeof(*av));
	if (!av)
		return NULL;
	int n = 0;
	for (int i = 0; i < argc; i++) {
		bool sep;
		if (i > 0 && (is_opt(argv[i], "--clones", &sep) || is_opt(argv[i], "--id", &sep) ||
			      is_opt(argv[i], "--ready-fd", &sep))) {
			i += sep;
			continue;
		}
		if (!(av[n++] = subst(argv[i], k)))
			goto oom;
	}
	char id[CONFIG_ID_MAX + 16], fd[16];
	snprintf(id, sizeof(id), "%s-%u", prefix, k);
	snprintf(fd, sizeof(fd), "%d", ready_fd);
	if (!(av[n++] = strdup("--id")) || !(av[n++] = strdup(id)) ||
	    !(av[n++] = strdup("--ready-fd")) || !(av[n++] = strdup(fd)))
		goto oom;
	return av;
oom:
	clones_argv_free(av);
	return NULL;
}

static bool id_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

void clones_prefix(const struct cli_opts *o, char *out, size_t len)
{
	/* room for "-1023" */
	size_t max = CONFIG_ID_MAX - 5 < len - 1 ? CONFIG_ID_MAX - 5 : len - 1;
	const char *src = o->id;
	char base[CONFIG_PATH_MAX];
	if (!src[0]) {
		snprintf(base, sizeof(base), "%s", o->restore_dir);
		size_t l = strlen(base);
		while (l > 1 && base[l - 1] == '/')
			base[--l] = 0;
		const char *slash = strrchr(base, '/');
		src = slash ? slash + 1 : base;
		for (const char *p = src; *p; p++)
			if (!id_char(*p))
				src = "";
		if (!src[0] || !strcmp(src, ".") || !strcmp(src, ".."))
			src = "clone";
	}
	str_copy(out, max + 1, src);
}

int clones_check(const struct cli_opts *o, const struct vm_config *snap, char *err, size_t len)
{
	for (uint32_t j = 0; j < o->nnet_override; j++) {
		bool found = false;
		for (uint32_t i = 0; i < snap->nnics; i++)
			found |= !strcmp(o->net_override[j].iface, snap->nics[i].id);
		if (!found)
			return err_set(err, len, -EINVAL,
				       "--net-override: the snapshot has no interface '%s'",
				       o->net_override[j].iface);
	}
	if (o->vsock_override[0] && !snap->vsock.enabled)
		return err_set(err, len, -EINVAL,
			       "--vsock-override: the snapshot has no vsock device");
	if (o->clones <= 1)
		return 0;
	if (o->api_sock_set && !strstr(o->api_sock, CLONE_MARK))
		return err_set(err, len, -EINVAL,
			       "--api-sock %s would be the socket of every clone: put {n} in it "
			       "(or leave it out: each clone gets SOCKDIR/ID-K.sock)",
			       o->api_sock);
	for (uint32_t i = 0; i < snap->nnics; i++) {
		const char *tap = NULL;
		for (uint32_t j = 0; j < o->nnet_override; j++)
			if (!strcmp(o->net_override[j].iface, snap->nics[i].id))
				tap = o->net_override[j].tap;
		if (!tap || !strstr(tap, CLONE_MARK))
			return err_set(err, len, -EINVAL,
				       "the snapshot's interface %s is on tap %s%s: clones cannot "
				       "share a tap; give each its own with --net-override %s=TAP{n}",
				       snap->nics[i].id, tap ? tap : snap->nics[i].tap,
				       tap ? " for every clone" : "", snap->nics[i].id);
	}
	if (snap->vsock.enabled && !strstr(o->vsock_override, CLONE_MARK))
		return err_set(err, len, -EINVAL,
			       "the snapshot's vsock device listens on %s: clones cannot share it; "
			       "give each its own with --vsock-override PATH{n}",
			       o->vsock_override[0] ? o->vsock_override : snap->vsock.uds);
	return 0;
}

/* The snapshot's configuration (for clones_check). */
static int read_snapshot_config(const struct cli_opts *o, struct vm_config *cfg, char *err,
				size_t len)
{
	char path[CONFIG_PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/%s", o->restore_dir, CLI_SNAPSHOT_STATE);
	uint8_t *buf;
	size_t blen;
	char e[256];
	if (snap_file_read(path, &buf, &blen, e, sizeof(e))) {
		return err_set(err, len, -EINVAL, "%s: %s", path, e);
	}
	struct snap_reader rd;
	uint32_t version;
	const uint8_t *p;
	size_t plen;
	int r = -EINVAL;
	if (snap_reader_open(buf, blen, &rd, e, sizeof(e)))
		err_set(err, len, 0, "%s: %s", path, e);
	else if (snap_reader_find(&rd, SNAP_CONFIG_ID, &version, &p, &plen))
		err_set(err, len, 0, "%s: no configuration section", path);
	else if (snap_config_read(p, plen, version, cfg, e, sizeof(e)))
		err_set(err, len, 0, "%s: %s", path, e);
	else
		r = 0;
	free(buf);
	return r;
}

struct clone {
	pid_t pid;
	bool ready, reaped;
	int status;
	char id[CONFIG_ID_MAX + 16];
	char log[256], console[256];
};

/* The last non-empty line of @path, for a clone that failed. */
static void last_line(const char *path, char *out, size_t len)
{
	out[0] = 0;
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = 0;
		if (line[0])
			snprintf(out, len, "%s", line);
	}
	fclose(f);
}

static pid_t start_clone(char **av, int ready_w, const char *console_path, const char *log_path)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	/* the child: its own session, stdin /dev/null, the console (stdout)
	 * and visor's log (stderr) each to its file, the ready pipe as fd 3,
	 * nothing else */
	setsid();
	int in = open("/dev/null", O_RDONLY);
	int out = open(console_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	int log = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (in < 0 || out < 0 || log < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 ||
	    dup2(log, 2) < 0 || dup2(ready_w, 3) < 0)
		_exit(127);
	for (int fd = 4; fd < 1024; fd++)
		close(fd);
	signal(SIGPIPE, SIG_DFL);
	execv("/proc/self/exe", av);
	dprintf(2, "visor: cannot run /proc/self/exe: %s\n", strerror(errno));
	_exit(127);
}

int clones_run(int argc, char **argv, const struct cli_opts *o)
{
	char err[512];
	struct vm_config *snap = calloc(1, sizeof(*snap));
	struct clone *c = calloc(o->clones, sizeof(*c));
	if (!snap || !c) {
		free(snap);
		free(c);
		log_error("--clones: out of memory");
		return 1;
	}
	*snap = o->cfg;
	if (read_snapshot_config(o, snap, err, sizeof(err)) ||
	    clones_check(o, snap, err, sizeof(err))) {
		log_error("--clones: %s", err);
		free(snap);
		free(c);
		return 1;
	}
	free(snap);
	char dir[96], prefix[CONFIG_ID_MAX + 1];
	if (cli_socket_dir(dir, sizeof(dir)) || api_ensure_dir(dir)) {
		log_error("--clones: cannot use the socket directory %s (set VISOR_RUN_DIR)", dir);
		free(c);
		return 1;
	}
	clones_prefix(o, prefix, sizeof(prefix));
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC)) {
		log_error("--clones: pipe: %s", strerror(errno));
		free(c);
		return 1;
	}
	uint64_t t0 = now_ns();
	uint32_t started = 0;
	for (uint32_t k = 0; k < o->clones; k++) {
		snprintf(c[k].id, sizeof(c[k].id), "%s-%u", prefix, k);
		snprintf(c[k].log, sizeof(c[k].log), "%s/%s.log", dir, c[k].id);
		snprintf(c[k].console, sizeof(c[k].console), "%s/%s.console", dir, c[k].id);
		char **av = clones_child_argv(argc, argv, prefix, k, 3);
		if (!av) {
			log_error("--clones: out of memory");
			break;
		}
		c[k].pid = start_clone(av, pfd[1], c[k].console, c[k].log);
		clones_argv_free(av);
		if (c[k].pid < 0) {
			log_error("--clones: fork: %s", strerror(errno));
			break;
		}
		started++;
	}
	close(pfd[1]);
	/* "ready ID\n" lines until every clone has written one or closed the
	 * pipe by dying (EOF), or the wait is over */
	char buf[8192];
	size_t have = 0;
	uint32_t ready = 0;
	bool timed_out = false;
	while (ready < started) {
		uint64_t waited = (now_ns() - t0) / 1000000;
		if (waited >= CLONES_WAIT_MS) {
			timed_out = true;
			break;
		}
		struct pollfd p = {pfd[0], POLLIN, 0};
		int pr = poll(&p, 1, (int)(CLONES_WAIT_MS - waited));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0) {
			timed_out = pr == 0;
			break;
		}
		ssize_t n = read(pfd[0], buf + have, sizeof(buf) - 1 - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* every clone is ready or gone */
		have += (size_t)n;
		buf[have] = 0;
		char *line = buf, *nl;
		while ((nl = strchr(line, '\n'))) {
			*nl = 0;
			for (uint32_t k = 0; k < started; k++)
				if (!c[k].ready && !strncmp(line, "ready ", 6) &&
				    !strcmp(line + 6, c[k].id)) {
					c[k].ready = true;
					ready++;
				}
			line = nl + 1;
		}
		have = strlen(line);
		memmove(buf, line, have + 1);
		if (have >= sizeof(buf) - 1)
			have = 0; /* not a line any clone writes */
	}
	uint64_t dt = now_ns() - t0;
	close(pfd[0]);
	int code = ready == o->clones ? 0 : 1;
	for (uint32_t k = 0; k < started; k++) {
		if (c[k].ready) {
			printf("%s\tpid %d\trunning\t%s\t%s\n", c[k].id, (int)c[k].pid, c[k].console,
			       c[k].log);
			continue;
		}
		int st = 0;
		pid_t w = waitpid(c[k].pid, &st, timed_out ? WNOHANG : 0);
		char last[512];
		last_line(c[k].log, last, sizeof(last));
		if (w == c[k].pid)
			printf("%s\tpid %d\tfailed (%s %d)\t%s\n", c[k].id, (int)c[k].pid,
			       WIFEXITED(st) ? "exit status" : "signal",
			       WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), last);
		else
			printf("%s\tpid %d\tnot running after %d s (left as it is)\t%s\n", c[k].id,
			       (int)c[k].pid, CLONES_WAIT_MS / 1000, last);
	}
	fflush(stdout);
	log_info("%u of %u clones of %s running in %.1f ms", ready, o->clones, o->restore_dir,
		 (double)dt / 1e6);
	free(c);
	return code;
}
