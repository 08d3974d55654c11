#!/bin/sh
# Runs inside the lab's L1 (started by tests/run-all through tools/lab): the
# test suites that need hardware-style KVM, one after the other.
#
#   tests/lab/l1-run.sh SUITE...      SUITE: kvm | guest | virtio | virtio-restored | api-lab | clone | migrate | jailer
#
# /lab mirrors build/: visor, kvm/*.elf, guest/*, guest-generic/*, plus tests/ (and for
# migrate lab-modules/, the bridge and veth drivers: tests/lab/mig-stage DIR).  Each suite's
# output is framed by "=== BEGIN name" / "=== END name rc=N" for run-all.
cd /lab || exit 1
echo "lab: L1 $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPU(s), $(ls -l /dev/kvm 2>&1)"
status=0
for s in "$@"; do
	echo "=== BEGIN $s"
	start=$(cut -d. -f1 /proc/uptime)
	case "$s" in
	kvm) tests/kvm/run /lab/visor /lab/kvm ;;
	guest) tests/lab/guest-tests.sh /lab ;;
	virtio) tests/lab/virtio-tests.sh /lab ;;
	virtio-restored) RESTORED=1 tests/lab/virtio-tests.sh /lab ;;
	api-lab) tests/lab/api-tests.sh /lab ;;
	clone) tests/lab/clone-tests.sh /lab ;;
	migrate) tests/lab/migrate-tests.sh /lab ;;
	jailer) tests/lab/jailer-tests.sh /lab ;;
	*) echo "l1-run: unknown suite $s"; false ;;
	esac
	rc=$?
	echo "=== END $s rc=$rc ($(($(cut -d. -f1 /proc/uptime) - start)) s)"
	[ $rc = 0 ] || status=1
done
exit $status
