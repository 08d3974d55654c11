/* SPDX-License-Identifier: MIT */
/*
 * The "config" section of a snapshot: a configuration with every kind of
 * device round-trips exactly, the restoring process keeps its host-side
 * settings, and malformed or refused items fail with a message and leave
 * the output untouched.
 */
#include "../../src/snapshot/config_section.h"

#include <errno.h>
#include <stdlib.h>

#include "test.h"

static char err[256];
static struct vm_config in, out, before;

static void rich(struct vm_config *c)
{
	struct config_err e;
	config_init(c);
	CHECK_EQ(config_set_machine(c, 4, 1024, false, true, &e), 0);
	CHECK_EQ(config_set_boot(c, "/k/vmlinuz", "/k/initrd", "console=ttyS0 quiet", &e), 0);
	struct disk_config d = {.id = "rootfs", .path = "/img/root.ext4", .root = true,
				.cache = DRIVE_CACHE_WRITEBACK, .io_engine = DRIVE_IO_ASYNC,
				.partuuid = "abcd-01", .transport = TRANSPORT_PCI};
	d.rl.bandwidth = (struct bucket_config){.size = 1 << 20, .one_time_burst = 7,
						.refill_time_ms = 100};
	CHECK_EQ(config_set_disk(c, &d, &e), 0);
	struct disk_config d2 = {.id = "data", .path = "/img/data", .readonly = true,
				 .cache = DRIVE_CACHE_UNSAFE, .transport = TRANSPORT_MMIO};
	d2.rl.ops = (struct bucket_config){.size = 100, .refill_time_ms = 1000};
	CHECK_EQ(config_set_disk(c, &d2, &e), 0);
	struct net_config n = {.id = "eth0", .tap = "tap0", .mac = "06:00:ac:10:00:02",
			       .mtu = 1400, .transport = TRANSPORT_MMIO};
	n.tx_rl.bandwidth = (struct bucket_config){.size = 5000, .refill_time_ms = 10};
	CHECK_EQ(config_set_net(c, &n, &e), 0);
	struct net_config n2 = {.id = "eth1", .tap = "tap1"};
	CHECK_EQ(config_set_net(c, &n2, &e), 0);
	struct vsock_config v = {.enabled = true, .id = "vs", .cid = 52, .uds = "/tmp/v.sock"};
	CHECK_EQ(config_set_vsock(c, &v, &e), 0);
	struct balloon_config b = {.enabled = true, .size = 64ull << 20, .deflate_on_oom = true,
				   .stats_period = 2, .transport = TRANSPORT_MMIO};
	CHECK_EQ(config_set_balloon(c, &b, &e), 0);
	struct rng_config g = {.enabled = true};
	g.rl.bandwidth = (struct bucket_config){.size = 4096, .refill_time_ms = 1};
	CHECK_EQ(config_set_rng(c, &g, &e), 0);
	struct config_err ve;
	CHECK_EQ(config_validate(c, &ve), 0);
}

/* The restoring process's own configuration: only host-side settings. */
static void host(struct vm_config *c)
{
	config_init(c);
	c->logger.set = true;
	snprintf(c->logger.path, sizeof(c->logger.path), "/var/log/visor.log");
	c->metrics.set = true;
	snprintf(c->metrics.path, sizeof(c->metrics.path), "/run/metrics");
	snprintf(c->serial_out, sizeof(c->serial_out), "/run/console");
	snprintf(c->kvm_path, sizeof(c->kvm_path), "/dev/kvm-test");
	c->allow_software_kvm = true;
}

struct blob {
	uint8_t *buf;
	size_t len;
	const uint8_t *p;
	size_t plen;
	uint32_t version;
};

static void save(const struct vm_config *c, struct blob *b)
{
	struct snap_writer w;
	snap_writer_init(&w);
	snap_config_write(c, &w);
	CHECK_EQ(snap_writer_finish(&w, &b->buf, &b->len), 0);
	struct snap_reader rd;
	CHECK_EQ(snap_reader_open(b->buf, b->len, &rd, err, sizeof(err)), 0);
	CHECK_EQ(snap_reader_find(&rd, SNAP_CONFIG_ID, &b->version, &b->p, &b->plen), 0);
}

TEST(round_trip_keeps_everything_and_the_host_settings)
{
	rich(&in);
	struct blob b;
	save(&in, &b);
	host(&out);
	CHECK_EQ(snap_config_read(b.p, b.plen, b.version, &out, err, sizeof(err)), 0);
	/* the guest-visible part is the saved one */
	CHECK_EQ(out.cpus, 4);
	CHECK_EQ(out.mem_size, 1024ull << 20);
	CHECK(out.track_dirty_pages && !out.smt);
	CHECK_STR(out.kernel, "/k/vmlinuz");
	CHECK_STR(out.initrd, "/k/initrd");
	CHECK_STR(out.cmdline, "console=ttyS0 quiet");
	CHECK_EQ(out.ndisks, 2);
	CHECK(!memcmp(&out.disks[0], &in.disks[0], sizeof(in.disks[0])));
	CHECK(!memcmp(&out.disks[1], &in.disks[1], sizeof(in.disks[1])));
	CHECK_EQ(out.nnics, 2);
	CHECK(!memcmp(&out.nics[0], &in.nics[0], sizeof(in.nics[0])));
	CHECK(!memcmp(&out.nics[1], &in.nics[1], sizeof(in.nics[1])));
	CHECK(!memcmp(&out.vsock, &in.vsock, sizeof(in.vsock)));
	CHECK(!memcmp(&out.balloon, &in.balloon, sizeof(in.balloon)));
	CHECK(!memcmp(&out.rng, &in.rng, sizeof(in.rng)));
	/* the host-side part is the restoring process's */
	CHECK_STR(out.logger.path, "/var/log/visor.log");
	CHECK_STR(out.metrics.path, "/run/metrics");
	CHECK_STR(out.serial_out, "/run/console");
	CHECK_STR(out.kvm_path, "/dev/kvm-test");
	CHECK(out.allow_software_kvm);
	/* saving the result gives the same bytes */
	struct blob b2;
	save(&out, &b2);
	CHECK_EQ(b2.plen, b.plen);
	CHECK(!memcmp(b2.p, b.p, b.plen));
	free(b2.buf);

	/* every truncation and a trailing byte are refused, out untouched */
	host(&out);
	before = out;
	for (size_t n = 0; n < b.plen; n++) {
		err[0] = 0;
		CHECK_EQ(snap_config_read(b.p, n, b.version, &out, err, sizeof(err)), -EINVAL);
		CHECK(err[0] != 0);
	}
	uint8_t *big = calloc(1, b.plen + 1);
	memcpy(big, b.p, b.plen);
	CHECK_EQ(snap_config_read(big, b.plen + 1, b.version, &out, err, sizeof(err)), -EINVAL);
	free(big);
	CHECK_EQ(snap_config_read(b.p, b.plen, b.version + 1, &out, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "version") != NULL);
	CHECK(!memcmp(&out, &before, sizeof(out)));
	free(b.buf);
}

/* Patch byte @off of a saved rich config to @v and expect a refusal that
 * names @what. */
static void patched(size_t off, uint8_t v, const char *what)
{
	rich(&in);
	struct blob b;
	save(&in, &b);
	uint8_t *p = malloc(b.plen);
	memcpy(p, b.p, b.plen);
	CHECK(off < b.plen);
	p[off] = v;
	host(&out);
	before = out;
	err[0] = 0;
	CHECK_EQ(snap_config_read(p, b.plen, b.version, &out, err, sizeof(err)), -EINVAL);
	if (!strstr(err, what))
		printf("  message \"%s\" does not name \"%s\"\n", err, what);
	CHECK(strstr(err, what) != NULL);
	CHECK(!memcmp(&out, &before, sizeof(out)));
	free(p);
	free(b.buf);
}

/* Offsets in the payload of rich(): cpus at 0, mem at 4, smt 12,
 * track 13, reserved 14-15, kernel string at 16. */
TEST(malformed_or_refused_items_fail_with_a_message)
{
	patched(0, 0, "vcpu_count");       /* cpus 0: the setter refuses */
	patched(12, 2, "smt");             /* a flag that is not 0/1 */
	patched(14, 1, "reserved");
	patched(16, 0xff, "kernel path");  /* a length past the data: truncated */
}

TEST(item_level_refusals)
{
	struct config_err e;
	/* a drive path with a NUL inside */
	rich(&in);
	struct blob b;
	save(&in, &b);
	uint8_t *p = malloc(b.plen);
	memcpy(p, b.p, b.plen);
	/* find "/img/root.ext4" and put a NUL in it */
	uint8_t *at = memmem(p, b.plen, "/img/root.ext4", 14);
	CHECK(at != NULL);
	at[3] = 0;
	host(&out);
	CHECK_EQ(snap_config_read(p, b.plen, b.version, &out, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "NUL") != NULL);
	/* a transport that is neither */
	memcpy(p, b.p, b.plen);
	at = memmem(p, b.plen, "/img/data", 9);
	CHECK(at != NULL);
	at[9 + 4] = 7; /* readonly, root, cache, io_engine, then transport */
	CHECK_EQ(snap_config_read(p, b.plen, b.version, &out, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "transport") != NULL);
	/* Found by fuzz_dev_state: an id with a newline is refused by the
	 * setter, and the message quoting it stays one printable line */
	memcpy(p, b.p, b.plen);
	at = memmem(p, b.plen, "rootfs", 6);
	CHECK(at != NULL);
	at[2] = '\n';
	CHECK_EQ(snap_config_read(p, b.plen, b.version, &out, err, sizeof(err)), -EINVAL);
	CHECK(strchr(err, '\n') == NULL);
	CHECK(strstr(err, "ro?tfs") != NULL);
	free(p);
	free(b.buf);

	/* a duplicate drive id, a second root, too many MMIO devices: what
	 * the setters and config_validate refuse anywhere else */
	rich(&in);
	snprintf(in.disks[1].id, sizeof(in.disks[1].id), "rootfs");
	save(&in, &b);
	CHECK_EQ(snap_config_read(b.p, b.plen, b.version, &out, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "twice") != NULL);
	free(b.buf);
	rich(&in);
	in.disks[1].root = true;
	save(&in, &b);
	CHECK_EQ(snap_config_read(b.p, b.plen, b.version, &out, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "root") != NULL);
	free(b.buf);
	rich(&in);
	in.balloon.size = in.mem_size;
	save(&in, &b);
	CHECK_EQ(snap_config_read(b.p, b.plen, b.version, &out, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "balloon") != NULL);
	free(b.buf);
	/* a disabled device with settings */
	config_init(&in);
	CHECK_EQ(config_set_boot(&in, "/k", NULL, NULL, &e), 0);
	in.vsock.cid = 3;
	save(&in, &b);
	CHECK_EQ(snap_config_read(b.p, b.plen, b.version, &out, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "vsock") != NULL);
	free(b.buf);
}

TEST_MAIN()
