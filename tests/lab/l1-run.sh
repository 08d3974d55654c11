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
# since the last report: which thread, which call, which action.  The
# events after the last one reported, by their audit serial number (a
# count of lines would miss them once the kernel's ring buffer wraps: the
# guests' boots fill it)
last=0
# every event as it comes (the ring buffer may drop lines before a report)
kmsg=/tmp/l1-seccomp-events
: >"$kmsg"
cat /proc/kmsg >>"$kmsg" 2>/dev/null &
# a learn build (make learn) writes here the ioctl requests a thread's
# filters would refuse (the kernel's log names only the system call), and
# the requests each thread kind made
export VISOR_SECCOMP_LEARN_FILE=/tmp/l1-seccomp-learn
: >"$VISOR_SECCOMP_LEARN_FILE"
learned=0
seccomp_events() {
	sleep 1 # the reader's last lines
	n=$(grep -c '' "$VISOR_SECCOMP_LEARN_FILE")
	if [ "$n" -gt "$learned" ]; then
		new=$(tail -n +$((learned + 1)) "$VISOR_SECCOMP_LEARN_FILE")
		echo "lab: seccomp-learn: ioctl requests a filter would refuse (count, kind, thread, request):"
		printf '%s\n' "$new" | sed -n 's/^seccomp-learn: //p' | sort | uniq -c | sed 's/^/lab:   /'
		echo "lab: seccomp-learn: ioctl requests made (processes, filters, request):"
		printf '%s\n' "$new" | sed -n 's/^seccomp-used: //p' | sort | uniq -c | sed 's/^/lab:   /'
		learned=$n
	fi
	ev=$({ dmesg 2>/dev/null; cat "$kmsg"; } | grep 'type=1326' |
		sed -nE 's/.*audit\([0-9.]+:([0-9]+)\).*comm="([^"]*)".*syscall=([0-9]+).*code=(0x[0-9a-f]+).*/\1 \2 \3 \4/p' |
		sort -u | awk -v l="$last" '$1 > l')
	[ -n "$ev" ] || return 0
	echo "lab: seccomp events (count, thread, system call number, action):"
	printf '%s\n' "$ev" | cut -d' ' -f2- | sort | uniq -c | sed 's/^/lab:   /'
	last=$(printf '%s\n' "$ev" | awk '$1 > m {m = $1} END {print m}')
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
