/* SPDX-License-Identifier: MIT */
/*
 * Diff snapshots on disk: the "memory" section (what the memory file
 * holds, its identity and its base) round-trips and refuses every value a
 * writer never produces; `visor snapshot merge` folds a Diff onto its base
 * (directories: identity chain checked, BASE becomes the later snapshot;
 * memory files, with or without the Diff's state file), is finished by
 * running it again after an interruption, and refuses mismatched sizes,
 * non-regular files, the wrong base and damaged state files before it
 * changes anything.
 */
#include "../../src/snapshot/merge.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/snapshot/format.h"
#include "../../src/snapshot/mem_section.h"
#include "test.h"

#define PG 4096u
#define NPAGES 16u
#define MSIZE ((uint64_t)NPAGES * PG)

static char dir[] = "/tmp/visor-test-merge-XXXXXX";
static char err[1024];

static const char *path(const char *name)
{
	static char bufs[8][512];
	static int next;
	char *b = bufs[next++ % 8];
	return test_tmp_path(dir, b, 512, name);
}

/* Field by field (the struct has padding). */
static bool same_info(const struct snap_mem_info *a, const struct snap_mem_info *b)
{
	return a->kind == b->kind && a->size == b->size &&
	       !memcmp(a->id, b->id, SNAP_MEM_ID_LEN) && !memcmp(a->base, b->base, SNAP_MEM_ID_LEN);
}

static struct snap_mem_info info(uint8_t kind, uint8_t id, uint8_t base)
{
	struct snap_mem_info m = {.kind = kind, .size = MSIZE};
	memset(m.id, id, sizeof(m.id));
	memset(m.base, base, sizeof(m.base));
	return m;
}

/* A state file: a stand-in "config", the memory section (unless @m is
 * NULL) and a section "vm" whose payload @tag tells files apart. */
static void write_state(const char *p, const struct snap_mem_info *m, const char *tag)
{
	struct snap_writer w;
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "config", 1);
	snap_put_bytes(&w, "cfg", 3);
	snap_writer_section_end(&w);
	if (m)
		snap_mem_write(m, &w);
	snap_writer_section_begin(&w, "vm", 1);
	snap_put_bytes(&w, tag, strlen(tag));
	snap_writer_section_end(&w);
	uint8_t *buf;
	size_t len;
	CHECK_EQ(snap_writer_finish(&w, &buf, &len), 0);
	snap_writer_free(&w);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd >= 0);
	CHECK_EQ(write(fd, buf, len), len);
	close(fd);
	free(buf);
}

/* What the state file @p says: its memory section and its "vm" tag. */
static void read_state(const char *p, struct snap_mem_info *m, bool *present, char *tag,
		       size_t taglen)
{
	uint8_t *buf;
	size_t len;
	struct snap_reader r;
	char e[256];
	CHECK_EQ(snap_file_read(p, &buf, &len, e, sizeof(e)), 0);
	CHECK_EQ(snap_reader_open(buf, len, &r, e, sizeof(e)), 0);
	CHECK_EQ(snap_mem_find(&r, m, present, e, sizeof(e)), 0);
	const uint8_t *t;
	size_t tl;
	CHECK_EQ(snap_reader_find(&r, "vm", NULL, &t, &tl), 0);
	snprintf(tag, taglen, "%.*s", (int)tl, (const char *)t);
	free(buf);
}

/* A sparse memory file of @npages pages: page i is data filled with
 * fill[i] when fill[i] >= 0 (0 writes an all-zero page as data), else a
 * hole. */
static void write_mem(const char *p, uint32_t npages, const int *fill)
{
	int fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd >= 0);
	CHECK_EQ(ftruncate(fd, (off_t)npages * PG), 0);
	uint8_t page[PG];
	for (uint32_t i = 0; i < npages && i < NPAGES; i++) {
		if (fill[i] < 0)
			continue;
		memset(page, fill[i], PG);
		CHECK_EQ(pwrite(fd, page, PG, (off_t)i * PG), PG);
	}
	close(fd);
}

/* Whether memory file @p holds exactly @want (fill values, holes read 0). */
static bool mem_is(const char *p, const int *want)
{
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	struct stat sb;
	bool ok = !fstat(fd, &sb) && sb.st_size == (off_t)MSIZE;
	uint8_t page[PG];
	for (uint32_t i = 0; ok && i < NPAGES; i++) {
		ok = pread(fd, page, PG, (off_t)i * PG) == PG;
		for (uint32_t k = 0; ok && k < PG; k++)
			ok = page[k] == (uint8_t)(want[i] < 0 ? 0 : want[i]);
		if (!ok)
			printf("  %s: page %u differs\n", p, i);
	}
	close(fd);
	return ok;
}

/* The whole of file @p (malloc'd; *len). */
static uint8_t *slurp(const char *p, size_t *len)
{
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat sb;
	fstat(fd, &sb);
	uint8_t *b = malloc((size_t)sb.st_size + 1);
	*len = (size_t)pread(fd, b, (size_t)sb.st_size, 0);
	close(fd);
	return b;
}

static bool same_file(const char *p, const uint8_t *b, size_t len)
{
	size_t l;
	uint8_t *c = slurp(p, &l);
	bool ok = c && l == len && !memcmp(b, c, len);
	free(c);
	return ok;
}

/* No temporary file left behind in the test directory (tree). */
static int temporaries(const char *d)
{
	DIR *dh = opendir(d);
	int n = 0;
	struct dirent *e;
	while (dh && (e = readdir(dh))) {
		if (strstr(e->d_name, ".tmp-"))
			n++;
		if (e->d_type == DT_DIR && e->d_name[0] != '.') {
			char sub[1024];
			snprintf(sub, sizeof(sub), "%s/%s", d, e->d_name);
			n += temporaries(sub);
		}
	}
	if (dh)
		closedir(dh);
	return n;
}

/* Snapshot directory @name with state @m (NULL: no memory section) and
 * memory @fill. */
static const char *snapdir(const char *name, const struct snap_mem_info *m, const char *tag,
			   const int *fill)
{
	const char *d = path(name);
	char p[600];
	mkdir(d, 0700);
	snprintf(p, sizeof(p), "%s/state", d);
	write_state(p, m, tag);
	snprintf(p, sizeof(p), "%s/memory", d);
	write_mem(p, NPAGES, fill);
	return d;
}

static const char *in(const char *d, const char *f)
{
	static char bufs[8][640];
	static int next;
	char *b = bufs[next++ % 8];
	snprintf(b, 640, "%s/%s", d, f);
	return b;
}

/* base: pages 0, 2, 5 with data; diff: page 2 rewritten, page 5 zeroed
 * (written as data), page 9 new */
static const int BASE_FILL[NPAGES] = {'A', -1, 'B', -1, -1, 'C', -1, -1,
				      -1,  -1, -1,  -1, -1, -1,  -1, -1};
static const int DIFF_FILL[NPAGES] = {-1, -1, 'b', -1, -1, 0, -1, -1,
				      -1, 'n', -1, -1, -1, -1, -1, -1};
static const int MERGED[NPAGES] = {'A', -1, 'b', -1, -1, 0, -1, -1,
				   -1,  'n', -1, -1, -1, -1, -1, -1};

/* ---- the memory section ---- */

TEST(memory_section_round_trip)
{
	struct snap_writer w;
	snap_writer_init(&w);
	struct snap_mem_info m = info(SNAP_MEM_DIFF, 7, 9), out;
	snap_mem_write(&m, &w);
	uint8_t *buf;
	size_t len;
	CHECK_EQ(snap_writer_finish(&w, &buf, &len), 0);
	snap_writer_free(&w);
	struct snap_reader r;
	CHECK_EQ(snap_reader_open(buf, len, &r, err, sizeof(err)), 0);
	const uint8_t *p;
	size_t plen;
	uint32_t v;
	CHECK_EQ(snap_reader_find(&r, SNAP_MEMORY_ID, &v, &p, &plen), 0);
	CHECK_EQ(v, SNAP_MEMORY_VERSION);
	CHECK_EQ(plen, SNAP_MEMORY_LEN);
	CHECK_EQ(p[0], SNAP_MEM_DIFF);
	bool present = false;
	CHECK_EQ(snap_mem_find(&r, &out, &present, err, sizeof(err)), 0);
	CHECK(present);
	CHECK(same_info(&out, &m));
	free(buf);

	/* a file without the section is a Full snapshot without identity */
	snap_writer_init(&w);
	snap_writer_section_begin(&w, "config", 1);
	snap_writer_section_end(&w);
	CHECK_EQ(snap_writer_finish(&w, &buf, &len), 0);
	snap_writer_free(&w);
	CHECK_EQ(snap_reader_open(buf, len, &r, err, sizeof(err)), 0);
	CHECK_EQ(snap_mem_find(&r, &out, &present, err, sizeof(err)), 0);
	CHECK(!present);
	CHECK_EQ(out.kind, SNAP_MEM_FULL);
	CHECK(snap_mem_id_zero(out.id));
	free(buf);

	uint8_t a[SNAP_MEM_ID_LEN], b[SNAP_MEM_ID_LEN];
	CHECK_EQ(snap_mem_new_id(a), 0);
	CHECK_EQ(snap_mem_new_id(b), 0);
	CHECK(!snap_mem_id_zero(a) && memcmp(a, b, sizeof(a)));
	char hex[33];
	snap_mem_id_hex(m.id, hex);
	CHECK_STR(hex, "07070707070707070707070707070707");
}

/* The 48-byte payload of @m. */
static void payload(const struct snap_mem_info *m, uint8_t out[SNAP_MEMORY_LEN])
{
	memset(out, 0, SNAP_MEMORY_LEN);
	out[0] = m->kind;
	for (int i = 0; i < 8; i++)
		out[8 + i] = (uint8_t)(m->size >> (8 * i));
	memcpy(out + 16, m->id, 16);
	memcpy(out + 32, m->base, 16);
}

TEST(memory_section_refusals)
{
	struct snap_mem_info good = info(SNAP_MEM_FULL, 1, 0), out;
	uint8_t p[SNAP_MEMORY_LEN + 1];
	payload(&good, p);
	CHECK_EQ(snap_mem_decode(p, SNAP_MEMORY_LEN, 1, &out, err, sizeof(err)), 0);
	CHECK_EQ(out.kind, SNAP_MEM_FULL);
	struct {
		struct snap_mem_info m;
		size_t len;
		uint32_t version;
		int poke; /* byte to set to 1, or -1 */
		const char *says;
	} bad[] = {
		{good, SNAP_MEMORY_LEN, 2, -1, "version 2"},
		{good, SNAP_MEMORY_LEN - 1, 1, -1, "memory"},
		{good, SNAP_MEMORY_LEN + 1, 1, -1, "memory"},
		{info(3, 1, 0), SNAP_MEMORY_LEN, 1, -1, "kind 3"},
		{good, SNAP_MEMORY_LEN, 1, 7, "reserved byte 7"},
		{info(SNAP_MEM_FULL, 1, 0), SNAP_MEMORY_LEN, 1, 9, "4 KiB pages"},
		{info(SNAP_MEM_FULL, 0, 0), SNAP_MEMORY_LEN, 1, -1, "no identity"},
		{info(SNAP_MEM_FULL, 1, 2), SNAP_MEMORY_LEN, 1, -1, "Full snapshot with a base"},
		{info(SNAP_MEM_DIFF, 1, 0), SNAP_MEMORY_LEN, 1, -1, "Diff snapshot without a base"},
		{info(SNAP_MEM_MERGING, 1, 0), SNAP_MEMORY_LEN, 1, -1, "without a base"},
		{info(SNAP_MEM_DIFF, 4, 4), SNAP_MEMORY_LEN, 1, -1, "its own base"},
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		payload(&bad[k].m, p);
		p[SNAP_MEMORY_LEN] = 0;
		if (bad[k].poke >= 0)
			p[bad[k].poke] = 1;
		err[0] = 0;
		int r = snap_mem_decode(p, bad[k].len, bad[k].version, &out, err, sizeof(err));
		CHECK_EQ(r, -EINVAL);
		if (!strstr(err, bad[k].says) || strchr(err, '\n'))
			printf("  case %zu: '%s' does not say '%s'\n", k, err, bad[k].says);
		CHECK(strstr(err, bad[k].says) != NULL);
	}
	/* size 0 */
	struct snap_mem_info z = good;
	z.size = 0;
	payload(&z, p);
	CHECK_EQ(snap_mem_decode(p, SNAP_MEMORY_LEN, 1, &out, err, sizeof(err)), -EINVAL);
}

TEST(memory_section_rewrite_keeps_every_other_section)
{
	struct snap_mem_info a = info(SNAP_MEM_DIFF, 1, 2), b = info(SNAP_MEM_FULL, 1, 0);
	write_state(path("s1"), &a, "tag-one");
	uint8_t *buf, *nbuf;
	size_t len, nlen;
	struct snap_reader r, nr;
	CHECK_EQ(snap_file_read(path("s1"), &buf, &len, err, sizeof(err)), 0);
	CHECK_EQ(snap_reader_open(buf, len, &r, err, sizeof(err)), 0);
	CHECK_EQ(snap_mem_rewrite(&r, &b, &nbuf, &nlen, err, sizeof(err)), 0);
	CHECK_EQ(nlen, len);
	CHECK_EQ(snap_reader_open(nbuf, nlen, &nr, err, sizeof(err)), 0);
	struct snap_iter i1 = {0}, i2 = {0};
	struct snap_section s1, s2;
	int n = 0;
	while (snap_reader_next(&r, &i1, &s1)) {
		CHECK(snap_reader_next(&nr, &i2, &s2));
		CHECK_STR(s1.id, s2.id);
		if (strcmp(s1.id, SNAP_MEMORY_ID))
			CHECK(s1.len == s2.len && !memcmp(s1.payload, s2.payload, s1.len));
		n++;
	}
	CHECK_EQ(n, 3);
	struct snap_mem_info out;
	CHECK_EQ(snap_mem_find(&nr, &out, NULL, err, sizeof(err)), 0);
	CHECK(same_info(&out, &b));
	free(buf);
	free(nbuf);
	/* no memory section yet: added right after "config" */
	write_state(path("s2"), NULL, "tag-two");
	CHECK_EQ(snap_file_read(path("s2"), &buf, &len, err, sizeof(err)), 0);
	CHECK_EQ(snap_reader_open(buf, len, &r, err, sizeof(err)), 0);
	CHECK_EQ(snap_mem_rewrite(&r, &b, &nbuf, &nlen, err, sizeof(err)), 0);
	CHECK_EQ(snap_reader_open(nbuf, nlen, &nr, err, sizeof(err)), 0);
	memset(&i2, 0, sizeof(i2));
	const char *order[] = {"config", SNAP_MEMORY_ID, "vm"};
	for (int k = 0; k < 3; k++) {
		CHECK(snap_reader_next(&nr, &i2, &s2));
		CHECK_STR(s2.id, order[k]);
	}
	free(buf);
	free(nbuf);
	unlink(path("s1"));
	unlink(path("s2"));
}

/* ---- merging directories ---- */

TEST(merge_dirs_folds_a_diff_onto_its_base_and_the_next_onto_that)
{
	struct snap_mem_info x = info(SNAP_MEM_FULL, 0x11, 0), y = info(SNAP_MEM_DIFF, 0x22, 0x11);
	const char *base = snapdir("base", &x, "at-A", BASE_FILL);
	const char *diff = snapdir("diff", &y, "at-B", DIFF_FILL);
	size_t dsl, dml;
	uint8_t *dstate = slurp(in(diff, "state"), &dsl), *dmem = slurp(in(diff, "memory"), &dml);
	uint64_t copied = 0;
	int r = snap_merge_dirs(base, diff, &copied, err, sizeof(err));
	if (r)
		printf("  %s\n", err);
	CHECK_EQ(r, 0);
	CHECK_EQ(copied, 3 * PG); /* the diff's three pages, the zero one included */
	CHECK(mem_is(in(base, "memory"), MERGED));
	/* BASE now is the later snapshot, Full, with the diff's identity */
	struct snap_mem_info m;
	bool present;
	char tag[32];
	read_state(in(base, "state"), &m, &present, tag, sizeof(tag));
	CHECK(present && m.kind == SNAP_MEM_FULL && m.size == MSIZE);
	CHECK(!memcmp(m.id, y.id, SNAP_MEM_ID_LEN) && snap_mem_id_zero(m.base));
	CHECK_STR(tag, "at-B");
	/* DIFF is untouched: it could be merged onto another copy of A */
	CHECK(same_file(in(diff, "state"), dstate, dsl));
	CHECK(same_file(in(diff, "memory"), dmem, dml));
	CHECK_EQ(temporaries(dir), 0);
	free(dstate);
	free(dmem);

	/* the next Diff (taken after B) goes onto the merged BASE ... */
	struct snap_mem_info z = info(SNAP_MEM_DIFF, 0x33, 0x22);
	int next[NPAGES] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 'z'};
	const char *diff2 = snapdir("diff2", &z, "at-C", next);
	CHECK_EQ(snap_merge_dirs(base, diff2, &copied, err, sizeof(err)), 0);
	int merged2[NPAGES];
	memcpy(merged2, MERGED, sizeof(merged2));
	merged2[15] = 'z';
	CHECK(mem_is(in(base, "memory"), merged2));
	read_state(in(base, "state"), &m, &present, tag, sizeof(tag));
	CHECK_STR(tag, "at-C");
	/* ... and a Diff of the old base (A) no longer does */
	size_t bsl, bml;
	uint8_t *bstate = slurp(in(base, "state"), &bsl), *bmem = slurp(in(base, "memory"), &bml);
	CHECK_EQ(snap_merge_dirs(base, diff, &copied, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "is not the base of") != NULL);
	CHECK(strstr(err, "after snapshot 11111111111111111111111111111111, the base is snapshot 33333333333333333333333333333333") != NULL);
	CHECK(same_file(in(base, "state"), bstate, bsl));
	CHECK(same_file(in(base, "memory"), bmem, bml));
	free(bstate);
	free(bmem);
}

/* Every refused merge leaves BASE byte for byte as it was, no temporary
 * file behind. */
static void refused(const char *base, const char *diff, const char *says)
{
	size_t sl, ml;
	uint8_t *s = slurp(in(base, "state"), &sl), *m = slurp(in(base, "memory"), &ml);
	uint64_t copied = 0;
	err[0] = 0;
	int r = snap_merge_dirs(base, diff, &copied, err, sizeof(err));
	CHECK(r < 0);
	if (!strstr(err, says) || strchr(err, '\n'))
		printf("  '%s' does not say '%s'\n", err, says);
	CHECK(strstr(err, says) != NULL);
	if (s)
		CHECK(same_file(in(base, "state"), s, sl));
	if (m)
		CHECK(same_file(in(base, "memory"), m, ml));
	CHECK_EQ(temporaries(dir), 0);
	free(s);
	free(m);
}

TEST(merge_dirs_refusals_change_nothing)
{
	struct snap_mem_info x = info(SNAP_MEM_FULL, 0x11, 0), y = info(SNAP_MEM_DIFF, 0x22, 0x11);
	const char *base = snapdir("rbase", &x, "at-A", BASE_FILL);
	const char *diff = snapdir("rdiff", &y, "at-B", DIFF_FILL);

	/* a diff memory file one page short */
	write_mem(in(diff, "memory"), NPAGES - 1, DIFF_FILL);
	refused(base, diff, "not the same memory size");
	/* ... one page long, with the state saying so too */
	struct snap_mem_info big = y;
	big.size = MSIZE + PG;
	write_state(in(diff, "state"), &big, "at-B");
	write_mem(in(diff, "memory"), NPAGES + 1, DIFF_FILL);
	refused(base, diff, "bytes of memory");
	write_state(in(diff, "state"), &y, "at-B");
	/* not regular files: a directory, a FIFO (never blocks), missing */
	unlink(in(diff, "memory"));
	CHECK_EQ(mkdir(in(diff, "memory"), 0700), 0);
	refused(base, diff, "not a regular file");
	rmdir(in(diff, "memory"));
	CHECK_EQ(mkfifo(in(diff, "memory"), 0600), 0);
	refused(base, diff, "not a regular file");
	unlink(in(diff, "memory"));
	refused(base, diff, "No such file");
	write_mem(in(diff, "memory"), NPAGES, DIFF_FILL);
	unlink(in(base, "memory"));
	refused(base, diff, "No such file");
	write_mem(in(base, "memory"), NPAGES, BASE_FILL);

	/* kinds and identities */
	struct snap_mem_info full = info(SNAP_MEM_FULL, 0x22, 0);
	write_state(in(diff, "state"), &full, "at-B");
	refused(base, diff, "is not a Diff snapshot (Full)");
	write_state(in(diff, "state"), &y, "at-B");
	struct snap_mem_info bdiff = info(SNAP_MEM_DIFF, 0x11, 0x05);
	write_state(in(base, "state"), &bdiff, "at-A");
	refused(base, diff, "Diff snapshot itself");
	write_state(in(base, "state"), NULL, "at-A");
	refused(base, diff, "no memory identity");
	struct snap_mem_info other = info(SNAP_MEM_FULL, 0x44, 0);
	write_state(in(base, "state"), &other, "at-A");
	refused(base, diff, "is not the base of");
	write_state(in(base, "state"), &x, "at-A");
	/* the same directory twice: it is no Diff of itself */
	refused(base, base, "not a Diff");

	/* damaged state files: named, nothing changes */
	char p[700];
	snprintf(p, sizeof(p), "%s", in(diff, "state"));
	int fd = open(p, O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0);
	uint8_t byte;
	CHECK_EQ(pread(fd, &byte, 1, 100), 1);
	byte ^= 0x40;
	CHECK_EQ(pwrite(fd, &byte, 1, 100), 1);
	close(fd);
	refused(base, diff, "rdiff/state");
	write_state(in(diff, "state"), &y, "at-B");
	CHECK_EQ(truncate(in(base, "state"), 40), 0);
	{
		uint64_t copied;
		CHECK_EQ(snap_merge_dirs(base, diff, &copied, err, sizeof(err)) < 0, 1);
		CHECK(strstr(err, "rbase/state") != NULL);
	}
	write_state(in(base, "state"), &x, "at-A");
	/* and with everything put back, the merge goes through */
	uint64_t copied;
	CHECK_EQ(snap_merge_dirs(base, diff, &copied, err, sizeof(err)), 0);
	CHECK(mem_is(in(base, "memory"), MERGED));
}

TEST(an_interrupted_merge_is_finished_by_running_it_again)
{
	struct snap_mem_info x = info(SNAP_MEM_FULL, 0x11, 0), y = info(SNAP_MEM_DIFF, 0x22, 0x11);
	/* merging: BASE says so (y onto x), its memory is still A's ... */
	struct snap_mem_info merging = info(SNAP_MEM_MERGING, 0x22, 0x11);
	const char *base = snapdir("ibase", &merging, "at-A", BASE_FILL);
	const char *diff = snapdir("idiff", &y, "at-B", DIFF_FILL);
	uint64_t copied;
	CHECK_EQ(snap_merge_dirs(base, diff, &copied, err, sizeof(err)), 0);
	CHECK(mem_is(in(base, "memory"), MERGED));
	struct snap_mem_info m;
	bool present;
	char tag[32];
	read_state(in(base, "state"), &m, &present, tag, sizeof(tag));
	CHECK(m.kind == SNAP_MEM_FULL && !memcmp(m.id, y.id, SNAP_MEM_ID_LEN));
	CHECK_STR(tag, "at-B");
	/* ... or already merged (interrupted before the last rename) */
	write_state(in(base, "state"), &merging, "at-A");
	CHECK_EQ(snap_merge_dirs(base, diff, &copied, err, sizeof(err)), 0);
	CHECK(mem_is(in(base, "memory"), MERGED));
	read_state(in(base, "state"), &m, &present, tag, sizeof(tag));
	CHECK_STR(tag, "at-B");
	/* another Diff of A cannot finish someone else's merge */
	write_state(in(base, "state"), &merging, "at-A");
	struct snap_mem_info y2 = info(SNAP_MEM_DIFF, 0x55, 0x11);
	write_state(in(diff, "state"), &y2, "at-B2");
	refused(base, diff, "was interrupted");
	(void)x;
}

/* ---- merging plain memory files ---- */

TEST(merge_files_with_and_without_the_diffs_state_file)
{
	write_mem(path("b.mem"), NPAGES, BASE_FILL);
	write_mem(path("d.mem"), NPAGES, DIFF_FILL);
	uint64_t copied;
	CHECK_EQ(snap_merge_files(path("b.mem"), path("d.mem"), NULL, &copied, err, sizeof(err)), 0);
	CHECK_EQ(copied, 3 * PG);
	CHECK(mem_is(path("b.mem"), MERGED));
	/* with the state file: refused unless it is a Diff's of this size,
	 * before the memory is touched; afterwards it is Full */
	write_mem(path("b.mem"), NPAGES, BASE_FILL);
	struct snap_mem_info full = info(SNAP_MEM_FULL, 0x22, 0), y = info(SNAP_MEM_DIFF, 0x22, 0x11);
	write_state(path("d.state"), &full, "at-B");
	CHECK_EQ(snap_merge_files(path("b.mem"), path("d.mem"), path("d.state"), &copied, err,
				  sizeof(err)),
		 -EINVAL);
	CHECK(strstr(err, "not the state file of a Diff snapshot") != NULL);
	CHECK(mem_is(path("b.mem"), BASE_FILL));
	struct snap_mem_info small = y;
	small.size = MSIZE - PG;
	write_state(path("d.state"), &small, "at-B");
	CHECK_EQ(snap_merge_files(path("b.mem"), path("d.mem"), path("d.state"), &copied, err,
				  sizeof(err)),
		 -EINVAL);
	CHECK(strstr(err, "the snapshots' memory") != NULL);
	CHECK(mem_is(path("b.mem"), BASE_FILL));
	write_state(path("d.state"), &y, "at-B");
	CHECK_EQ(snap_merge_files(path("b.mem"), path("d.mem"), path("d.state"), &copied, err,
				  sizeof(err)),
		 0);
	CHECK(mem_is(path("b.mem"), MERGED));
	struct snap_mem_info m;
	bool present;
	char tag[32];
	read_state(path("d.state"), &m, &present, tag, sizeof(tag));
	CHECK(m.kind == SNAP_MEM_FULL && !memcmp(m.id, y.id, SNAP_MEM_ID_LEN));
	CHECK_STR(tag, "at-B");
	/* refusals: the same file, sizes, a FIFO */
	CHECK_EQ(snap_merge_files(path("b.mem"), path("b.mem"), NULL, &copied, err, sizeof(err)),
		 -EINVAL);
	CHECK(strstr(err, "the same file") != NULL);
	write_mem(path("d.mem"), NPAGES + 2, DIFF_FILL);
	CHECK_EQ(snap_merge_files(path("b.mem"), path("d.mem"), NULL, &copied, err, sizeof(err)),
		 -EINVAL);
	CHECK(strstr(err, "not the same memory size") != NULL);
	CHECK(mkfifo(path("f.mem"), 0600) == 0);
	CHECK_EQ(snap_merge_files(path("b.mem"), path("f.mem"), NULL, &copied, err, sizeof(err)),
		 -EINVAL);
	CHECK(strstr(err, "not a regular file") != NULL);
	CHECK(mem_is(path("b.mem"), MERGED));
	CHECK_EQ(temporaries(dir), 0);
}

TEST(merge_keeps_a_mapping_of_the_old_base_intact)
{
	/* a VM restored from BASE maps its memory file private: the merge
	 * writes a new file and renames it, the old one stays as it was */
	write_mem(path("m.mem"), NPAGES, BASE_FILL);
	write_mem(path("md.mem"), NPAGES, DIFF_FILL);
	int fd = open(path("m.mem"), O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0);
	uint64_t copied;
	CHECK_EQ(snap_merge_files(path("m.mem"), path("md.mem"), NULL, &copied, err, sizeof(err)), 0);
	uint8_t c;
	CHECK_EQ(pread(fd, &c, 1, 2 * PG), 1);
	CHECK_EQ(c, 'B');
	close(fd);
	CHECK(mem_is(path("m.mem"), MERGED));
}

TEST(merge_across_file_systems)
{
	/* base on /dev/shm (tmpfs), diff here: copy_file_range may refuse
	 * (EXDEV) and the merge reads and writes instead */
	struct stat a, b;
	char shm[] = "/dev/shm/visor-test-merge-XXXXXX";
	if (stat("/dev/shm", &a) || stat(dir[0] ? path("") : "/tmp", &b) || a.st_dev == b.st_dev ||
	    !mkdtemp(shm)) {
		printf("  (no second file system at /dev/shm: nothing to try)\n");
		return;
	}
	char bm[64];
	snprintf(bm, sizeof(bm), "%s/b.mem", shm);
	write_mem(bm, NPAGES, BASE_FILL);
	write_mem(path("x.mem"), NPAGES, DIFF_FILL);
	uint64_t copied;
	CHECK_EQ(snap_merge_files(bm, path("x.mem"), NULL, &copied, err, sizeof(err)), 0);
	CHECK_EQ(copied, 3 * PG);
	CHECK(mem_is(bm, MERGED));
	CHECK_EQ(temporaries(shm), 0);
	unlink(bm);
	rmdir(shm);
}

TEST(cleanup)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK_EQ(system(cmd), 0);
}

TEST_MAIN()
