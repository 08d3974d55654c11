/* SPDX-License-Identifier: MIT */
#include "api.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../event/loop.h"
#include "../util/file.h"
#include "../util/log.h"
#include "../util/str.h"
#include "../vm.h"
#include "fc_json.h"
#include "http.h"
#include "../seccomp.h"

/* Largest config file read (Firecracker's are a few KiB). */
#define CONFIG_FILE_MAX (1u << 20)

struct api_server {
	struct vm *vm;
	struct loop loop;
	struct http_server http;
	int stop_efd;
	int exit_code; /* for end_after_reply */
	pthread_t thread;
	bool running;
};

/* After the reply to a request that ends the process (a failed snapshot
 * load) went out: end it now. */
static void end_after_reply(void *ctx)
{
	struct api_server *s = ctx;
	vm_shutdown(s->vm, s->exit_code);
}

/* One request, on the API thread: decode, run on the VM's loop, encode. */
static void handle(void *ctx, const struct http_request *req, struct http_response *resp)
{
	struct api_server *s = ctx;
	struct vm_action *a = calloc(1, sizeof(*a));
	struct vm_reply *rep = calloc(1, sizeof(*rep));
	if (!a || !rep) {
		resp->status = 500;
		http_response_printf(resp, "{\"fault_message\": \"out of memory\"}");
		goto out;
	}
	int status = 400;
	char fault[512] = "";
	if (fc_parse_request(http_method_name(req->method), req->path, req->body, req->body_len, a,
			     &status, fault, sizeof(fault))) {
		rep->status = status;
		snprintf(rep->fault, sizeof(rep->fault), "%s", fault);
	} else {
		vm_submit(s->vm, a, rep);
	}
	size_t len = 0;
	char *body = fc_format_reply(a, rep, &len);
	resp->status = rep->status;
	if (body && rep->status != 204)
		http_response_append(resp, body, len);
	free(body);
	if (rep->status >= 400)
		log_debug("API %s %s: %d %s", http_method_name(req->method), req->path, rep->status,
			  rep->fault);
	if (rep->exit_after) {
		s->exit_code = rep->exit_code;
		resp->after = end_after_reply;
		resp->after_ctx = s;
	}
out:
	free(a);
	free(rep);
}

static void on_stop(struct loop *l, int fd, uint32_t events, void *ctx)
{
	uint64_t v;
	ssize_t r = read(fd, &v, sizeof(v));
	(void)r;
	loop_stop(l);
}

static void *api_thread(void *arg)
{
	struct api_server *s = arg;
	pthread_setname_np(pthread_self(), "api");
	loop_run(&s->loop);
	return NULL;
}

struct api_server *api_start(struct vm *vm, const char *path, uint64_t max_payload, char *err,
			     size_t errlen)
{
	struct api_server *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->vm = vm;
	s->stop_efd = -1;
	int r = loop_init(&s->loop);
	if (r) {
		snprintf(err, errlen, "cannot create the API loop: %s", strerror(-r));
		free(s);
		return NULL;
	}
	s->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->stop_efd < 0 || loop_add(&s->loop, s->stop_efd, EPOLLIN, on_stop, s)) {
		snprintf(err, errlen, "cannot create an eventfd: %s", strerror(errno));
		goto fail;
	}
	struct http_limits lim = {.max_body = (size_t)max_payload};
	if (http_server_init(&s->http, path, &s->loop, &lim, handle, s, err, errlen))
		goto fail_loop;
	/* The API thread must not take the vCPUs' kick signal. */
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	r = sec_thread_create(SEC_API, &s->thread, NULL, api_thread, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r) {
		snprintf(err, errlen, "cannot start the API thread: %s", strerror(r));
		http_server_destroy(&s->http);
		goto fail_loop;
	}
	s->running = true;
	return s;
fail_loop:
fail:
	if (s->stop_efd >= 0)
		close(s->stop_efd);
	loop_destroy(&s->loop);
	free(s);
	return NULL;
}

void api_stop(struct api_server *s)
{
	if (!s)
		return;
	if (s->running) {
		uint64_t one = 1;
		ssize_t w = write(s->stop_efd, &one, sizeof(one));
		(void)w;
		pthread_join(s->thread, NULL);
	}
	http_server_destroy(&s->http);
	close(s->stop_efd);
	loop_destroy(&s->loop);
	free(s);
}

int api_ensure_dir(const char *dir)
{
	char buf[256];
	if ((size_t)snprintf(buf, sizeof(buf), "%s", dir) >= sizeof(buf))
		return -ENAMETOOLONG;
	/* mkdir -p, each new level 0700 */
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return -errno;
	struct stat st;
	if (stat(buf, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int api_apply_config_file(struct vm *vm, const char *path, char *err, size_t errlen)
{
	size_t len;
	char *text = file_read_small(path, CONFIG_FILE_MAX, &len, err, errlen);
	if (!text)
		return -1;
	struct vm_action *acts = NULL;
	size_t n = 0;
	int r = fc_config_file_actions(text, len, &acts, &n, err, errlen);
	free(text);
	if (r)
		return -1;
	struct vm_reply *rep = malloc(sizeof(*rep));
	for (size_t i = 0; rep && i < n && r == 0; i++) {
		memset(rep, 0, sizeof(*rep));
		vm_execute(vm, &acts[i], rep);
		if (rep->status >= 300) {
			snprintf(err, errlen, "%s", rep->fault);
			r = -1;
		}
	}
	if (!rep) {
		snprintf(err, errlen, "out of memory");
		r = -1;
	}
	free(rep);
	free(acts);
	return r;
}
