#!/bin/sh
# /tests/stress.sh: the guest side of tests/stress/run (added to the default
# initrd with stress-ng, fio and their libraries).  Driven by the kernel
# command line:
#   stress.kind=mixed|timer|smp|cpudump   the workload (default mixed)
#   stress.time=S                         seconds per stressor (default 4)
#   stress.fio=MIB                        MiB fio writes and verifies (default 32; 0: no fio)
# Prints "STRESS-BEGIN name" / "STRESS-END name rc=N" around each step and
# "STRESS-VERIFY-FAIL name" when a step's own verification failed (stress-ng
# exit status 2, fio with verify errors).  A stress-ng step that could not
# get what it needed (exit status 3: a stressor aborted "out of system
# resources", e.g. an mmap refused for lack of memory at that moment) runs
# once more after "STRESS-RETRY name"; if it fails that way again,
# "STRESS-NORES name".  Exits 0 when every step passed.
kind=mixed t=4 fio_mib=32
for w in $(cat /proc/cmdline); do
	case "$w" in
	stress.kind=*) kind=${w#*=} ;;
	stress.time=*) t=${w#*=} ;;
	stress.fio=*) fio_mib=${w#*=} ;;
	esac
done
export PATH=/usr/bin:/bin:/sbin:/usr/sbin
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up 2>/dev/null
mkdir -p /tmp/st
status=0
echo "STRESS-MEM $(grep -E '^(MemTotal|MemAvailable):' /proc/meminfo | tr -s ' ' | tr '\n' ' ')"

# sng NAME ARGS...: one stress-ng run with verification
sng() {
	name=$1
	shift
	echo "STRESS-BEGIN $name"
	for try in 1 2; do
		stress-ng "$@" --verify --timeout "${t}s" --temp-path /tmp/st --log-brief >/tmp/st/out 2>&1
		rc=$?
		grep -E 'fail|error|verif|abort' /tmp/st/out | head -n 8 | sed "s/^/STRESS-LOG $name: /"
		[ "$rc" = 3 ] && [ "$try" = 1 ] || break
		echo "STRESS-RETRY $name (exit status 3: out of resources; $(grep -E '^(MemFree|MemAvailable):' /proc/meminfo | tr -s ' ' | tr '\n' ' '))"
		sync
		echo 3 >/proc/sys/vm/drop_caches 2>/dev/null
		sleep 1
	done
	echo "STRESS-END $name rc=$rc"
	case $rc in
	0) ;;
	2) echo "STRESS-VERIFY-FAIL $name"; status=1 ;;
	3) echo "STRESS-NORES $name"; status=1 ;;
	*) status=1 ;;
	esac
}

fio_verify() {
	[ "$fio_mib" -gt 0 ] || return 0
	i=0
	while [ ! -b /dev/vda ] && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	echo "STRESS-BEGIN fio"
	if [ ! -b /dev/vda ]; then
		echo "STRESS-END fio rc=1 (no /dev/vda)"
		status=1
		return
	fi
	fio --name=verify --filename=/dev/vda --rw=randwrite --bs=4k --direct=1 \
		--ioengine=libaio --iodepth=16 --size="${fio_mib}M" --verify=crc32c \
		--do_verify=1 --verify_fatal=1 --randrepeat=0 >/tmp/st/fio 2>&1
	rc=$?
	grep -E 'err=|verify|bad|crc' /tmp/st/fio | head -n 8 | sed 's/^/STRESS-LOG fio: /'
	echo "STRESS-END fio rc=$rc"
	if [ "$rc" != 0 ]; then
		grep -q -i verify /tmp/st/fio && echo "STRESS-VERIFY-FAIL fio"
		status=1
	fi
}

case "$kind" in
mixed)
	sng cpu --cpu 2
	sng vm --vm 2 --vm-bytes 64M
	sng memcpy --memcpy 2
	sng fork --fork 2
	sng timer --timer 2
	sng clock --clock 2
	sng mmap --mmap 2 --mmap-bytes 32M
	sng hdd --hdd 2 --hdd-bytes 8M
	sng sock --sock 2
	sng crypt --crypt 2
	fio_verify
	;;
timer)
	sng timer --timer 2
	sng clock --clock 2
	sng hrtimers --hrtimers 2
	sng itimer --itimer 2
	sng nanosleep --nanosleep 2
	sng timerfd --timerfd 2
	sng alarm --alarm 2
	sng timers-all --timer 1 --clock 1 --hrtimers 1 --timerfd 1 --itimer 1
	;;
smp)
	sng smp-mix --cpu 4 --vm 4 --vm-bytes 16M --fork 4 --futex 4 --timer 4 --mmap 4 --mmap-bytes 8M
	sng tlb --tlb-shootdown 4
	sng sock --sock 4
	fio_verify
	;;
cpudump)
	insmod /lib/modules/msr.ko 2>/dev/null
	/bin/cpudump
	status=$?
	dmesg | grep -E -i 'x2apic|apic|tsc|clocksource|kvm-clock|hpet|pit|ioapic|x86/fpu|spectre|retbleed|srso|mtrr|pat|mitigat|kvm|smpboot|timer|nmi' |
		sed 's/^\[[^]]*\] *//; s/^/KERNEL dmesg: /'
	;;
*)
	echo "stress: unknown stress.kind=$kind"
	status=1
	;;
esac
echo "STRESS-TAINT $(cat /proc/sys/kernel/tainted)"
# kernel warnings and errors (the console shows only errors under quiet)
dmesg | grep -E -A4 'WARNING:|BUG:|Oops|soft lockup|rcu: INFO|stall|clocksource.*unstable|Marking clocksource|TSC.*unstable|hrtimer: interrupt took' |
	head -n 60 | sed 's/^/STRESS-DMESG /'
echo "STRESS-CLOCKSOURCE $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null)"
exit "$status"
