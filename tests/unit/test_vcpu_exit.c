/* SPDX-License-Identifier: MIT */
/* Exit handling with fabricated kvm_run pages. */
#include "../../src/vcpu_exit.h"

#include "test.h"

struct rec {
	struct bus_dev dev;
	int writes, reads;
	uint8_t last[8];
};

static void rd(struct bus_dev *d, uint64_t off, void *data, uint32_t len)
{
	struct rec *r = container_of(d, struct rec, dev);
	r->reads++;
	memset(data, 0x5a, len);
}

static void wr(struct bus_dev *d, uint64_t off, const void *data, uint32_t len)
{
	struct rec *r = container_of(d, struct rec, dev);
	r->writes++;
	memcpy(r->last, data, len);
}

static const struct bus_dev_ops ops = {rd, wr};

TEST(io_out_and_string_io)
{
	static uint8_t page[4096] __attribute__((aligned(64)));
	struct kvm_run *run = (struct kvm_run *)page;
	struct bus pio, mmio;
	struct rec r = {.dev = {.ops = &ops, .name = "rec"}};
	bus_init(&pio, "pio");
	bus_init(&mmio, "mmio");
	CHECK_EQ(bus_register(&pio, &r.dev, 0x3f8, 8), 0);
	run->exit_reason = KVM_EXIT_IO;
	run->io.direction = KVM_EXIT_IO_OUT;
	run->io.size = 1;
	run->io.port = 0x3f8;
	run->io.count = 3;
	run->io.data_offset = 1024;
	memcpy(page + 1024, "abc", 3);
	CHECK_EQ(vcpu_handle_exit(run, sizeof(page), &pio, &mmio), VCPU_CONTINUE);
	CHECK_EQ(r.writes, 3);
	CHECK_EQ(r.last[0], 'c');
	/* IN from an unhandled port: all ones */
	run->io.direction = KVM_EXIT_IO_IN;
	run->io.port = 0x80;
	run->io.size = 4;
	run->io.count = 1;
	CHECK_EQ(vcpu_handle_exit(run, sizeof(page), &pio, &mmio), VCPU_CONTINUE);
	uint32_t v;
	memcpy(&v, page + 1024, 4);
	CHECK_EQ(v, 0xffffffff);
	/* data outside the kvm_run mapping */
	run->io.data_offset = 4094;
	CHECK_EQ(vcpu_handle_exit(run, sizeof(page), &pio, &mmio), VCPU_CRASH);
	run->io.data_offset = 1024;
	run->io.count = 0xffffffff;
	CHECK_EQ(vcpu_handle_exit(run, sizeof(page), &pio, &mmio), VCPU_CRASH);
	run->io.count = 1;
	run->io.size = 3;
	CHECK_EQ(vcpu_handle_exit(run, sizeof(page), &pio, &mmio), VCPU_CRASH);
}

TEST(mmio_and_others)
{
	static uint8_t page[4096] __attribute__((aligned(64)));
	struct kvm_run *run = (struct kvm_run *)page;
	struct bus pio, mmio;
	struct rec r = {.dev = {.ops = &ops, .name = "rec"}};
	bus_init(&pio, "pio");
	bus_init(&mmio, "mmio");
	CHECK_EQ(bus_register(&mmio, &r.dev, 0xd0000000, 0x1000), 0);
	run->exit_reason = KVM_EXIT_MMIO;
	run->mmio.phys_addr = 0xd0000010;
	run->mmio.len = 8;
	run->mmio.is_write = 0;
	CHECK_EQ(vcpu_handle_exit(run, sizeof(page), &pio, &mmio), VCPU_CONTINUE);
	CHECK_EQ(run->mmio.data[7], 0x5a);
	run->mmio.phys_addr = 0xe0000000;
	CHECK_EQ(vcpu_handle_exit(run, sizeof(page), &pio, &mmio), VCPU_CONTINUE);
	CHECK_EQ(run->mmio.data[0], 0xff);
	run->mmio.len = 9;
	CHECK_EQ(vcpu_handle_exit(run, sizeof(page), &pio, &mmio), VCPU_CRASH);
	run->exit_reason = KVM_EXIT_SHUTDOWN;
	CHECK_EQ(vcpu_handle_exit(run, sizeof(page), &pio, &mmio), VCPU_SHUTDOWN);
	run->exit_reason = KVM_EXIT_INTERNAL_ERROR;
	CHECK_EQ(vcpu_handle_exit(run, sizeof(page), &pio, &mmio), VCPU_CRASH);
	run->exit_reason = KVM_EXIT_SYSTEM_EVENT;
	run->system_event.type = KVM_SYSTEM_EVENT_RESET;
	CHECK_EQ(vcpu_handle_exit(run, sizeof(page), &pio, &mmio), VCPU_RESET);
	run->exit_reason = KVM_EXIT_INTR;
	CHECK_EQ(vcpu_handle_exit(run, sizeof(page), &pio, &mmio), VCPU_CONTINUE);
	/* a full dirty ring is not a crash: harvest and run on */
	run->exit_reason = KVM_EXIT_DIRTY_RING_FULL;
	CHECK_EQ(vcpu_handle_exit(run, sizeof(page), &pio, &mmio), VCPU_DIRTY_RING_FULL);
	CHECK_STR(vcpu_exit_name(KVM_EXIT_DIRTY_RING_FULL), "DIRTY_RING_FULL");
	run->exit_reason = 9999;
	CHECK_EQ(vcpu_handle_exit(run, sizeof(page), &pio, &mmio), VCPU_CRASH);
}

TEST_MAIN()
