# Shared helpers of the Linux-guest test scripts (tests/lab/*-tests.sh),
# sourced with the suite's DIR argument in $1: sets VISOR, BZ, ELF, INITRD
# (checked here), TMO, BASE and creates the scratch directory $T.
#   ok NAME [NOTE] / bad NAME REASON    count and print PASS/FAIL lines
#   finish                              print "lab: N passed, N failed" and exit
#   run NAME SECS ARGS...               run visor, console in $T/NAME.out, stderr in $T/NAME.err, rc
#   show NAME                           tail of a failed run
#   marker NAME / value NAME KEY        boot-time marker / KEY=number printed by the guest
#   expect_boot NAME RC / expect_result NAME TEST
DIR=${1:-.}
VISOR="$DIR/visor"
G="$DIR/guest"
[ -f "$G/vmlinuz" ] || G="$DIR"
BZ="$G/vmlinuz"
ELF="$G/vmlinux"
INITRD="$G/initrd.cpio.gz"
TMO=${GUEST_TESTS_TIMEOUT:-300}
BASE="console=ttyS0 reboot=k panic=1 quiet"

# RESTORED=1: every VM a test boots is snapshotted at the guest's snap
# point (its devices probed, before its test) and restored in a new process
# that runs the test (tests/lab/restored-run); test names get "restored/".
# Tests start VMs with $VMRUN (word-split on purpose) instead of "$VISOR".
VMRUN=$VISOR
PFX=""
if [ "${RESTORED:-0}" = 1 ]; then
	VMRUN="sh $(dirname "$0")/restored-run $VISOR"
	PFX=restored/
fi

pass=0
fail=0
ok() {
	# restored mode: a VM that booted must have been restored before its test
	if [ -n "$PFX" ] && [ -f "$T/$1.err" ] && ! grep -q '^visor: error:' "$T/$1.err" &&
		! grep -q '^restored-run: snapshot at' "$T/$1.err"; then
		bad "$1" "the test ran on a booted VM, not on a restored one"
		return
	fi
	echo "PASS $PFX$1${2:+ ($2)}"
	pass=$((pass + 1))
}
bad() { echo "FAIL $PFX$1: $2"; fail=$((fail + 1)); }
finish() {
	echo "lab: $pass passed, $fail failed"
	[ "$fail" = 0 ]
	exit
}

for f in "$VISOR" "$BZ" "$ELF" "$INITRD"; do
	if [ ! -f "$f" ]; then
		bad setup "$f is missing"
		finish
	fi
done
[ -x "$VISOR" ] || chmod +x "$VISOR" 2>/dev/null

T=$(mktemp -d "${TMPDIR:-/tmp}/visor-gt.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT INT TERM

# run NAME SECS VISOR-ARGS... : run visor with stdin from /dev/null; sets rc,
# leaves the console in $T/NAME.out and diagnostics in $T/NAME.err.
run() {
	_n=$1 _s=$2
	shift 2
	# shellcheck disable=SC2086 # $VMRUN: see RESTORED above
	TMPDIR=$T timeout "$_s" $VMRUN "$@" </dev/null >"$T/$_n.out" 2>"$T/$_n.err"
	rc=$?
}

# Show the tail of a failed run's output, indented.
show() {
	for _f in "$T/$1.err" "$T/$1.out"; do
		[ -s "$_f" ] || continue
		echo "    --- ${_f##*/} (last 15 lines)"
		tr -d '\r' <"$_f" | tail -n 15 | sed 's/^/    | /'
	done
}

# Boot-time marker value in ms, or empty.
marker() { sed -n 's/^visor: guest boot time: \([0-9][0-9.]*\) ms since visor start.*$/\1/p' "$T/$1.err" | head -n 1; }

# Console value KEY=... printed by a guest test script.
value() { tr -d '\r' <"$T/$1.out" | sed -n "s/^$2=\([0-9][0-9]*\)\$/\1/p" | head -n 1; }

# expect_boot NAME RC: common checks of a guest run; prints FAIL and returns
# 1 on mismatch.
expect_boot() {
	if [ "$rc" != "$2" ]; then
		bad "$1" "exit status $rc, expected $2"
		show "$1"
		return 1
	fi
	if [ -z "$(marker "$1")" ]; then
		bad "$1" "no 'visor: guest boot time' line on stderr"
		show "$1"
		return 1
	fi
	return 0
}

# expect_result NAME TEST: the guest's VISOR-TEST-RESULT line says PASS.
expect_result() {
	if ! tr -d '\r' <"$T/$1.out" | grep -q "^VISOR-TEST-RESULT: $2 PASS"; then
		bad "$1" "guest test $2 did not report PASS"
		show "$1"
		return 1
	fi
	return 0
}

