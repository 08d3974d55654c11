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
#
# The visor variants the benchmarks know (bench/boot, bench/blk, bench/net
# --vmms; bench/isolation compares them):
#   visor            `visor run ...` (seccomp filters on: the default)
#   visor-noseccomp  the same with --no-seccomp
#   visor-fc         the same VM through Firecracker's command line, no jail:
#                    `visor --id ID --config-file FILE --api-sock SOCK
#                    --enable-pci` (the VMM command visor-jailer runs)
#   visor-jailer     that command run by `visor jailer` in a fresh jail per VM
#                    (BENCH_JAIL_UID:BENCH_JAIL_GID, default 123:100; cgroup
#                    v2 limits that do not bind: pids.max=256, memory.max =
#                    guest memory + 512 MiB; no-file 2048), the files the VM
#                    needs hard-linked into the jail root
#   visor-jailer-nocg  (bench/boot) the same without the cgroup options
#   (bench/boot also knows visor-fc-copy, visor-fc-noproc, visor-jailer-proc
#   and visor-jailer-pipe, variants for bisecting the jail's cost: its --help)
# Inner helpers for them (busybox sh in the lab's L1; the staged directory
# holds a copy of this file as lib.sh):
#   bench_isvisor VMM           true for the four names above
#   bench_jail_init DIR         once per session, as root: DIR (made afresh)
#                               holds the root-owned exec file DIR/bin/visor
#                               (a copy of ./visor), DIR/src (files to be
#                               hard-linked into jails: bench_jail_src) and
#                               the jails (DIR/jails/visor/ID/root); mounts
#                               cgroup2 on /sys/fs/cgroup if none is mounted
#   bench_jail_src FILE NAME    copy FILE to DIR/src/NAME (mode 644) once, so
#                               that jails on DIR's file system can link it
#   bench_jail_new ID SRC:NAME...   a fresh jail root for ID (printed in
#                               BJ_ROOT) with each SRC hard-linked as NAME
#                               (across file systems: copied, and the copy
#                               chowned to the jail's uid:gid)
#   bench_jail_cmd ID MEM_MIB [JAILER-ARGS...]   the jailer command line for
#                               ID in BJ_CMD (word-split it; no blanks in
#                               paths): the VMM reads /vm.json of its jail
#                               and serves the API on /run/firecracker.socket
#                               (BJ_NOCG=1: no cgroup options)
#   bench_jail_done ID          remove ID's jail and cgroup (after the VM)
#   bench_fc_config FILE KERNEL INITRD MEM_MIB CMDLINE [DRIVE [TAP MAC]]
#                               a Firecracker JSON config for that VM (DRIVE
#                               "" for none; the drive's cache_type is
#                               Writeback, as `visor run --disk` has it)

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

# --- the visor variants (inner helpers) -------------------------------------------
bench_isvisor() {
	case "$1" in visor | visor-noseccomp | visor-fc | visor-jailer) return 0 ;; esac
	return 1
}

bench_jail_init() {
	BJ_DIR=$1
	BJ_UID=${BENCH_JAIL_UID:-123} BJ_GID=${BENCH_JAIL_GID:-100}
	BJ_BASE=$BJ_DIR/jails
	rm -rf "$BJ_DIR"
	mkdir -p "$BJ_DIR/bin" "$BJ_DIR/src" "$BJ_BASE"
	chmod 755 "$BJ_DIR" "$BJ_DIR/bin" "$BJ_DIR/src" "$BJ_BASE"
	# the exec file: root's, not writable by others (the jailer checks)
	cp ./visor "$BJ_DIR/bin/visor" && chown 0:0 "$BJ_DIR/bin/visor" && chmod 755 "$BJ_DIR/bin/visor" ||
		{ echo "bench: cannot make the jailer's exec file $BJ_DIR/bin/visor"; return 1; }
	if ! awk '$3 == "cgroup2" { f = 1 } END { exit !f }' /proc/mounts; then
		mkdir -p /sys/fs/cgroup
		mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null ||
			{ echo "bench: cannot mount cgroup2 on /sys/fs/cgroup"; return 1; }
	fi
	BJ_CG=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
	echo "bench: jails in $BJ_BASE ($(stat -f -c %T "$BJ_BASE" 2>/dev/null)), uid:gid $BJ_UID:$BJ_GID, cgroup2 at $BJ_CG"
}

bench_jail_src() {
	[ -e "$BJ_DIR/src/$2" ] && return 0
	cp -L "$1" "$BJ_DIR/src/$2" && chmod 644 "$BJ_DIR/src/$2"
}

bench_jail_new() {
	_id=$1
	shift
	rm -rf "${BJ_BASE:?}/visor/$_id"
	BJ_ROOT=$BJ_BASE/visor/$_id/root
	mkdir -p "$BJ_ROOT"
	for _p in "$@"; do
		# a copy (across file systems) is the jail's user's, so that it can
		# write a disk image
		ln "${_p%%:*}" "$BJ_ROOT/${_p#*:}" 2>/dev/null ||
			{ cp "${_p%%:*}" "$BJ_ROOT/${_p#*:}" && chown "$BJ_UID:$BJ_GID" "$BJ_ROOT/${_p#*:}"; } || return 1
	done
}

bench_jail_cmd() {
	_id=$1 _mem=$2
	shift 2
	BJ_CMD="$BJ_DIR/bin/visor jailer --id $_id --exec-file $BJ_DIR/bin/visor --uid $BJ_UID --gid $BJ_GID"
	BJ_CMD="$BJ_CMD --chroot-base-dir $BJ_BASE"
	[ "${BJ_NOCG:-0}" = 1 ] ||
		BJ_CMD="$BJ_CMD --cgroup-version 2 --cgroup pids.max=256 --cgroup memory.max=$(((_mem + 512) * 1048576))"
	BJ_CMD="$BJ_CMD $*"
	BJ_CMD="$BJ_CMD -- --config-file /vm.json --enable-pci"
}

bench_jail_done() {
	rm -rf "${BJ_BASE:?}/visor/$1"
	_i=0
	while [ -d "$BJ_CG/visor/$1" ] && ! rmdir "$BJ_CG/visor/$1" 2>/dev/null && [ "$_i" -lt 20 ]; do
		sleep 0.1
		_i=$((_i + 1))
	done
}

bench_fc_config() {
	{
		printf '{"boot-source": {"kernel_image_path": "%s", "initrd_path": "%s", "boot_args": "%s"},\n' "$2" "$3" "$5"
		printf ' "machine-config": {"vcpu_count": 1, "mem_size_mib": %s}' "$4"
		if [ -n "${6:-}" ]; then
			printf ',\n "drives": [{"drive_id": "bench", "path_on_host": "%s", "is_root_device": false,' "$6"
			printf ' "is_read_only": false, "cache_type": "Writeback"}]'
		fi
		if [ -n "${7:-}" ]; then
			printf ',\n "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "%s", "guest_mac": "%s"}]' "$7" "$8"
		fi
		printf '}\n'
	} >"$1" && chmod 644 "$1"
}
