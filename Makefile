# visor - non-recursive Makefile.
#
#   make            build build/visor (static, -Werror)
#   make test       unit tests (plain + ASan/UBSan), KVM-level tests, lab tests
#   make run        build the default guest and boot it (nested lab if needed);
#                   ARGS="..." adds visor run options (e.g. ARGS="--net tap=tap0")
#   make unit       unit tests only;  make asan  sanitizer unit tests only
#   make guest      the default guest (build/guest: Debian's cloud kernel);
#   make guest-generic  the same appliance on Debian's generic kernel
#                   (build/guest-generic; it has CONFIG_VMGENID, the clone tests boot it)
#   make learn      build-learn/visor: seccomp filters log, and ioctl requests a
#                   filter would refuse are named (docs/security.md)
#   make CC=clang   any of the above with clang
#
CC ?= gcc
BUILD ?= build
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo unknown)

WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wvla -Wno-unused-parameter
CFLAGS ?= -O2 -g
ALL_CFLAGS := -std=c17 $(WARN) -D_GNU_SOURCE -DVISOR_VERSION='"0.1.0 ($(VERSION))"' \
	-fno-strict-aliasing -fstack-protector-strong -D_FORTIFY_SOURCE=2 -MMD -MP $(CFLAGS)
LDFLAGS ?=
LDLIBS := -luring -ljson-c -lseccomp -lssl -lcrypto -lpthread -lz
# The static binaries: libcrypto.a refers to dlopen, getaddrinfo and
# gethostbyname, which a static glibc provides only by loading the host's
# shared libraries at run time (the linker warns).  visor loads no modules
# and resolves no names; --wrap sends libcrypto's references to the failing
# stubs at the end of src/migration/transport.c (see there).
STATIC_LDFLAGS := -static -Wl,--wrap=dlopen,--wrap=getaddrinfo,--wrap=gethostbyname
SAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

SRCS := $(shell find src -name '*.c' | sort)
LIB_SRCS := $(filter-out src/main.c,$(SRCS))
OBJS := $(SRCS:%.c=$(BUILD)/obj/%.o)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
SAN_OBJS := $(LIB_SRCS:%.c=$(BUILD)/san/%.o)

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
SAN_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests-san/%)

.PHONY: all test unit asan kvm-tests lab-tests lab-tools run guest guest-generic clean deps fuzz fuzz-bins fuzz-long fuzz-merge stress learn
all: $(BUILD)/visor $(BUILD)/visor-test

$(BUILD)/visor: $(OBJS)
	$(CC) $(ALL_CFLAGS) $(STATIC_LDFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# visor with test hooks (src/seccomp.c: VISOR_TEST_FORBIDDEN=KIND makes that
# thread kind issue a forbidden system call); for the seccomp tests only
$(BUILD)/obj-hooks/src/seccomp.o: src/seccomp.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DVISOR_TEST_HOOKS -c -o $@ $<
$(BUILD)/visor-test: $(filter-out $(BUILD)/obj/src/seccomp.o,$(OBJS)) $(BUILD)/obj-hooks/src/seccomp.o
	$(CC) $(ALL_CFLAGS) $(STATIC_LDFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The version (git describe) is compiled into the files that print it: they
# are rebuilt when it changes (else a build kept the first commit's).
VERSION_STAMP := $(BUILD)/version.stamp
$(VERSION_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(VERSION)' | cmp -s - $@ || echo '$(VERSION)' >$@
$(addprefix $(BUILD)/obj/src/,main.o vm.o jailer.o) $(addprefix $(BUILD)/san/src/,vm.o jailer.o): $(VERSION_STAMP)
.PHONY: FORCE
FORCE:

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/san/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -U_FORTIFY_SOURCE -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $(filter %.c %.o,$^) $(LDLIBS)

$(BUILD)/tests-san/%: tests/unit/%.c $(SAN_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -U_FORTIFY_SOURCE -o $@ $(filter %.c %.o,$^) $(LDLIBS)

unit: $(UNIT_BINS)
	tests/run-unit $(UNIT_BINS)

asan: $(SAN_BINS)
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 tests/run-unit $(SAN_BINS)

# Synthetic guests for the KVM-level tests (freestanding, no libc).
GUEST_CFLAGS := -std=c17 -Wall -Wextra -Werror -O2 -ffreestanding -fno-pic -fno-pie \
	-mno-red-zone -mgeneral-regs-only -fno-stack-protector -nostdlib -static \
	-Wl,-T,tests/kvm/guest.ld -Wl,--build-id=none -Wl,--no-warn-rwx-segments -Wa,--noexecstack -no-pie
KVM_GUEST_SRCS := $(wildcard tests/kvm/guest_*.c)
KVM_GUESTS := $(KVM_GUEST_SRCS:tests/kvm/%.c=$(BUILD)/kvm/%.elf)
$(BUILD)/kvm/%.elf: tests/kvm/%.c tests/kvm/entry.S tests/kvm/guest.h tests/kvm/guest.ld
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) -o $@ tests/kvm/entry.S $<

kvm-guests: $(KVM_GUESTS)

# Host-side helpers of the lab tests (static: they run inside the lab's L1).
LAB_TOOLS := $(BUILD)/lab-tools/uds-tool $(BUILD)/lab-tools/tcp-tool $(BUILD)/lab-tools/snapcmp \
	$(BUILD)/lab-tools/uffd-handler $(BUILD)/lab-tools/mig-proxy $(BUILD)/lab-tools/garp-watch \
	$(BUILD)/lab-tools/mig-certs $(BUILD)/lab-tools/mktap $(BUILD)/lab-tools/reclog
# snapcmp decodes state files with visor's own code
$(BUILD)/lab-tools/snapcmp: tests/lab/snapcmp.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(STATIC_LDFLAGS) -o $@ $< $(LIB_OBJS) $(LDLIBS)
$(BUILD)/lab-tools/%: tests/lab/%.c tests/guest/stream.h
	@mkdir -p $(dir $@)
	$(CC) -std=c17 -D_GNU_SOURCE -O2 -static $(WARN) -o $@ $<
$(BUILD)/lab-tools/tcp-tool: tests/guest/tcp-tool.c tests/guest/stream.h
	@mkdir -p $(dir $@)
	$(CC) -std=c17 -D_GNU_SOURCE -O2 -static $(WARN) -o $@ $<
# the guest's record writer, on the host side to check disk images
$(BUILD)/lab-tools/reclog: tests/guest/reclog.c tests/guest/stream.h
	@mkdir -p $(dir $@)
	$(CC) -std=c17 -D_GNU_SOURCE -O2 -static $(WARN) -o $@ $<
# test certificates for the TLS migration tests (OpenSSL's API; the wrap
# stubs come from visor's transport object, as for visor itself)
$(BUILD)/lab-tools/mig-certs: tests/lab/mig-certs.c tests/certgen.h $(BUILD)/obj/src/migration/transport.o
	@mkdir -p $(dir $@)
	$(CC) -std=c17 -D_GNU_SOURCE -O2 $(STATIC_LDFLAGS) $(WARN) -o $@ $< \
		$(BUILD)/obj/src/migration/transport.o $(BUILD)/obj/src/util/str.o $(LDLIBS)
# the test page-fault handler of the Uffd memory backend (kvm and api-lab suites)
$(BUILD)/lab-tools/uffd-handler: tests/uffd-handler/uffd_handler.c
	@mkdir -p $(dir $@)
	$(CC) -std=c17 -D_GNU_SOURCE -O2 -static $(WARN) -o $@ $< -ljson-c
lab-tools: $(LAB_TOOLS)

# libFuzzer targets (clang): tests/fuzz/fuzz_*.c against the library sources,
# compiled once into $(BUILD)/fuzzobj with the same instrumentation.
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/fuzz/%)
FUZZ_OBJS := $(LIB_SRCS:%.c=$(BUILD)/fuzzobj/%.o)
FUZZ_TIME ?= 20
FUZZ_LONG_TIME ?= 600
# tests/fuzz/coverage.ignore: functions left without coverage feedback
FUZZ_CFLAGS := -std=c17 -D_GNU_SOURCE -DVISOR_VERSION='"fuzz"' -g -O1 \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -MMD -MP \
	-fsanitize-coverage-ignorelist=tests/fuzz/coverage.ignore
$(BUILD)/fuzzobj/%.o: %.c tests/fuzz/coverage.ignore
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -c -o $@ $<
$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_OBJS) tests/fuzz/coverage.ignore
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_OBJS) $(LDLIBS)

fuzz-bins: $(FUZZ_BINS)

fuzz: $(FUZZ_BINS)
	tests/run-fuzz $(FUZZ_TIME) \
		$(if $(FUZZ_TARGETS),$(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%),$(FUZZ_BINS))

# A longer campaign: FUZZ_LONG_TIME seconds per target (FUZZ_TARGETS="virtio_blk
# pci" for some; FUZZ_RUNS=N: also stop a target after N executions), corpora
# kept in $(BUILD)/fuzz-corpus/NAME across runs.
fuzz-long: $(FUZZ_BINS)
	FUZZ_RUNS=$(FUZZ_RUNS) tests/run-fuzz --keep $(BUILD)/fuzz-corpus $(FUZZ_LONG_TIME) \
		$(if $(FUZZ_TARGETS),$(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%),$(FUZZ_BINS))

# Seeds from a campaign: add to tests/fuzz/corpus-NAME the kept inputs that
# reach what the seeds do not (commit them; the kept corpora are per machine).
fuzz-merge: $(FUZZ_BINS)
	tests/run-fuzz --merge $(BUILD)/fuzz-corpus \
		$(if $(FUZZ_TARGETS),$(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%),$(FUZZ_BINS))

test: all $(UNIT_BINS) $(SAN_BINS) $(KVM_GUESTS) $(FUZZ_BINS) $(LAB_TOOLS)
	tests/run-all

stress: all
	tests/stress/run $(STRESS_ARGS)

# build-learn/visor: filters log instead of killing, and the ioctl requests
# a thread's filters would refuse are written to $$VISOR_SECCOMP_LEARN_FILE
# (docs/security.md, "How the lists were checked")
learn:
	$(MAKE) BUILD=build-learn CFLAGS="$(CFLAGS) -DVISOR_SECCOMP_LEARN" \
		LDFLAGS="$(LDFLAGS) -Wl,--wrap=ioctl" build-learn/visor

run: all
	tools/run-default $(ARGS)

guest:
	tools/mkguest

guest-generic:
	tools/mkguest --generic

deps:
	tools/install-deps


clean:
	rm -rf $(BUILD)

-include $(OBJS:.o=.d) $(SAN_OBJS:.o=.d) $(UNIT_BINS:=.d) $(SAN_BINS:=.d) $(FUZZ_OBJS:.o=.d) \
	$(FUZZ_BINS:=.d)

# keep objects of pattern-rule chains (sanitizer objects) between runs
.SECONDARY:
