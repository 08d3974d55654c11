/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the decoders of the x86 vCPU and VM state sections
 * (arch/x86/vcpu_state.c, vm_state.c), which read payloads of a snapshot
 * file the user names.  Every input is decoded as a vCPU state payload and
 * as a VM state payload (a checksummed but hostile file reaches them with
 * any bytes).  Beyond crashes, sanitizer reports and leaks, these must hold:
 *   - a refusal is -EINVAL with a one-line message;
 *   - an accepted payload passes validate (what get and set check), and
 *     encoding the decoded state gives the input again byte for byte (one
 *     encoding per state, and decode consumed all of it);
 *   - an unknown section version is always refused.
 * Seeds: tests/fuzz/corpus-vcpu_state (the unit test's samples).
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/arch/x86/vcpu_state.h"
#include "../../src/arch/x86/vm_state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_refusal(int rc, const char *err)
{
	if (rc != -EINVAL || !err[0] || strchr(err, '\n'))
		__builtin_trap();
}

/* The bytes @put writes for @st equal data[0..size). */
static void check_reencode(void (*put)(const void *, struct snap_writer *), const void *st,
			   const uint8_t *data, size_t size)
{
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "state", 1);
	put(st, &w);
	snap_writer_section_end(&w);
	uint8_t *file;
	size_t flen;
	if (snap_writer_finish(&w, &file, &flen))
		__builtin_trap();
	struct snap_reader r;
	char err[256];
	const uint8_t *p;
	size_t len;
	if (snap_reader_open(file, flen, &r, err, sizeof(err)) ||
	    snap_reader_find(&r, "state", NULL, &p, &len) || len != size ||
	    (size && memcmp(p, data, size)))
		__builtin_trap();
	free(file);
}

static void put_vcpu(const void *s, struct snap_writer *w)
{
	x86_vcpu_state_encode(s, w);
}

static void put_vm(const void *s, struct snap_writer *w)
{
	x86_vm_state_encode(s, w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a block of exactly the payload's size: reading past it is a report */
	uint8_t *b = malloc(size ? size : 1);
	struct x86_vcpu_state *vs = malloc(sizeof(*vs));
	struct x86_vm_state *ms = malloc(sizeof(*ms));
	if (!b || !vs || !ms) {
		free(b);
		free(vs);
		free(ms);
		return 0;
	}
	if (size)
		memcpy(b, data, size);
	char err[256];
	struct snap_cursor c;

	snap_cursor_init(&c, b, size);
	int rc = x86_vcpu_state_decode(&c, X86_VCPU_STATE_VERSION, vs, err, sizeof(err));
	if (rc) {
		check_refusal(rc, err);
	} else {
		if (x86_vcpu_state_validate(vs, err, sizeof(err)))
			__builtin_trap();
		check_reencode(put_vcpu, vs, data, size);
	}
	/* version 1 (no nested state) still loads */
	snap_cursor_init(&c, b, size);
	rc = x86_vcpu_state_decode(&c, 1, vs, err, sizeof(err));
	if (rc)
		check_refusal(rc, err);
	else if (vs->nested_len || x86_vcpu_state_validate(vs, err, sizeof(err)))
		__builtin_trap();
	snap_cursor_init(&c, b, size);
	check_refusal(x86_vcpu_state_decode(&c, X86_VCPU_STATE_VERSION + 1, vs, err, sizeof(err)),
		      err);

	snap_cursor_init(&c, b, size);
	rc = x86_vm_state_decode(&c, X86_VM_STATE_VERSION, ms, err, sizeof(err));
	if (rc) {
		check_refusal(rc, err);
	} else {
		if (x86_vm_state_validate(ms, err, sizeof(err)))
			__builtin_trap();
		check_reencode(put_vm, ms, data, size);
	}
	snap_cursor_init(&c, b, size);
	check_refusal(x86_vm_state_decode(&c, 0, ms, err, sizeof(err)), err);

	free(b);
	free(vs);
	free(ms);
	return 0;
}
