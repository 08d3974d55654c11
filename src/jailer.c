/* SPDX-License-Identifier: MIT */
/*
 * jailer.c - Firecracker's jailer for visor (see jailer.h and
 * docs/security.md, "Jailer").  Plain system calls, no VMM code.
 */
#include "jailer.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <linux/capability.h>
#include <linux/magic.h>
#include <linux/nsfs.h>

const char *const jail_devices[JAIL_NDEVICES] = {"/dev/kvm", "/dev/net/tun", "/dev/userfaultfd"};

const char jailer_usage[] =
	"usage: jailer --id ID --exec-file FILE --uid UID --gid GID [options] [-- VMM-ARGS...]\n"
	"       visor jailer ...   (the same; Firecracker's jailer command line)\n"
	"\n"
	"Builds the chroot jail BASE/NAME/ID/root (NAME: FILE's last path component),\n"
	"copies FILE into it and runs the copy there, in a new mount namespace, as\n"
	"UID:GID with no capabilities and no new privileges:\n"
	"  /NAME --id ID --start-time-us T --start-time-cpu-us T --parent-cpu-time-us T VMM-ARGS...\n"
	"The jail gets /dev/kvm, /dev/net/tun and /dev/userfaultfd (those the host has)\n"
	"and /run.  Put the VM's files (kernel, disks) into the jail root; the API\n"
	"socket (default /run/firecracker.socket) is BASE/NAME/ID/root/run/... outside.\n"
	"\n"
	"  --id ID                 1 to 64 letters, digits or '-'\n"
	"  --exec-file FILE        the VMM (visor): a regular file owned by root\n"
	"  --uid UID, --gid GID    the numeric user and group the VMM runs as\n"
	"  --chroot-base-dir DIR   where jails are built (default " JAIL_DEFAULT_BASE ")\n"
	"  --netns PATH            join this network namespace (e.g. /var/run/netns/NAME)\n"
	"  --cgroup-version 1|2    the cgroup hierarchy (default 1, as Firecracker's; visor\n"
	"                          supports 2: --cgroup and --parent-cgroup need it)\n"
	"  --cgroup FILE=VALUE     write VALUE to FILE of the VMM's cgroup CGROUP2/PARENT/ID,\n"
	"                          e.g. cpu.max='50000 100000', memory.max=1G, pids.max=64\n"
	"                          (repeatable; the controllers are enabled on the way)\n"
	"  --parent-cgroup PATH    PARENT (default NAME), relative to the cgroup2 mount;\n"
	"                          without --cgroup the VMM joins PATH itself if it exists\n"
	"  --resource-limit RES=N  fsize=BYTES or no-file=N (repeatable; default no-file=2048)\n"
	"  --daemonize             new session, standard input/output/error on /dev/null\n"
	"  --new-pid-ns            the VMM is PID 1 of a new PID namespace; the jailer writes\n"
	"                          its pid to the jail's NAME.pid and exits 0\n"
	"  --help, --version\n"
	"\n"
	"Runs as root.  Errors: one \"jailer: error:\" line, status 1; unsafe input is\n"
	"refused before anything is changed.  See docs/security.md, \"Jailer\".\n";

__attribute__((format(printf, 3, 4))) static int jfail(char *err, size_t len, const char *fmt,
						       ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* like jfail, with -@e returned (an errno value) */
__attribute__((format(printf, 4, 5))) static int jfail_errno(int e, char *err, size_t len,
							     const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return e > 0 ? -e : -EIO;
}

/* ---- parsing ------------------------------------------------------------------ */

/* @p has a ".." path component */
static bool has_dotdot(const char *p)
{
	while (*p) {
		while (*p == '/')
			p++;
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return true;
		p += n;
	}
	return false;
}

static bool has_control_chars(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* a decimal number (digits only) up to @max */
static int parse_dec(const char *s, uint64_t max, uint64_t *out)
{
	if (!*s)
		return -EINVAL;
	uint64_t v = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		unsigned d = (unsigned)(*s - '0');
		if (v > (max - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

/* @in with "//" and "/./" collapsed and no trailing '/' (but "/") into @out */
static int tidy_path(const char *in, char *out, size_t len)
{
	size_t n = 0;
	const char *p = in;
	if (*p == '/') {
		out[n++] = '/';
	}
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *e = strchr(p, '/');
		size_t c = e ? (size_t)(e - p) : strlen(p);
		if (!(c == 1 && p[0] == '.')) {
			if (n > 0 && out[n - 1] != '/')
				out[n++] = '/';
			if (n + c + 1 >= len)
				return -ENAMETOOLONG;
			memcpy(out + n, p, c);
			n += c;
		}
		p += c;
		if (n + 1 >= len)
			return -ENAMETOOLONG;
	}
	if (n == 0)
		return -EINVAL;
	out[n] = 0;
	return 0;
}

static bool valid_id(const char *id)
{
	size_t n = strlen(id);
	return n >= 1 && n <= JAIL_ID_MAX &&
	       strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") == n;
}

/* a cgroup file name: FILE of "FILE=VALUE" */
static int check_cgroup_key(const char *key, size_t n, char *controller, size_t clen, char *err,
			    size_t errlen)
{
	if (n == 0)
		return jfail(err, errlen, "--cgroup: expected FILE=VALUE (e.g. cpu.max=100000), "
					  "the FILE is empty");
	if (memchr(key, '/', n))
		return jfail(err, errlen, "--cgroup: '%.*s' is not a cgroup file name (no '/' "
					  "allowed)", (int)n, key);
	for (size_t i = 0; i + 1 < n; i++)
		if (key[i] == '.' && key[i + 1] == '.')
			return jfail(err, errlen, "--cgroup: '%.*s' is not a cgroup file name "
						  "(no '..' allowed)", (int)n, key);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)key[i];
		if (!isalnum(c) && c != '.' && c != '_' && c != '-')
			return jfail(err, errlen, "--cgroup: '%.*s' is not a cgroup file name "
						  "(letters, digits, '.', '_', '-')", (int)n, key);
	}
	const char *dot = memchr(key, '.', n);
	if (!dot || dot == key || dot == key + n - 1)
		return jfail(err, errlen, "--cgroup: '%.*s' is not a controller's file "
					  "(CONTROLLER.NAME, e.g. memory.max)", (int)n, key);
	size_t cl = (size_t)(dot - key);
	if (cl == 6 && !memcmp(key, "cgroup", 6))
		return jfail(err, errlen, "--cgroup: '%.*s' is one of the cgroup's own files, not a "
					  "controller's limit (the jailer manages cgroup.*)", (int)n, key);
	if (cl >= clen)
		return jfail(err, errlen, "--cgroup: '%.*s': controller name too long", (int)n,
			     key);
	memcpy(controller, key, cl);
	controller[cl] = 0;
	return 0;
}

/* --parent-cgroup: a relative path of plain names */
static int check_parent_cgroup(const char *p, char *err, size_t errlen)
{
	if (!*p)
		return jfail(err, errlen, "--parent-cgroup: empty path");
	if (*p == '/')
		return jfail(err, errlen, "--parent-cgroup: '%s' must be relative to the cgroup2 "
					  "mount (no leading '/')", p);
	if (has_dotdot(p))
		return jfail(err, errlen, "--parent-cgroup: '%s' has a '..' component", p);
	const char *s = p;
	while (*s) {
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (n == 0 || (n == 1 && *s == '.'))
			return jfail(err, errlen, "--parent-cgroup: '%s' has an empty or '.' component",
				     p);
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)s[i];
			if (!isalnum(c) && !strchr("._-@:+=,~", c))
				return jfail(err, errlen, "--parent-cgroup: '%s': a cgroup name has "
							  "letters, digits and ._-@:+=,~ only", p);
		}
		if (!e)
			break;
		s = e + 1;
		if (!*s)
			return jfail(err, errlen, "--parent-cgroup: '%s' ends with '/'", p);
	}
	if (strlen(p) > PATH_MAX / 2)
		return jfail(err, errlen, "--parent-cgroup: too long");
	return 0;
}

static int parse_resource_limit(struct jail_opts *o, const char *v, char *err, size_t errlen)
{
	const char *eq = strchr(v, '=');
	if (!eq)
		return jfail(err, errlen, "--resource-limit: expected RESOURCE=VALUE (fsize=BYTES or "
					  "no-file=N), got '%s'", v);
	size_t n = (size_t)(eq - v);
	uint64_t x;
	bool fsize = n == 5 && !memcmp(v, "fsize", 5);
	bool nofile = n == 7 && !memcmp(v, "no-file", 7);
	if (!fsize && !nofile)
		return jfail(err, errlen, "--resource-limit: unknown resource '%.*s' (fsize or "
					  "no-file)", (int)n, v);
	if (parse_dec(eq + 1, UINT64_MAX - 1, &x))
		return jfail(err, errlen, "--resource-limit: '%s': the value is not a decimal "
					  "number", v);
	if (fsize) {
		o->has_fsize = true;
		o->fsize = x;
	} else {
		if (x == 0)
			return jfail(err, errlen, "--resource-limit: no-file=0 would leave the VMM "
						  "no file descriptor");
		o->no_file = x;
	}
	return 0;
}

/* the arguments the jailer gives the VMM itself */
static const char *const forwarded[] = {"--id", "--start-time-us", "--start-time-cpu-us",
					"--parent-cpu-time-us", NULL};

enum {
	OPT_ID,
	OPT_EXEC,
	OPT_UID,
	OPT_GID,
	OPT_BASE,
	OPT_NETNS,
	OPT_CGVER,
	OPT_CGROUP,
	OPT_PARENT,
	OPT_RLIMIT,
	OPT_DAEMONIZE,
	OPT_NEWPID,
	OPT_HELP,
	OPT_VERSION,
};
static const struct {
	const char *name;
	bool value, repeat;
} opts_table[] = {
	[OPT_ID] = {"--id", true, false},
	[OPT_EXEC] = {"--exec-file", true, false},
	[OPT_UID] = {"--uid", true, false},
	[OPT_GID] = {"--gid", true, false},
	[OPT_BASE] = {"--chroot-base-dir", true, false},
	[OPT_NETNS] = {"--netns", true, false},
	[OPT_CGVER] = {"--cgroup-version", true, false},
	[OPT_CGROUP] = {"--cgroup", true, true},
	[OPT_PARENT] = {"--parent-cgroup", true, false},
	[OPT_RLIMIT] = {"--resource-limit", true, true},
	[OPT_DAEMONIZE] = {"--daemonize", false, false},
	[OPT_NEWPID] = {"--new-pid-ns", false, false},
	[OPT_HELP] = {"--help", false, false},
	[OPT_VERSION] = {"--version", false, false},
};
#define NOPTS (int)(sizeof(opts_table) / sizeof(opts_table[0]))

static int join(char *out, size_t len, const char *a, const char *b)
{
	bool slash = a[0] && a[strlen(a) - 1] == '/';
	int n = snprintf(out, len, "%s%s%s", a, slash ? "" : "/", b);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* BASE/NAME/ID and BASE/NAME/ID/root (PATH_MAX bytes each), with room to
 * spare for the jail's own files */
static int jail_paths(const char *base, const char *name, const char *id, char *jail_dir,
		      char *root_dir)
{
	int n = snprintf(jail_dir, PATH_MAX, "%s%s%s/%s", base, strcmp(base, "/") ? "/" : "", name,
			 id);
	if (n < 0 || n > PATH_MAX - 64)
		return -ENAMETOOLONG;
	snprintf(root_dir, PATH_MAX, "%s/root", jail_dir);
	return 0;
}

int jailer_parse(int argc, char **argv, struct jail_opts *o, char *err, size_t errlen)
{
	memset(o, 0, sizeof(*o));
	o->cgroup_version = 1;
	o->no_file = JAIL_DEFAULT_NO_FILE;
	err[0] = 0;
	bool seen[NOPTS] = {false};
	const char *uid_s = NULL, *gid_s = NULL, *cgver_s = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--")) {
			o->extra = argv + i + 1;
			o->nextra = argc - i - 1;
			break;
		}
		if (!strcmp(a, "-h")) {
			o->help = true;
			return 0;
		}
		if (!strcmp(a, "-V")) {
			o->version = true;
			return 0;
		}
		if (strncmp(a, "--", 2))
			return jfail(err, errlen, "unexpected argument '%s' (the VMM's own arguments "
						  "go after '--')", a);
		const char *eq = strchr(a, '=');
		size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
		int k;
		for (k = 0; k < NOPTS; k++)
			if (strlen(opts_table[k].name) == nlen && !memcmp(opts_table[k].name, a, nlen))
				break;
		if (k == NOPTS)
			return jfail(err, errlen, "unknown option '%.*s' (try 'jailer --help')",
				     (int)nlen, a);
		if (k == OPT_HELP) {
			o->help = true;
			return 0;
		}
		if (k == OPT_VERSION) {
			o->version = true;
			return 0;
		}
		if (seen[k] && !opts_table[k].repeat)
			return jfail(err, errlen, "option %s given twice", opts_table[k].name);
		seen[k] = true;
		const char *v = NULL;
		if (!opts_table[k].value) {
			if (eq)
				return jfail(err, errlen, "option %s takes no value", opts_table[k].name);
		} else if (eq) {
			v = eq + 1;
		} else if (i + 1 < argc) {
			v = argv[++i];
		} else {
			return jfail(err, errlen, "option %s needs a value", opts_table[k].name);
		}
		switch (k) {
		case OPT_ID:
			if (!valid_id(v))
				return jfail(err, errlen, "--id: '%s' is not a valid id (1 to %d letters, "
							  "digits or '-')", v, JAIL_ID_MAX);
			o->id = v;
			break;
		case OPT_EXEC:
			o->exec_file = v;
			break;
		case OPT_UID:
			uid_s = v;
			break;
		case OPT_GID:
			gid_s = v;
			break;
		case OPT_BASE:
			o->base_arg = v;
			break;
		case OPT_NETNS:
			o->netns = v;
			break;
		case OPT_CGVER:
			cgver_s = v;
			break;
		case OPT_CGROUP: {
			if (o->ncgroups >= JAIL_MAX_CGROUPS)
				return jfail(err, errlen, "--cgroup: at most %d", JAIL_MAX_CGROUPS);
			const char *e = strchr(v, '=');
			if (!e)
				return jfail(err, errlen, "--cgroup: expected FILE=VALUE (e.g. "
							  "memory.max=1G), got '%s'", v);
			struct jail_cgroup *c = &o->cgroups[o->ncgroups];
			int r = check_cgroup_key(v, (size_t)(e - v), c->controller,
						 sizeof(c->controller), err, errlen);
			if (r)
				return r;
			if (!e[1])
				return jfail(err, errlen, "--cgroup: '%s': the VALUE is empty", v);
			if (has_control_chars(e + 1))
				return jfail(err, errlen, "--cgroup: '%s': the VALUE has control "
							  "characters", v);
			c->key = v; /* up to the '=' (keys are compared with their length) */
			c->value = e + 1;
			o->ncgroups++;
			break;
		}
		case OPT_PARENT: {
			int r = check_parent_cgroup(v, err, errlen);
			if (r)
				return r;
			o->parent_cgroup = v;
			break;
		}
		case OPT_RLIMIT: {
			int r = parse_resource_limit(o, v, err, errlen);
			if (r)
				return r;
			break;
		}
		case OPT_DAEMONIZE:
			o->daemonize = true;
			break;
		case OPT_NEWPID:
			o->new_pid_ns = true;
			break;
		}
	}
	static const int required[] = {OPT_ID, OPT_EXEC, OPT_UID, OPT_GID};
	for (size_t r = 0; r < sizeof(required) / sizeof(required[0]); r++)
		if (!seen[required[r]])
			return jfail(err, errlen, "%s is required (usage: jailer --id ID --exec-file "
						  "FILE --uid UID --gid GID [options] [-- ARGS])",
				     opts_table[required[r]].name);

	/* the exec file and its name in the jail */
	const char *x = o->exec_file;
	if (!x[0] || strlen(x) >= PATH_MAX)
		return jfail(err, errlen, "--exec-file: the path must be 1 to %d bytes", PATH_MAX - 1);
	if (has_dotdot(x))
		return jfail(err, errlen, "--exec-file: '%s' has a '..' component", x);
	if (x[strlen(x) - 1] == '/')
		return jfail(err, errlen, "--exec-file: '%s' names a directory", x);
	const char *slash = strrchr(x, '/');
	const char *name = slash ? slash + 1 : x;
	if (!strcmp(name, ".") || strlen(name) > NAME_MAX - 8)
		return jfail(err, errlen, "--exec-file: '%s' has no usable file name", x);
	if (!strcmp(name, "dev") || !strcmp(name, "run"))
		return jfail(err, errlen, "--exec-file: the file's name '%s' is taken by the "
					  "jail's own /%s", name, name);
	if (has_control_chars(name))
		return jfail(err, errlen, "--exec-file: the file's name has control characters");
	snprintf(o->exec_name, sizeof(o->exec_name), "%s", name);

	uint64_t n;
	if (parse_dec(uid_s, UINT32_MAX - 1, &n))
		return jfail(err, errlen, "--uid: '%s' is not a numeric user id (0 to %u)", uid_s,
			     UINT32_MAX - 1);
	o->uid = (uint32_t)n;
	if (parse_dec(gid_s, UINT32_MAX - 1, &n))
		return jfail(err, errlen, "--gid: '%s' is not a numeric group id (0 to %u)", gid_s,
			     UINT32_MAX - 1);
	o->gid = (uint32_t)n;

	const char *b = o->base_arg ? o->base_arg : JAIL_DEFAULT_BASE;
	if (b[0] != '/')
		return jfail(err, errlen, "--chroot-base-dir: '%s' is not an absolute path", b);
	if (has_dotdot(b))
		return jfail(err, errlen, "--chroot-base-dir: '%s' has a '..' component", b);
	if (has_control_chars(b))
		return jfail(err, errlen, "--chroot-base-dir: the path has control characters");
	if (tidy_path(b, o->base, sizeof(o->base)) ||
	    jail_paths(o->base, o->exec_name, o->id, o->jail_dir, o->root_dir))
		return jfail(err, errlen, "--chroot-base-dir: '%s' is too long", b);

	if (o->netns) {
		if (!o->netns[0] || strlen(o->netns) >= PATH_MAX)
			return jfail(err, errlen, "--netns: the path must be 1 to %d bytes",
				     PATH_MAX - 1);
		if (has_dotdot(o->netns))
			return jfail(err, errlen, "--netns: '%s' has a '..' component", o->netns);
	}

	if (cgver_s) {
		if (!strcmp(cgver_s, "1"))
			o->cgroup_version = 1;
		else if (!strcmp(cgver_s, "2"))
			o->cgroup_version = 2;
		else
			return jfail(err, errlen, "--cgroup-version: '%s' is not 1 or 2", cgver_s);
	}
	if (o->cgroup_version == 1 && (o->ncgroups || o->parent_cgroup))
		return jfail(err, errlen, "cgroup v1 is not supported: %s needs --cgroup-version 2 "
					  "(a cgroup2 hierarchy, e.g. mounted on /sys/fs/cgroup)",
			     o->ncgroups ? "--cgroup" : "--parent-cgroup");
	const char *parent = o->parent_cgroup ? o->parent_cgroup : o->exec_name;
	if (join(o->cgroup_rel, sizeof(o->cgroup_rel), parent, o->id))
		return jfail(err, errlen, "--parent-cgroup: too long");
	size_t cl = 0;
	for (int i = 0; i < o->ncgroups; i++) {
		const char *c = o->cgroups[i].controller;
		bool dup = false;
		for (int j = 0; j < i; j++)
			dup |= !strcmp(o->cgroups[j].controller, c);
		if (dup)
			continue;
		int w = snprintf(o->controllers + cl, sizeof(o->controllers) - cl, "%s%s",
				 cl ? " " : "", c);
		if (w < 0 || (size_t)w >= sizeof(o->controllers) - cl)
			return jfail(err, errlen, "--cgroup: too many controllers");
		cl += (size_t)w;
	}

	for (int i = 0; i < o->nextra; i++) {
		const char *a = o->extra[i];
		for (int k = 0; forwarded[k]; k++) {
			size_t fl = strlen(forwarded[k]);
			if (!strncmp(a, forwarded[k], fl) && (a[fl] == 0 || a[fl] == '='))
				return jfail(err, errlen, "'%s' after '--': the jailer passes --id and "
							  "the start times to the VMM itself", a);
		}
	}
	return 0;
}

char **jailer_exec_argv(const struct jail_opts *o, const struct jail_times *t)
{
	/* pointers, then the strings the jailer makes */
	size_t nptr = 10 + (size_t)o->nextra;
	size_t strbytes = 1 + strlen(o->exec_name) + 1 + 3 * 24;
	char **v = calloc(1, nptr * sizeof(char *) + strbytes);
	if (!v)
		return NULL;
	char *s = (char *)(v + nptr);
	size_t k = 0;
	v[k++] = s;
	s += sprintf(s, "/%s", o->exec_name) + 1;
	v[k++] = "--id";
	v[k++] = (char *)o->id;
	const uint64_t nums[3] = {t->start_us, t->start_cpu_us, t->parent_cpu_us};
	static const char *const names[3] = {"--start-time-us", "--start-time-cpu-us",
					     "--parent-cpu-time-us"};
	for (int i = 0; i < 3; i++) {
		v[k++] = (char *)names[i];
		v[k++] = s;
		s += sprintf(s, "%llu", (unsigned long long)nums[i]) + 1;
	}
	for (int i = 0; i < o->nextra; i++)
		v[k++] = o->extra[i];
	v[k] = NULL;
	return v;
}

/* ---- reading the host -------------------------------------------------------- */

/* the whole of a small file (/proc/mounts, cgroup files) into a malloc'd,
 * NUL-terminated buffer; NULL with errno set */
static char *read_small(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (len + 1 >= cap) {
			char *nb = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
			if (!nb) {
				free(buf);
				buf = NULL;
				errno = EFBIG;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + len, cap - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			free(buf);
			buf = NULL;
			errno = e;
			break;
		}
		if (r == 0) {
			buf[len] = 0;
			break;
		}
		len += (size_t)r;
	}
	int e = errno;
	close(fd);
	errno = e;
	return buf;
}

/* one field of a /proc/mounts line, octal escapes (\040) undone */
static const char *mounts_field(const char *p, char *out, size_t len, bool *ok)
{
	size_t n = 0;
	*ok = true;
	while (*p == ' ' || *p == '\t')
		p++;
	while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
		char c = *p++;
		if (c == '\\' && p[0] >= '0' && p[0] <= '3' && p[1] >= '0' && p[1] <= '7' &&
		    p[2] >= '0' && p[2] <= '7') {
			c = (char)((p[0] - '0') * 64 + (p[1] - '0') * 8 + (p[2] - '0'));
			p += 3;
		}
		if (n + 1 >= len)
			*ok = false;
		else
			out[n++] = c;
	}
	out[n] = 0;
	return p;
}

int jailer_cgroup2_mount(const char *mounts, char *out, size_t len)
{
	const char *line = mounts;
	while (line && *line) {
		char dev[64], mnt[PATH_MAX], type[64];
		bool ok1, ok2, ok3;
		const char *p = mounts_field(line, dev, sizeof(dev), &ok1);
		p = mounts_field(p, mnt, sizeof(mnt), &ok2);
		mounts_field(p, type, sizeof(type), &ok3);
		if (ok3 && !strcmp(type, "cgroup2") && mnt[0] == '/') {
			if (!ok2 || strlen(mnt) >= len)
				return -ENAMETOOLONG;
			strcpy(out, mnt);
			return 0;
		}
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return -ENOENT;
}

/* @word is one of the space-separated words of @list */
static bool has_word(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = list; (p = strstr(p, word)) != NULL; p += n) {
		bool start = p == list || isspace((unsigned char)p[-1]);
		bool end = !p[n] || isspace((unsigned char)p[n]);
		if (start && end)
			return true;
	}
	return false;
}

/* @path canonical (symlinks of its existing part resolved) into @out */
static int resolve_existing(const char *path, char *out, size_t len)
{
	char head[PATH_MAX], tail[PATH_MAX] = "";
	snprintf(head, sizeof(head), "%s", path);
	for (;;) {
		char real[PATH_MAX];
		if (realpath(head, real)) {
			int n = snprintf(out, len, "%s%s%s", real,
					 tail[0] && strcmp(real, "/") ? "/" : "", tail);
			return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
		}
		if (errno != ENOENT)
			return -errno;
		char *s = strrchr(head, '/');
		if (!s)
			return -ENOENT;
		char t2[PATH_MAX];
		int n = snprintf(t2, sizeof(t2), "%s%s%s", s + 1, tail[0] ? "/" : "", tail);
		if (n < 0 || (size_t)n >= sizeof(t2))
			return -ENAMETOOLONG;
		memcpy(tail, t2, (size_t)n + 1);
		if (s == head)
			head[1] = 0; /* "/" */
		else
			*s = 0;
	}
}

/* Walk the directories of @root (canonical, ".../BASE/NAME/ID/root") that
 * exist, from "/" down: those of the base must be root's and not writable
 * by group or others unless sticky (like /tmp); NAME and ID root's and not
 * writable by group or others; root root's or @uid's (an earlier run chowned
 * it), not writable by group or others. */
static int check_dir_chain(const char *root, uint32_t uid, char *err, size_t errlen)
{
	size_t len = strlen(root), ncomp = 0;
	for (size_t i = 0; i < len; i++)
		ncomp += root[i] == '/';
	char p[PATH_MAX];
	size_t comp = 0; /* components in p */
	for (size_t i = 0; i <= len; i++) {
		if (i > 0 && i < len && root[i] != '/')
			continue;
		size_t plen = i == 0 ? 1 : i; /* "/", then "/a", "/a/b", ... */
		memcpy(p, root, plen);
		p[plen] = 0;
		comp = i == 0 ? 0 : comp + 1;
		struct stat st;
		if (lstat(p, &st)) {
			if (errno == ENOENT)
				return 0; /* the jailer makes the rest */
			return jfail_errno(errno, err, errlen, "jail directory %s: %s", p,
					   strerror(errno));
		}
		if (S_ISLNK(st.st_mode))
			return jfail(err, errlen, "jail directory %s is a symbolic link: refusing to "
						  "use it", p);
		if (!S_ISDIR(st.st_mode))
			return jfail(err, errlen, "jail directory %s exists and is not a directory", p);
		bool in_base = comp + 3 <= ncomp, is_root = comp == ncomp;
		if (st.st_uid != 0 && !(is_root && st.st_uid == uid))
			return jfail(err, errlen, "jail directory %s is owned by uid %u: it must be "
						  "root's%s; refusing to use it", p, (unsigned)st.st_uid,
				     is_root ? " (or the jail's uid)" : "");
		if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(in_base && (st.st_mode & S_ISVTX)))
			return jfail(err, errlen, "jail directory %s is writable by group or others "
						  "(mode %04o); refusing to use it", p,
				     (unsigned)(st.st_mode & 07777));
	}
	return 0;
}

int jailer_check(const struct jail_opts *o, struct jail_host *h, char *err, size_t errlen)
{
	memset(h, 0, sizeof(*h));
	err[0] = 0;
	struct stat st;
	int fd = open(o->exec_file, O_PATH | O_CLOEXEC);
	if (fd < 0)
		return jfail_errno(errno, err, errlen, "--exec-file %s: %s", o->exec_file,
				   strerror(errno));
	int r = fstat(fd, &st);
	int e = errno;
	close(fd);
	if (r)
		return jfail_errno(e, err, errlen, "--exec-file %s: %s", o->exec_file, strerror(e));
	if (!S_ISREG(st.st_mode))
		return jfail(err, errlen, "--exec-file %s is not a regular file", o->exec_file);
	if (st.st_uid != 0)
		return jfail(err, errlen, "--exec-file %s is owned by uid %u, not root: the jailer "
					  "runs only a root-owned file", o->exec_file, (unsigned)st.st_uid);
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return jfail(err, errlen, "--exec-file %s is writable by group or others (mode "
					  "%04o)", o->exec_file, (unsigned)(st.st_mode & 07777));
	if (!(st.st_mode & S_IXUSR))
		return jfail(err, errlen, "--exec-file %s is not executable", o->exec_file);
	h->exec_dev = st.st_dev;
	h->exec_ino = st.st_ino;

	if (o->netns) {
		fd = open(o->netns, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return jfail_errno(errno, err, errlen, "--netns %s: %s", o->netns,
					   strerror(errno));
		struct statfs sf;
		bool nsfs = fstatfs(fd, &sf) == 0 && (unsigned long)sf.f_type == NSFS_MAGIC;
		int type = nsfs ? ioctl(fd, NS_GET_NSTYPE) : -1;
		close(fd);
		if (!nsfs)
			return jfail(err, errlen, "--netns %s is not a namespace file (e.g. "
						  "/var/run/netns/NAME, /proc/PID/ns/net)", o->netns);
		if (type >= 0 && type != CLONE_NEWNET)
			return jfail(err, errlen, "--netns %s is a namespace, but not a network "
						  "namespace", o->netns);
	}

	char real_base[PATH_MAX];
	r = resolve_existing(o->base, real_base, sizeof(real_base));
	if (r)
		return jfail_errno(-r, err, errlen, "--chroot-base-dir %s: %s", o->base,
				   strerror(-r));
	char jd[PATH_MAX];
	if (jail_paths(real_base, o->exec_name, o->id, jd, h->root_dir))
		return jfail(err, errlen, "--chroot-base-dir %s: too long", o->base);
	r = check_dir_chain(h->root_dir, o->uid, err, errlen);
	if (r)
		return r;

	if (o->cgroup_version == 2 && (o->ncgroups || o->parent_cgroup)) {
		char *m = read_small("/proc/mounts");
		if (!m)
			return jfail_errno(errno, err, errlen, "/proc/mounts: %s", strerror(errno));
		r = jailer_cgroup2_mount(m, h->cgroup_mnt, sizeof(h->cgroup_mnt));
		free(m);
		if (r)
			return jfail(err, errlen, "--cgroup-version 2: no cgroup2 file system is "
						  "mounted (mount -t cgroup2 none /sys/fs/cgroup)");
		if (o->ncgroups) {
			char path[PATH_MAX + 32];
			snprintf(path, sizeof(path), "%s/cgroup.controllers", h->cgroup_mnt);
			char *ctl = read_small(path);
			if (!ctl)
				return jfail_errno(errno, err, errlen, "%s: %s", path, strerror(errno));
			char need[sizeof(o->controllers)];
			snprintf(need, sizeof(need), "%s", o->controllers);
			for (char *sp, *c = strtok_r(need, " ", &sp); c; c = strtok_r(NULL, " ", &sp)) {
				if (!has_word(ctl, c)) {
					size_t l = strcspn(ctl, "\n");
					ctl[l] = 0;
					r = jfail(err, errlen, "--cgroup: the '%s' controller is not "
							       "available in %s (cgroup.controllers: '%s')",
						  c, h->cgroup_mnt, ctl);
					break;
				}
			}
			free(ctl);
			if (r)
				return r;
		}
	}

	if (geteuid() != 0)
		return jfail_errno(EPERM, err, errlen, "the jailer must run as root (it makes "
						       "namespaces, device nodes and cgroups); this is uid %u",
				   (unsigned)geteuid());
	return 0;
}

/* ---- doing it ------------------------------------------------------------------ */

static uint64_t clock_us(clockid_t c)
{
	struct timespec ts;
	if (clock_gettime(c, &ts))
		return 0;
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void close_inherited_fds(void)
{
#ifdef SYS_close_range
	if (syscall(SYS_close_range, 3u, ~0u, 0u) == 0)
		return;
#endif
	struct rlimit rl;
	long max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (long)rl.rlim_cur
									      : 65536;
	for (long fd = 3; fd < max; fd++)
		close((int)fd);
}

/* mkdir, or an existing real directory (not a symlink) */
static int ensure_dir(const char *path, mode_t mode, char *err, size_t errlen)
{
	if (mkdir(path, mode) == 0)
		return 0;
	if (errno != EEXIST)
		return jfail_errno(errno, err, errlen, "cannot create %s: %s", path, strerror(errno));
	struct stat st;
	if (lstat(path, &st) || !S_ISDIR(st.st_mode))
		return jfail(err, errlen, "%s exists and is not a directory", path);
	return 0;
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	size_t n = strlen(text);
	ssize_t w = write(fd, text, n);
	int e = w < 0 ? errno : (size_t)w != n ? EIO : 0;
	if (close(fd) && !e)
		e = errno;
	return -e;
}

/* every directory of @dir (absolute, canonical), made if missing */
static int make_dirs(const char *dir, const char *root_dir, char *err, size_t errlen)
{
	char p[PATH_MAX];
	size_t len = strlen(dir);
	for (size_t i = 1; i <= len; i++) {
		if (i < len && dir[i] != '/')
			continue;
		memcpy(p, dir, i);
		p[i] = 0;
		int r = ensure_dir(p, strcmp(p, root_dir) ? 0755 : 0700, err, errlen);
		if (r)
			return r;
	}
	return 0;
}

static int copy_exec_file(const struct jail_opts *o, const struct jail_host *h, char *err,
			  size_t errlen)
{
	int src = open(o->exec_file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (src < 0)
		return jfail_errno(errno, err, errlen, "--exec-file %s: %s", o->exec_file,
				   strerror(errno));
	int rootfd = -1, dst = -1, r = 0;
	struct stat st;
	if (fstat(src, &st) || st.st_dev != h->exec_dev || st.st_ino != h->exec_ino) {
		r = jfail(err, errlen, "--exec-file %s changed since it was checked", o->exec_file);
		goto out;
	}
	rootfd = open(h->root_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (rootfd < 0) {
		r = jfail_errno(errno, err, errlen, "%s: %s", h->root_dir, strerror(errno));
		goto out;
	}
	if (unlinkat(rootfd, o->exec_name, 0) && errno != ENOENT) {
		r = jfail_errno(errno, err, errlen, "cannot replace %s/%s: %s", h->root_dir,
				o->exec_name, strerror(errno));
		goto out;
	}
	dst = openat(rootfd, o->exec_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		     0700);
	if (dst < 0) {
		r = jfail_errno(errno, err, errlen, "cannot create %s/%s: %s", h->root_dir,
				o->exec_name, strerror(errno));
		goto out;
	}
	static char buf[1 << 16];
	for (;;) {
		ssize_t n = read(src, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = jfail_errno(errno, err, errlen, "reading %s: %s", o->exec_file,
					strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(dst, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				r = jfail_errno(w < 0 ? errno : EIO, err, errlen,
						"writing %s/%s: %s", h->root_dir, o->exec_name,
						strerror(w < 0 ? errno : EIO));
				goto out;
			}
			off += w;
		}
	}
	if (fchown(dst, 0, 0) || fchmod(dst, 0755)) {
		r = jfail_errno(errno, err, errlen, "%s/%s: %s", h->root_dir, o->exec_name,
				strerror(errno));
		goto out;
	}
	if (close(dst)) {
		dst = -1;
		r = jfail_errno(errno, err, errlen, "writing %s/%s: %s", h->root_dir, o->exec_name,
				strerror(errno));
		goto out;
	}
	dst = -1;
out:
	if (dst >= 0)
		close(dst);
	if (rootfd >= 0)
		close(rootfd);
	close(src);
	return r;
}

static int cgroup_setup(const struct jail_opts *o, const struct jail_host *h, char *err,
			size_t errlen)
{
	char path[2 * PATH_MAX], file[2 * PATH_MAX + 64], pid[24];
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	if (strlen(h->cgroup_mnt) + strlen(o->cgroup_rel) + 2 >= PATH_MAX)
		return jfail(err, errlen, "cgroup path too long");
	if (!o->ncgroups) {
		/* --parent-cgroup alone: join it when it exists (Firecracker's rule) */
		snprintf(path, sizeof(path), "%s/%s", h->cgroup_mnt, o->parent_cgroup);
		struct stat st;
		if (stat(path, &st) || !S_ISDIR(st.st_mode)) {
			fprintf(stderr, "jailer: note: cgroup %s does not exist: the VMM stays in "
					"the jailer's cgroup\n", path);
			return 0;
		}
		snprintf(file, sizeof(file), "%s/cgroup.procs", path);
		int r = write_file(file, pid);
		if (r)
			return jfail_errno(-r, err, errlen, "cannot join cgroup %s: %s", path,
					   strerror(-r));
		return 0;
	}
	/* "+cpu +memory": the controllers, enabled in every parent's subtree */
	char enable[sizeof(o->controllers) * 2];
	size_t en = 0;
	char need[sizeof(o->controllers)];
	snprintf(need, sizeof(need), "%s", o->controllers);
	for (char *sp, *c = strtok_r(need, " ", &sp); c; c = strtok_r(NULL, " ", &sp))
		en += (size_t)snprintf(enable + en, sizeof(enable) - en, "%s+%s", en ? " " : "", c);
	snprintf(path, sizeof(path), "%s", h->cgroup_mnt);
	const char *rel = o->cgroup_rel;
	for (;;) {
		snprintf(file, sizeof(file), "%s/cgroup.subtree_control", path);
		int r = write_file(file, enable);
		if (r)
			return jfail_errno(-r, err, errlen, "cannot enable '%s' in %s: %s%s", enable,
					   file, strerror(-r),
					   r == -EBUSY ? " (a cgroup with processes of its own cannot "
							 "hand controllers to its children)"
						       : "");
		const char *e = strchr(rel, '/');
		size_t n = e ? (size_t)(e - rel) : strlen(rel);
		size_t pl = strlen(path);
		if (pl + 1 + n >= sizeof(path))
			return jfail(err, errlen, "cgroup path too long");
		path[pl] = '/';
		memcpy(path + pl + 1, rel, n);
		path[pl + 1 + n] = 0;
		if (mkdir(path, 0755) && errno != EEXIST)
			return jfail_errno(errno, err, errlen, "cannot create cgroup %s: %s", path,
					   strerror(errno));
		if (!e)
			break; /* path is now .../PARENT/ID */
		rel = e + 1;
	}
	for (int i = 0; i < o->ncgroups; i++) {
		const struct jail_cgroup *c = &o->cgroups[i];
		int kl = (int)(c->value - 1 - c->key);
		snprintf(file, sizeof(file), "%s/%.*s", path, kl, c->key);
		int r = write_file(file, c->value);
		if (r)
			return jfail_errno(-r, err, errlen, "--cgroup %.*s=%s: cannot write %s: %s",
					   kl, c->key, c->value, file, strerror(-r));
	}
	snprintf(file, sizeof(file), "%s/cgroup.procs", path);
	int r = write_file(file, pid);
	if (r)
		return jfail_errno(-r, err, errlen, "cannot join cgroup %s: %s", path, strerror(-r));
	return 0;
}

/* the current root is the initial ramfs (pivot_root cannot move it) */
static bool root_is_initramfs(void)
{
	char *m = read_small("/proc/self/mounts");
	if (!m)
		return false;
	bool yes = false;
	for (char *line = m; line && *line;) {
		char dev[64], mnt[8], type[16];
		bool a, b, c;
		const char *p = mounts_field(line, dev, sizeof(dev), &a);
		p = mounts_field(p, mnt, sizeof(mnt), &b);
		mounts_field(p, type, sizeof(type), &c);
		if (b && c && !strcmp(mnt, "/") && !strcmp(type, "rootfs"))
			yes = true;
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	free(m);
	return yes;
}

/* a new mount namespace whose root is the jail; the host's root detached */
static int enter_jail(const struct jail_host *h, char *err, size_t errlen)
{
	if (unshare(CLONE_NEWNS))
		return jfail_errno(errno, err, errlen, "unshare(CLONE_NEWNS): %s", strerror(errno));
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return jfail_errno(errno, err, errlen, "making / private: %s", strerror(errno));
	if (mount(h->root_dir, h->root_dir, NULL, MS_BIND | MS_REC, NULL))
		return jfail_errno(errno, err, errlen, "bind-mounting %s: %s", h->root_dir,
				   strerror(errno));
	if (chdir(h->root_dir))
		return jfail_errno(errno, err, errlen, "%s: %s", h->root_dir, strerror(errno));
	if (syscall(SYS_pivot_root, ".", ".") == 0) {
		/* the old root is stacked on "."; detach it */
		if (umount2(".", MNT_DETACH))
			return jfail_errno(errno, err, errlen, "detaching the old root: %s",
					   strerror(errno));
	} else if (errno == EINVAL && root_is_initramfs()) {
		/* pivot_root cannot move the initial ramfs: move the jail over it
		 * instead (what switch_root does); the ramfs stays below, out
		 * of reach without CAP_SYS_ADMIN / CAP_SYS_CHROOT */
		if (mount(".", "/", NULL, MS_MOVE, NULL))
			return jfail_errno(errno, err, errlen, "moving the jail onto /: %s",
					   strerror(errno));
		fprintf(stderr, "jailer: note: / is the initial ramfs, which pivot_root cannot "
				"move: moved the jail onto / instead\n");
	} else {
		return jfail_errno(errno, err, errlen, "pivot_root into %s: %s", h->root_dir,
				   strerror(errno));
	}
	if (chroot(".") || chdir("/"))
		return jfail_errno(errno, err, errlen, "chroot into the jail: %s", strerror(errno));
	return 0;
}

static int own(const char *path, const struct jail_opts *o, mode_t mode, char *err,
	       size_t errlen)
{
	if (lchown(path, o->uid, o->gid) || chmod(path, mode))
		return jfail_errno(errno, err, errlen, "jail %s: %s", path, strerror(errno));
	return 0;
}

/* inside the jail: its root, /dev with the device nodes, /run */
static int furnish_jail(const struct jail_opts *o, const dev_t *rdev, const bool *have,
			char *err, size_t errlen)
{
	int r;
	if ((r = own("/", o, 0700, err, errlen)))
		return r;
	if ((r = ensure_dir("/dev", 0700, err, errlen)) || (r = own("/dev", o, 0700, err, errlen)))
		return r;
	for (int i = 0; i < JAIL_NDEVICES; i++) {
		if (!have[i])
			continue;
		const char *p = jail_devices[i];
		if (!strcmp(p, "/dev/net/tun") && ((r = ensure_dir("/dev/net", 0700, err, errlen)) ||
						   (r = own("/dev/net", o, 0700, err, errlen))))
			return r;
		if (unlink(p) && errno != ENOENT)
			return jfail_errno(errno, err, errlen, "jail %s exists and cannot be "
							       "replaced: %s", p, strerror(errno));
		if (mknod(p, S_IFCHR | 0600, rdev[i]))
			return jfail_errno(errno, err, errlen, "mknod %s (%u:%u): %s", p,
					   major(rdev[i]), minor(rdev[i]), strerror(errno));
		if ((r = own(p, o, 0600, err, errlen)))
			return r;
	}
	if ((r = ensure_dir("/run", 0700, err, errlen)) || (r = own("/run", o, 0700, err, errlen)))
		return r;
	return 0;
}

static int set_limits(const struct jail_opts *o, char *err, size_t errlen)
{
	struct rlimit rl = {o->no_file, o->no_file};
	if (setrlimit(RLIMIT_NOFILE, &rl))
		return jfail_errno(errno, err, errlen, "--resource-limit no-file=%llu: %s",
				   (unsigned long long)o->no_file, strerror(errno));
	if (o->has_fsize) {
		rl.rlim_cur = rl.rlim_max = o->fsize;
		if (setrlimit(RLIMIT_FSIZE, &rl))
			return jfail_errno(errno, err, errlen, "--resource-limit fsize=%llu: %s",
					   (unsigned long long)o->fsize, strerror(errno));
	}
	return 0;
}

/* the pid of the child (in the jailer's PID namespace) into /NAME.pid */
static int write_pid_file(const struct jail_opts *o, pid_t pid, char *err, size_t errlen)
{
	char path[NAME_MAX + 8], tmp[NAME_MAX + 16], text[24];
	snprintf(path, sizeof(path), "/%s.pid", o->exec_name);
	snprintf(tmp, sizeof(tmp), "/%s.pid.tmp", o->exec_name);
	int n = snprintf(text, sizeof(text), "%d", (int)pid);
	if (unlink(tmp) && errno != ENOENT)
		return jfail_errno(errno, err, errlen, "jail %s: %s", tmp, strerror(errno));
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return jfail_errno(errno, err, errlen, "jail %s: %s", tmp, strerror(errno));
	bool ok = write(fd, text, (size_t)n) == n;
	ok &= close(fd) == 0;
	if (!ok || rename(tmp, path))
		return jfail_errno(errno, err, errlen, "jail %s: %s", path, strerror(errno));
	return 0;
}

static int drop_privileges(const struct jail_opts *o, char *err, size_t errlen)
{
	/* the ambient and bounding sets first (dropping needs CAP_SETPCAP) */
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL)
		return jfail_errno(errno, err, errlen, "clearing the ambient capabilities: %s",
				   strerror(errno));
	for (int c = 0; c < 64; c++)
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) && errno != EINVAL)
			return jfail_errno(errno, err, errlen, "dropping capability %d from the "
							       "bounding set: %s", c, strerror(errno));
	if (setgroups(0, NULL))
		return jfail_errno(errno, err, errlen, "setgroups: %s", strerror(errno));
	if (setresgid(o->gid, o->gid, o->gid))
		return jfail_errno(errno, err, errlen, "setresgid(%u): %s", o->gid, strerror(errno));
	if (setresuid(o->uid, o->uid, o->uid))
		return jfail_errno(errno, err, errlen, "setresuid(%u): %s", o->uid, strerror(errno));
	/* (changing to a non-zero uid cleared them already, unless securebits
	 * said otherwise; uid 0 keeps them) */
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capset, &hdr, data))
		return jfail_errno(errno, err, errlen, "capset: %s", strerror(errno));
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return jfail_errno(errno, err, errlen, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
	/* check */
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	memset(data, 0xff, sizeof(data));
	hdr.version = _LINUX_CAPABILITY_VERSION_3;
	hdr.pid = 0;
	bool caps_left = syscall(SYS_capget, &hdr, data) != 0;
	for (int i = 0; i < 2; i++)
		caps_left |= data[i].effective || data[i].permitted || data[i].inheritable;
	for (int c = 0; c < 64; c++)
		caps_left |= prctl(PR_CAPBSET_READ, c, 0, 0, 0) > 0;
	if (getresuid(&ru, &eu, &su) || getresgid(&rg, &eg, &sg) || ru != o->uid || eu != o->uid ||
	    su != o->uid || rg != o->gid || eg != o->gid || sg != o->gid || caps_left ||
	    prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
		return jfail(err, errlen, "the privileges were not dropped as asked");
	return 0;
}

/* 0: exec failed / error (err says why); 1: the --new-pid-ns parent is done */
static int jail_run(const struct jail_opts *o, const struct jail_host *h, struct jail_times *t,
		    char *err, size_t errlen)
{
	int r;
	close_inherited_fds();
	if (clearenv())
		return jfail(err, errlen, "cannot clear the environment");

	if ((r = make_dirs(h->root_dir, h->root_dir, err, errlen)))
		return r;
	/* (a root dir left by an earlier run: still a directory, root's or the uid's) */
	struct stat st;
	if (lstat(h->root_dir, &st) || !S_ISDIR(st.st_mode) ||
	    (st.st_uid != 0 && st.st_uid != o->uid))
		return jfail(err, errlen, "jail directory %s changed since it was checked",
			     h->root_dir);
	if ((r = copy_exec_file(o, h, err, errlen)))
		return r;

	if (h->cgroup_mnt[0] && (r = cgroup_setup(o, h, err, errlen)))
		return r;

	if (o->netns) {
		int fd = open(o->netns, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return jfail_errno(errno, err, errlen, "--netns %s: %s", o->netns,
					   strerror(errno));
		r = setns(fd, CLONE_NEWNET);
		int e = errno;
		close(fd);
		if (r)
			return jfail_errno(e, err, errlen, "--netns %s: setns: %s", o->netns,
					   strerror(e));
	}

	int devnull = -1;
	if (o->daemonize && (devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
		return jfail_errno(errno, err, errlen, "/dev/null: %s", strerror(errno));

	/* the host's device numbers, read before the host's /dev is out of reach */
	dev_t rdev[JAIL_NDEVICES] = {0};
	bool have[JAIL_NDEVICES] = {false};
	for (int i = 0; i < JAIL_NDEVICES; i++) {
		if (stat(jail_devices[i], &st) == 0 && S_ISCHR(st.st_mode)) {
			rdev[i] = st.st_rdev;
			have[i] = true;
		}
	}

	if ((r = enter_jail(h, err, errlen)) || (r = furnish_jail(o, rdev, have, err, errlen)) ||
	    (r = set_limits(o, err, errlen)))
		return r;

	if (o->new_pid_ns) {
		uint64_t cpu = clock_us(CLOCK_PROCESS_CPUTIME_ID);
		if (unshare(CLONE_NEWPID))
			return jfail_errno(errno, err, errlen, "unshare(CLONE_NEWPID): %s",
					   strerror(errno));
		fflush(NULL);
		pid_t pid = fork();
		if (pid < 0)
			return jfail_errno(errno, err, errlen, "fork: %s", strerror(errno));
		if (pid > 0) {
			if ((r = write_pid_file(o, pid, err, errlen))) {
				kill(pid, SIGKILL);
				return r;
			}
			return 1;
		}
		t->parent_cpu_us = cpu;
	}

	if ((r = drop_privileges(o, err, errlen)))
		return r;

	if (o->daemonize) {
		if (setsid() < 0)
			return jfail_errno(errno, err, errlen, "--daemonize: setsid: %s%s",
					   strerror(errno),
					   errno == EPERM ? " (the jailer leads its process group, so "
							    "it cannot start a session: start it in "
							    "its parent's group, or add --new-pid-ns)"
							  : "");
		if (dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(devnull, 2) < 0)
			return jfail_errno(errno, err, errlen, "--daemonize: dup2: %s",
					   strerror(errno));
		close(devnull);
	}

	t->start_cpu_us = clock_us(CLOCK_PROCESS_CPUTIME_ID);
	char **av = jailer_exec_argv(o, t);
	if (!av)
		return jfail(err, errlen, "out of memory");
	char *envp[] = {NULL};
	execve(av[0], av, envp);
	int e = errno;
	free(av);
	return jfail_errno(e, err, errlen, "cannot run /%s in the jail: %s", o->exec_name,
			   strerror(e));
}

int jailer_main(int argc, char **argv)
{
	struct jail_times t = {.start_us = clock_us(CLOCK_MONOTONIC)};
	struct jail_opts *o = calloc(1, sizeof(*o));
	struct jail_host *h = calloc(1, sizeof(*h));
	char err[1024] = "";
	int code = 1;
	if (!o || !h) {
		fprintf(stderr, "jailer: error: out of memory\n");
		goto out;
	}
	if (jailer_parse(argc, argv, o, err, sizeof(err)))
		goto fail;
	if (o->help) {
		fputs(jailer_usage, stdout);
		code = fflush(stdout) ? 1 : 0;
		goto out;
	}
	if (o->version) {
		printf("jailer (visor) %s\n", VISOR_VERSION);
		code = fflush(stdout) ? 1 : 0;
		goto out;
	}
	if (jailer_check(o, h, err, sizeof(err)))
		goto fail;
	if (jail_run(o, h, &t, err, sizeof(err)) == 1) {
		code = 0; /* --new-pid-ns: the child runs the VMM */
		goto out;
	}
fail:
	fprintf(stderr, "jailer: error: %s\n", err);
out:
	free(o);
	free(h);
	return code;
}
