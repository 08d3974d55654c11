/* SPDX-License-Identifier: MIT */
/*
 * migration/stream.h - the live-migration stream (docs/migration-protocol.md):
 * a preamble, then typed messages, each a 16-byte header (type, payload
 * length, CRC-32 of the payload, CRC-32 of the header) and its payload.
 *
 * Everything here is pure (no I/O): encoding headers and page batches,
 * and the destination's side of the stream as a state machine
 * (struct mig_rx) that checks every message it is given before it acts
 * on it: the order of messages, lengths, checksums, page numbers against
 * guest RAM.  migrate.c reads messages off the connection and feeds them
 * in; the fuzz target (tests/fuzz/fuzz_migration.c) feeds arbitrary bytes.
 */
#ifndef VISOR_MIGRATION_STREAM_H
#define VISOR_MIGRATION_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct guest_mem;

#define MIG_MAGIC "VISORMIG"
#define MIG_MAGIC_LEN 8
#define MIG_VERSION 2 /* 2: PASS_DONE */
#define MIG_PREAMBLE_LEN 16 /* magic, version u32, flags u32 (0) */
#define MIG_HDR_LEN 16
#define MIG_MAX_PAYLOAD (64u << 20) /* the largest message: a state file */
#define MIG_BATCH_PAGES 256         /* pages of data in one PAGES message (1 MiB) */
#define MIG_MAX_RUNS 4096           /* runs in one PAGES or ZERO message */
#define MIG_ERROR_MAX 1024          /* bytes of an ERROR message's text */
#define MIG_VERIFY_PAGES (1u << 20) /* pages one VERIFY message covers at most */
#define MIG_VERIFY_HDR 16

/* How the source moves memory (PUT /migration/send "mode"). */
enum mig_mode { MIG_MODE_PRECOPY, MIG_MODE_POSTCOPY, MIG_MODE_AUTO, MIG_MODE_LOCAL, MIG_MODE_MAX };

enum mig_msg_type {
	MIG_MSG_HELLO = 1,   /* src: a state container with "config" and "migration" */
	MIG_MSG_HELLO_OK,    /* dst: the machine is built, send memory */
	MIG_MSG_PAGES,       /* src: runs of pages and their bytes */
	MIG_MSG_ZERO,        /* src: runs of pages that are all zero */
	MIG_MSG_PASS,        /* src: a pass over memory ended (u32 pass, u32 0, u64 pages) */
	MIG_MSG_STATE,       /* src: the VM's state (a snapshot state container) */
	MIG_MSG_READY,       /* dst: state applied; it can run */
	MIG_MSG_GO,          /* src: the source has stopped for good; run */
	MIG_MSG_RUNNING,     /* dst: running */
	MIG_MSG_ERROR,       /* either: text; the stream ends */
	MIG_MSG_POSTCOPY,    /* src: u64 count, then the bitmap of pages still to come */
	MIG_MSG_PAGE_REQ,    /* dst (post-copy): u64 page wanted now */
	MIG_MSG_POSTCOPY_END, /* src: every page of the bitmap was sent */
	MIG_MSG_DONE,        /* dst: every page is in; the source may go */
	MIG_MSG_VERIFY,      /* src (pre-copy, paused, after the last pass): u64 first page,
			      * u32 count, u32 0, then count CRC-32s (u32) of those pages */
	MIG_MSG_PASS_DONE,   /* dst: a PASS other than the last is taken (u32 pass, u32 0,
			      * u64 pages taken so far): the source's pass ends here */
	MIG_MSG_TYPE_MAX = MIG_MSG_PASS_DONE,
};

const char *mig_msg_name(uint32_t type);

struct mig_hdr {
	uint32_t type;
	uint32_t len;
	uint32_t crc; /* of the payload */
};

/* The 16-byte preamble each side sends first; check the peer's. */
void mig_preamble_encode(uint8_t out[MIG_PREAMBLE_LEN]);
int mig_preamble_check(const uint8_t in[MIG_PREAMBLE_LEN], char *err, size_t errlen);

/* A header for @type with the payload p[0..len). */
void mig_hdr_encode(uint8_t out[MIG_HDR_LEN], uint32_t type, const void *p, uint32_t len);
/* Decode and check a header (its own CRC, a known type, len within
 * MIG_MAX_PAYLOAD): 0 or -EINVAL/-EBADMSG with a message. */
int mig_hdr_decode(const uint8_t in[MIG_HDR_LEN], struct mig_hdr *h, char *err, size_t errlen);
/* Check a payload against its header's CRC: 0 or -EBADMSG. */
int mig_payload_check(const struct mig_hdr *h, const void *p, char *err, size_t errlen);

/* A run of consecutive pages (page numbers: offset in guest RAM / 4096). */
struct mig_run {
	uint64_t first, count;
};

/*
 * Decode the runs of a PAGES or ZERO payload: u32 nruns, u32 0, then
 * nruns x {u64 first, u64 count}; for PAGES the pages' bytes follow, in
 * run order.  Every run must lie within @npages, count >= 1, and the data
 * must be exactly the pages the runs name.  On success *runs points into
 * the payload (8-byte aligned copies are made into @out, up to
 * MIG_MAX_RUNS) and *data at the first page's bytes (PAGES).
 */
int mig_runs_decode(const uint8_t *p, size_t len, bool with_data, uint64_t npages,
		    struct mig_run *out, uint32_t *nruns, const uint8_t **data, char *err,
		    size_t errlen);
/* Bytes of the runs part for @nruns runs. */
static inline size_t mig_runs_len(uint32_t nruns)
{
	return 8 + (size_t)nruns * 16;
}
/* Write the runs part (mig_runs_len bytes) into @out. */
void mig_runs_encode(uint8_t *out, const struct mig_run *runs, uint32_t nruns);

/* An ERROR message's payload p[0..len) as a string in out[size] (@size >=
 * 1): printable ASCII kept, anything else '?', cut to fit. */
void mig_error_text(const uint8_t *p, size_t len, char *out, size_t size);

/* True if the 4 KiB page at @p is all zero. */
bool mig_page_is_zero(const void *p);

/* ---- the destination's view of the stream -------------------------------- */

enum mig_rx_phase {
	MIG_RX_HELLO,    /* waiting for HELLO (after the preamble) */
	MIG_RX_BUILD,    /* HELLO accepted: the owner builds the machine (mig_rx_built) */
	MIG_RX_MEMORY,   /* PAGES / ZERO / PASS, until STATE */
	MIG_RX_STATE,    /* STATE received: the owner applies it (mig_rx_applied) */
	MIG_RX_GO,       /* READY sent: waiting for GO */
	MIG_RX_DONE,     /* GO received */
	MIG_RX_FAILED,
};

struct mig_rx {
	enum mig_rx_phase phase;
	struct guest_mem *mem;  /* set by mig_rx_built */
	uint64_t npages;        /* of guest RAM, from HELLO */
	uint64_t mem_size;
	uint32_t mode;          /* from HELLO (enum mig_mode) */
	uint8_t *written;       /* bitmap: pages this side wrote data into */
	uint64_t pages_data, pages_zero, passes, msgs;
	uint64_t verified, verify_bad; /* pages VERIFY compared, and how many differed */
	uint32_t last_pass;     /* the number in the last PASS */
	/* post-copy: the pages the destination still lacks (bit per page,
	 * cleared as each is installed: atomically, a fault thread reads it),
	 * how many, and how a page is installed (UFFDIO_COPY / ZEROPAGE;
	 * @data NULL: a zero page) */
	bool postcopy, end_seen;
	uint8_t *pending;
	uint64_t npending;
	int (*install)(void *ctx, uint64_t page, const uint8_t *data);
	void *install_ctx;
	char err[512];
};

/* VERIFY's CRC-32s of pages [first, first+count) of @base, little-endian
 * u32 each, into @out (4 * count bytes). */
void mig_verify_crcs(const uint8_t *base, uint64_t first, uint32_t count, uint8_t *out);

void mig_rx_init(struct mig_rx *rx);
void mig_rx_free(struct mig_rx *rx);

/* What the owner must do after a message (mig_rx_msg's return value >= 0). */
enum mig_rx_action {
	MIG_RX_CONTINUE,   /* read the next message */
	MIG_RX_DO_BUILD,   /* HELLO: build a machine from *payload's config */
	MIG_RX_DO_APPLY,   /* STATE: apply *payload (a state container) */
	MIG_RX_DO_RUN,     /* GO: take the disks and run */
	MIG_RX_DO_POSTCOPY, /* POSTCOPY: rx->pending is set; make those pages missing,
			     * register them for faults, set rx->install */
	MIG_RX_DO_FINISH,  /* POSTCOPY_END with every page in: the migration is done */
	MIG_RX_PEER_ERROR, /* the source sent ERROR: rx->err holds its text */
	MIG_RX_DO_PASS_DONE, /* PASS (not the last): answer PASS_DONE for rx->last_pass */
};

/*
 * Feed one message (header already decoded and its payload checked).
 * Returns an enum mig_rx_action, or -errno with rx->err set (the stream
 * is then refused: phase FAILED).  Pages are written into rx->mem; a zero
 * run clears only pages this side wrote earlier (fresh memory is zero).
 * For HELLO the payload is checked as a state container holding a
 * "config" and a "migration" section (the owner decodes the config);
 * npages/mem_size/mode come from the latter.  In local mode guest memory
 * is not in the stream: the memfd comes with HELLO (SCM_RIGHTS) and no
 * PAGES or ZERO message is accepted.
 *
 * Post-copy (mode postcopy or auto): POSTCOPY, before STATE, names the
 * pages still to come; from then on PAGES and ZERO are accepted in every
 * phase up to POSTCOPY_END (which needs every page in), each page of the
 * bitmap installed once through rx->install, and pages not in it (sent
 * twice: pushed and asked for) skipped.
 */
int mig_rx_msg(struct mig_rx *rx, const struct mig_hdr *h, const uint8_t *p);
/* The owner built the machine for HELLO: its guest memory (of exactly
 * mem_size bytes, else -EINVAL). */
int mig_rx_built(struct mig_rx *rx, struct guest_mem *mem);
/* Post-copy: page @page is still to come (any thread). */
bool mig_rx_pending(const struct mig_rx *rx, uint64_t page);
/* The owner applied STATE. */
void mig_rx_applied(struct mig_rx *rx);

/* The "migration" section of HELLO. */
#define MIG_SECTION_ID "migration"
#define MIG_SECTION_VERSION 1
struct mig_hello {
	uint64_t mem_size;
	uint32_t page_size;
	uint32_t mode;
};
struct snap_writer;
struct snap_reader;
void mig_hello_write(const struct mig_hello *h, struct snap_writer *w);
int mig_hello_read(const struct snap_reader *rd, struct mig_hello *h, char *err, size_t errlen);

#endif
