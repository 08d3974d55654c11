# shellcheck shell=sh
# Shared shell helpers for tools/* and tests/* (POSIX sh; source it, do not run it).
#
#   . "$(dirname "$0")/lib.sh"        (from tools/)
#
# Provides:
#   VISOR_ROOT, VISOR_BUILD, VISOR_CACHE   repo root, build dir, download cache
#   have_hw_kvm        true when /dev/kvm is usable AND the CPU has VT-x/AMD-V
#                      (override: VISOR_LAB=force -> false, VISOR_LAB=never -> true)
#   have_any_kvm       true when /dev/kvm can be opened at all (PVM counts)
#   kernel_fetch [META]  download + unpack a Debian kernel (default: the cloud
#                      kernel; META=linux-image-amd64: the generic one); sets
#                      KROOT, KVER, KDEB
#   mod_load_order R V NAME...   print .ko paths (under R) in insmod order
#   busybox_tree DIR   install static busybox + applet links into DIR/bin
#   stamp_of FILE...   print a hash of the given files' contents (for caching)

VISOR_ROOT=${VISOR_ROOT:-$(CDPATH="" cd -- "$(dirname -- "$0")/.." 2>/dev/null && pwd)}
# Scripts living deeper than one level (tests/lab/*) set VISOR_ROOT themselves.
VISOR_BUILD=${VISOR_BUILD:-$VISOR_ROOT/build}
VISOR_CACHE=${VISOR_CACHE:-$VISOR_BUILD/cache}

die() { echo "${0##*/}: error: $*" >&2; exit 1; }
note() { echo "${0##*/}: $*" >&2; }

# /dev/kvm exists and can be opened read-write.
have_any_kvm() {
	[ -c /dev/kvm ] || return 1
	( exec 3<>/dev/kvm ) 2>/dev/null
}

# Hardware-assisted KVM: /dev/kvm usable and the CPU advertises vmx or svm
# (a PVM host's /dev/kvm has neither flag and cannot boot a Linux guest).
have_hw_kvm() {
	case "${VISOR_LAB:-auto}" in
	force) return 1 ;;
	never) return 0 ;;
	esac
	have_any_kvm || return 1
	grep -qw -E 'vmx|svm' /proc/cpuinfo 2>/dev/null
}

# kernel_fetch [META]: download (once) and unpack the kernel package that the
# Debian meta package META points to (default $VISOR_KERNEL_META, else
# linux-image-cloud-amd64, the default guest's kernel).  Each meta package
# has a cache directory of its own (kernel/ for the cloud kernel,
# kernel-amd64/ for linux-image-amd64, ...), so fetching one never drops
# another.  Sets KROOT (unpacked package root), KVER (module dir name) and
# KDEB (the package file).
kernel_fetch() {
	_meta=${1:-${VISOR_KERNEL_META:-linux-image-cloud-amd64}}
	case "$_meta" in
	linux-image-cloud-amd64) _kc="$VISOR_CACHE/kernel" ;;
	*) _kc="$VISOR_CACHE/kernel-${_meta#linux-image-}" ;;
	esac
	mkdir -p "$_kc"
	_pkg=$(apt-cache depends "$_meta" 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n 1)
	if [ -z "$_pkg" ] && ! ls "$_kc"/linux-image-*.deb >/dev/null 2>&1; then
		note "package lists lack $_meta; running apt-get update"
		if [ "$(id -u)" = 0 ]; then apt-get update -qq >&2; else sudo apt-get update -qq >&2; fi
		_pkg=$(apt-cache depends "$_meta" 2>/dev/null |
			sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n 1)
	fi
	if [ -z "$_pkg" ]; then
		# Offline: fall back to whatever kernel is already cached.
		# (|| true: with no match ls fails, and callers may run with pipefail)
		_deb=$(ls "$_kc"/linux-image-*.deb 2>/dev/null | sort -V | tail -n 1) || true
		[ -n "$_deb" ] || die "cannot resolve $_meta (apt-cache depends) and nothing cached"
		note "cannot resolve $_meta; using cached $(basename "$_deb")"
	else
		_ver=$(apt-cache policy "$_pkg" 2>/dev/null | sed -n 's/^ *Candidate: //p' | head -n 1)
		_deb=""
		[ -n "$_ver" ] && [ "$_ver" != "(none)" ] &&
			_deb="$_kc/${_pkg}_$(echo "$_ver" | sed 's/:/%3a/')_amd64.deb"
		if [ -z "$_deb" ] || [ ! -s "$_deb" ]; then
			_old=$(ls "$_kc/${_pkg}"_*.deb 2>/dev/null | sort -V | tail -n 1) || true
			note "downloading $_pkg ${_ver:-} (27 MB for the cloud kernel, 70 MB for the generic one)"
			if (cd "$_kc" && apt-get download "$_pkg" >&2 2>"$_kc/download.log"); then
				_deb=$(ls "$_kc/${_pkg}"_*.deb | sort -V | tail -n 1)
				# Drop older kernels of this meta package (about 100 MB,
				# 400 MB for the generic one, unpacked).
				for _o in "$_kc"/linux-image-*.deb; do
					[ "$_o" = "$_deb" ] && continue
					rm -rf "$_o" "${_o%.deb}"
				done
			elif [ -n "$_old" ]; then
				note "download failed (see $_kc/download.log); using cached $(basename "$_old")"
				_deb=$_old
			else
				cat "$_kc/download.log" >&2
				die "apt-get download $_pkg failed"
			fi
		fi
	fi
	_name=$(basename "$_deb" .deb)
	KROOT="$_kc/$_name"
	if [ ! -f "$KROOT/.unpacked" ]; then
		rm -rf "$KROOT"
		mkdir -p "$KROOT"
		dpkg-deb -x "$_deb" "$KROOT" || die "dpkg-deb -x $_deb failed"
		_kv=$(ls "$KROOT/lib/modules" | head -n 1)
		# The package ships no modules.dep (made at install time): make it.
		depmod -b "$KROOT" "$_kv" 2>/dev/null || /sbin/depmod -b "$KROOT" "$_kv" ||
			die "depmod failed (is kmod installed?)"
		: >"$KROOT/.unpacked"
	fi
	KVER=$(ls "$KROOT/lib/modules" | head -n 1)
	[ -n "$KVER" ] && [ -f "$KROOT/boot/vmlinuz-$KVER" ] || die "bad kernel package in $KROOT"
	KDEB=$_deb
}

# mod_load_order ROOT KVER NAME... : the .ko files (absolute paths) needed to
# load the named modules, dependencies first, each once.  Built-in or absent
# modules are skipped silently.
mod_load_order() {
	_r=$1 _v=$2
	shift 2
	for _m in "$@"; do
		modprobe -d "$_r" -S "$_v" --show-depends "$_m" 2>/dev/null ||
			/sbin/modprobe -d "$_r" -S "$_v" --show-depends "$_m" 2>/dev/null
	done | sed -n 's/^insmod \([^ ]*\.ko\).*$/\1/p' | awk '!seen[$0]++'
}

# busybox_tree DIR: DIR/bin/busybox (must be static) plus one link per applet.
busybox_tree() {
	_bb=${BUSYBOX:-/bin/busybox}
	[ -x "$_bb" ] || die "$_bb missing (apt-get install busybox-static)"
	if LC_ALL=C readelf -l "$_bb" 2>/dev/null | grep -q 'program interpreter'; then
		die "$_bb is dynamically linked; install busybox-static"
	fi
	mkdir -p "$1/bin" "$1/sbin" "$1/usr/bin" "$1/usr/sbin"
	cp "$_bb" "$1/bin/busybox"
	for _a in $("$_bb" --list-full); do
		[ -e "$1/$_a" ] || ln -s /bin/busybox "$1/$_a"
	done
}

# Hash of the contents of the given files (missing files hash as "-").
stamp_of() {
	for _f in "$@"; do
		if [ -f "$_f" ]; then sha256sum <"$_f"; else echo "- $_f"; fi
	done | sha256sum | cut -c1-32
}

# sh_quote ARG...: print the arguments single-quoted for a POSIX shell.
sh_quote() {
	for _a in "$@"; do
		printf "'%s' " "$(printf '%s' "$_a" | sed "s/'/'\\\\''/g")"
	done
}
