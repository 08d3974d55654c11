# shellcheck shell=sh
# Shared helpers for the benchmark scripts bench/* (POSIX sh; source it after
# tools/lib.sh, which provides note and die).
#
#   bench_ldd_paths BIN         print the absolute paths of the shared libraries
#                               `ldd BIN` lists, the dynamic loader included
#   bench_stage_firmware DIR    symlink QEMU's firmware (SeaBIOS and its option
#                               ROMs for q35, qboot for microvm) into DIR, for
#                               `qemu-system-x86_64 -L DIR`
#   bench_stage_qemu DIR        QEMU for the lab's L1, which has no libraries:
#                               DIR/qemu-system-x86_64, DIR/ld.so (the dynamic
#                               loader) and DIR/lib/ (every library ldd lists).
#                               Run it as
#                               DIR/ld.so --library-path DIR/lib DIR/qemu-system-x86_64 ...
#   bench_lab LOG MODE ARGS...  tools/lab --batch ARGS..., its output written
#                               (MODE new) or appended (MODE append) to LOG;
#                               a session in which L1 stalled (tools/lab exit
#                               126) is run again, up to twice, and only the
#                               complete session's output goes to LOG.
#                               Returns tools/lab's exit status.

bench_ldd_paths() {
	ldd "$1" | grep -o '/[^ ]*'
}

bench_stage_firmware() {
	_fwdir=$1
	mkdir -p "$_fwdir"
	for _f in bios-256k.bin kvmvapic.bin linuxboot_dma.bin linuxboot.bin pvh.bin \
		multiboot_dma.bin qboot.rom; do
		_p=""
		for _d in /usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu; do
			[ -e "$_d/$_f" ] && { _p=$(readlink -f "$_d/$_f"); break; }
		done
		[ -n "$_p" ] || { note "warning: firmware $_f not found"; continue; }
		ln -s "$_p" "$_fwdir/$_f"
	done
	[ -e "$_fwdir/qboot.rom" ] && ln -s qboot.rom "$_fwdir/bios-microvm.bin"
	return 0
}

bench_stage_qemu() {
	_qdir=$1
	_q=$(command -v qemu-system-x86_64) || die "qemu-system-x86_64 missing (tools/install-deps)"
	mkdir -p "$_qdir/lib"
	ln -s "$(readlink -f "$_q")" "$_qdir/qemu-system-x86_64"
	_ldso=""
	for _lib in $(bench_ldd_paths "$_q"); do
		case "$_lib" in
		*/ld-linux*) _ldso=$_lib ;;
		*) ln -sf "$(readlink -f "$_lib")" "$_qdir/lib/${_lib##*/}" ;;
		esac
	done
	[ -n "$_ldso" ] || die "no dynamic loader in ldd $_q"
	ln -s "$(readlink -f "$_ldso")" "$_qdir/ld.so"
}

bench_lab() {
	_log=$1 _mode=$2
	shift 2
	_tmp="$_log.session"
	_try=0
	while :; do
		_try=$((_try + 1))
		_rc=0
		"$VISOR_ROOT/tools/lab" --batch "$@" >"$_tmp" 2>&1 || _rc=$?
		[ "$_rc" = 126 ] && [ "$_try" -le 2 ] || break
		note "the lab stalled (session $_try); running the session again"
		echo "lab: session $_try stalled; run again" >>"$_log.stalls"
	done
	if [ "$_mode" = append ]; then cat "$_tmp" >>"$_log"; else cat "$_tmp" >"$_log"; fi
	rm -f "$_tmp"
	return "$_rc"
}
