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
# every seccomp event reaches the kernel log (reported at the end)
echo 0 >/proc/sys/kernel/printk_ratelimit 2>/dev/null
echo "lab: L1 $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPU(s), $(ls -l /dev/kvm 2>&1)"
status=0
# seccomp_events: a visor thread killed (or logged) by its seccomp filter
# since the last report: which thread, which call, which action
seen=0
seccomp_events() {
	ev=$(dmesg 2>/dev/null | grep 'type=1326')
	n=$(printf '%s' "$ev" | grep -c .)
	[ "$n" -gt "$seen" ] || return 0
	echo "lab: seccomp events (count, thread, system call number, action):"
	printf '%s\n' "$ev" | tail -n $((n - seen)) |
		sed -E 's/.*comm="([^"]*)".*syscall=([0-9]+).*code=(0x[0-9a-f]+).*/\1 \2 \3/' |
		sort | uniq -c | sed 's/^/lab:   /'
	seen=$n
}
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
	seccomp_events
	echo "=== END $s rc=$rc ($(($(cut -d. -f1 /proc/uptime) - start)) s)"
	[ $rc = 0 ] || status=1
done
exit $status
