/* SPDX-License-Identifier: MIT */
/*
 * uffd.h - guest memory served by a user's page-fault handler: the `Uffd`
 * memory backend of Firecracker's PUT /snapshot/load.
 *
 * visor maps guest RAM anonymous (guest_mem_init), creates a userfaultfd,
 * registers every RAM region for MISSING faults, connects to the handler's
 * Unix socket and sends, in one message, the JSON array of the regions
 * (Firecracker's GuestRegionUffdMapping) with the userfaultfd as
 * SCM_RIGHTS.  From then on the handler fills every page the guest, KVM or
 * visor touches first (UFFDIO_COPY from the snapshot's memory file, or
 * zeros after a UFFD_EVENT_REMOVE).  docs/api.md, "The Uffd memory
 * backend", has the protocol.
 *
 * visor keeps its copy of the userfaultfd and the connection for the
 * machine's life (as Firecracker does): a handler that dies later leaves
 * faults unserved (the VM stops making progress) rather than letting
 * guest memory silently turn into zero pages.
 */
#ifndef VISOR_MEM_UFFD_H
#define VISOR_MEM_UFFD_H

#include <stddef.h>
#include <stdint.h>

#include "guest_mem.h"

/* The page size sent to the handler: guest RAM is ordinary 4 KiB pages. */
#define UFFD_LINK_PAGE_SIZE 4096u
/* Room for the JSON of GUEST_MEM_MAX_REGIONS regions (about 130 bytes
 * each); Firecracker's example handlers read the message into 1 KiB. */
#define UFFD_LINK_JSON_MAX 1024

struct uffd_link {
	int uffd; /* visor's copy of the userfaultfd, -1 if none */
	int sock; /* the connection to the handler, -1 if none */
};

/* Firecracker's region mappings of @m as the handler receives them: a JSON
 * array, one object per RAM region in guest-physical order,
 *   {"base_host_virt_addr":A,"size":S,"offset":O,"page_size":P,"page_size_kib":P}
 * (decimal, no spaces): the host address of the region, its size, where
 * its bytes are in the memory file (guest_region_file_offset) and the page
 * size in bytes, under both names Firecracker sends.  The length
 * (without the NUL), or -ENOSPC if @len is too small. */
int uffd_mappings_json(const struct guest_mem *m, char *buf, size_t len);

/* A userfaultfd (O_CLOEXEC | O_NONBLOCK): the userfaultfd(2) system call,
 * else /dev/userfaultfd's USERFAULTFD_IOC_NEW; UFFDIO_API with the
 * feature Firecracker requires, UFFD_FEATURE_EVENT_REMOVE (the balloon's
 * and free page reporting's MADV_DONTNEED reach the handler as remove
 * events).  The fd, or -errno with one line in @err naming both attempts
 * and the host settings that allow them. */
int uffd_create(char *err, size_t errlen);

/* Register every RAM region of @m with @uffd for MISSING faults; the
 * kernel must offer UFFDIO_COPY, UFFDIO_ZEROPAGE and UFFDIO_WAKE on them.
 * 0 or -errno with @err. */
int uffd_register(int uffd, const struct guest_mem *m, char *err, size_t errlen);

/* Connect to the handler's socket @path and send @json with @uffd as
 * SCM_RIGHTS in one message.  The connected socket, or -errno with @err
 * (no socket there, nothing listening, the handler closed it). */
int uffd_send(const char *path, const char *json, size_t len, int uffd, char *err,
	      size_t errlen);

/* Wait until the handler shows it serves faults: a helper thread reads
 * the byte at @probe (guest RAM, registered with @uffd) and the wait ends
 * when that fault is served.  Fails, instead of waiting for ever, when the
 * handler closed the connection without reading the message (ECONNRESET)
 * or the process that listens on the socket exited first; then @uffd is
 * closed (the fault is released) and *@uffd set to -1.  No time limit
 * otherwise: a handler that keeps the connection and never serves keeps
 * visor waiting, as it would keep the guest.  0 or -errno with @err. */
int uffd_wait_handler(int sock, int *uffd, const volatile uint8_t *probe, char *err,
		      size_t errlen);

/* All of the above for @m and the handler at @path: on success @u holds
 * the userfaultfd and the connection (close with uffd_link_close after
 * guest memory is unmapped).  On failure nothing is left open, @u is
 * {-1, -1} and @err says what went wrong. */
int uffd_link_open(struct uffd_link *u, const struct guest_mem *m, const char *path, char *err,
		   size_t errlen);

void uffd_link_close(struct uffd_link *u);

#endif
