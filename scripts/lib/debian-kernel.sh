# shellcheck shell=bash
# The DK_* variables set here are read by the scripts that source this file.
# shellcheck disable=SC2034
# Shared helpers for scripts/amdv-box and scripts/guest-linux (sourced, not run).
#
# They prepare, once, everything both scripts boot: Debian's stock kernel
# (downloaded with `apt-get download`, unpacked with `dpkg-deb`, never installed
# on the host), the kernel modules the scripts ask for (with their dependencies
# resolved from the package's own modules.dep), and cpio initramfs archives.
# Everything goes into the repository's git-ignored .cache/ directory, keyed by
# the kernel package's name and version, so a second run reuses it and a new
# Debian kernel is downloaded once.
#
# The caller sets PROG (used in messages) before sourcing this file.

: "${PROG:=domus}"

DK_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DK_REPO_ROOT=$(cd "$DK_LIB_DIR/../.." && pwd)
# The cache lives in the repository that holds these scripts; AMDV_BOX_CACHE
# (or DOMUS_CACHE_DIR) moves it elsewhere.
DK_CACHE=${DOMUS_CACHE_DIR:-${AMDV_BOX_CACHE:-$DK_REPO_ROOT/.cache}}
# Which Debian metapackage names "the current kernel".
DK_META=${DOMUS_KERNEL_META:-linux-image-amd64}

# Every module either script loads. The kernel cache keeps these and their
# dependencies; asking for one that is not there unpacks the cached .deb again.
DK_ALL_MODULES=(
  virtio_pci virtio_console 9pnet_virtio 9p kvm-amd overlay
  xen-blkfront xen-netfront xenfs xen-evtchn xen-gntdev
)

dk_say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
dk_verbose() { if [[ ${VERBOSE:-0} == 1 ]]; then dk_say "$@"; fi; }

# dk_die STEP MESSAGE... [exit code from DK_DIE_CODE, default 125]
dk_die() {
  local step=$1; shift
  printf '%s: error in step "%s": %s\n' "$PROG" "$step" "$*" >&2
  exit "${DK_DIE_CODE:-125}"
}

dk_now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
# dk_elapsed START → seconds since START with one decimal
dk_elapsed() { awk -v s="$1" -v e="$(dk_now)" 'BEGIN { printf "%.1f", e - s }'; }

# --- Debian packages ------------------------------------------------------------

DK_APT_UPDATED=0
dk_apt_update_once() {
  [[ $DK_APT_UPDATED == 1 ]] && return 0
  DK_APT_UPDATED=1
  dk_say "running apt-get update (package lists are missing or stale)"
  local out
  if ! out=$(timeout 600 apt-get update -q 2>&1); then
    dk_say "apt-get update failed:"
    printf '%s\n' "$out" | tail -n 5 >&2
    return 1
  fi
}

# dk_need_cmds STEP PKG:CMD... — installs PKG when CMD is not on PATH (nor in
# /sbin, /usr/sbin). Never touches packages whose commands are present.
dk_need_cmds() {
  local step=$1; shift
  local spec pkg cmd missing=()
  for spec in "$@"; do
    pkg=${spec%%:*}; cmd=${spec#*:}
    if ! PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null 2>&1; then
      missing+=("$pkg")
    fi
  done
  ((${#missing[@]} == 0)) && return 0
  # The same package can be listed for several commands.
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  dk_install_pkgs "$step" "${missing[@]}"
}

# dk_install_pkgs STEP PKG... — apt-get install -y, quietly, saying so.
dk_install_pkgs() {
  local step=$1; shift
  local missing=("$@")
  command -v apt-get >/dev/null 2>&1 ||
    dk_die "$step" "missing packages ${missing[*]} and no apt-get to install them"
  if [[ $(id -u) != 0 ]]; then
    dk_die "$step" "missing packages ${missing[*]}; install them as root: apt-get install ${missing[*]}"
  fi
  dk_say "installing missing Debian packages: ${missing[*]} (apt-get install -y)"
  local t0 out; t0=$(dk_now)
  if ! out=$(DEBIAN_FRONTEND=noninteractive timeout 1800 apt-get install -y -q --no-install-recommends "${missing[@]}" 2>&1); then
    if dk_apt_update_once &&
      out=$(DEBIAN_FRONTEND=noninteractive timeout 1800 apt-get install -y -q --no-install-recommends "${missing[@]}" 2>&1); then
      :
    else
      printf '%s\n' "$out" | tail -n 5 >&2
      dk_die "$step" "could not install ${missing[*]} (apt-get install failed)"
    fi
  fi
  dk_say "installed ${missing[*]} in $(dk_elapsed "$t0") s"
}

# dk_apt_candidate PKG → prints "VERSION" of the candidate, fails if unknown.
dk_apt_candidate() {
  local v
  v=$(apt-cache policy "$1" 2>/dev/null | awk '/^ *Candidate:/ && !v { v = $2 } END { print v }') || v=""
  [[ -n $v && $v != "(none)" ]] || return 1
  printf '%s\n' "$v"
}

# dk_apt_download STEP DIR PKG[=VERSION]... — downloads .debs into DIR, running
# apt-get update once if apt does not know a package or the mirror lost it.
dk_apt_download() {
  local step=$1 dir=$2; shift 2
  local out
  mkdir -p "$dir"
  # apt-get download runs unsandboxed as root when _apt cannot write to DIR;
  # that warning is noise here.
  if ! out=$(cd "$dir" && timeout 900 apt-get download -q "$@" 2>&1); then
    if dk_apt_update_once && out=$(cd "$dir" && timeout 900 apt-get download -q "$@" 2>&1); then
      :
    else
      printf '%s\n' "$out" | grep -v 'unsandboxed' | tail -n 5 >&2
      dk_die "$step" "apt-get download $* failed"
    fi
  fi
}

# --- the kernel -------------------------------------------------------------------

# A fingerprint of apt's package lists and sources.
dk_apt_fingerprint() {
  {
    echo "$DK_META"
    stat -c '%n %Y %s' /var/lib/apt/lists/* /etc/apt/sources.list /etc/apt/sources.list.d/* \
      /etc/apt/preferences /etc/apt/preferences.d/* 2>/dev/null || true
  } | sha256sum | cut -c1-16
}

# dk_kernel_resolve → sets DK_KPKG and DK_KVER_PKG (package name and version of
# the kernel that DK_META currently points to).
dk_kernel_resolve() {
  local dep=""
  # apt-cache takes ~0.5 s here (no binary package cache), so the answer is
  # kept until apt's package lists or sources change.
  local fp memo=$DK_CACHE/kernel/resolved
  fp=$(dk_apt_fingerprint)
  if [[ -f $memo ]]; then
    local mfp mpkg mver
    read -r mfp mpkg mver <"$memo" || true
    if [[ $mfp == "$fp" && -n $mpkg && -n $mver ]]; then
      DK_KPKG=$mpkg DK_KVER_PKG=$mver
      return 0
    fi
  fi
  if ! command -v apt-cache >/dev/null 2>&1; then
    dk_kernel_resolve_cached "no apt-cache on this machine"; return
  fi
  local try
  for try in 1 2; do
    dep=$(apt-cache show --no-all-versions "$DK_META" 2>/dev/null |
      awk '/^Depends: / && !d { sub(/^Depends: /, ""); print; d = 1 }') || dep=""
    [[ -n $dep ]] && break
    [[ $try == 1 ]] && { dk_apt_update_once || break; }
  done
  if [[ -z $dep ]]; then
    dk_kernel_resolve_cached "apt does not know $DK_META"; return
  fi
  # "linux-image-6.1.0-56-amd64 (= 6.1.192-2)"
  DK_KPKG=${dep%%[ ,|]*}
  DK_KVER_PKG=$(sed -n 's/.*(= *\([^)]*\)).*/\1/p' <<<"$dep")
  if [[ -z $DK_KVER_PKG ]]; then
    if ! DK_KVER_PKG=$(dk_apt_candidate "$DK_KPKG"); then
      dk_kernel_resolve_cached "apt has no candidate version for $DK_KPKG"
      return
    fi
  fi
  # apt-get update (above) changes the lists: fingerprint them again.
  if [[ $DK_APT_UPDATED == 1 ]]; then
    fp=$(dk_apt_fingerprint)
  fi
  mkdir -p "$DK_CACHE/kernel" && printf '%s %s %s\n' "$fp" "$DK_KPKG" "$DK_KVER_PKG" >"$memo"
}

# Offline fallback: the newest kernel already in the cache.
dk_kernel_resolve_cached() {
  local d newest=""
  for d in "$DK_CACHE"/kernel/linux-image-*; do
    [[ -f $d/ready ]] && newest=$d
  done
  [[ -n $newest ]] || dk_die "kernel: resolve" "$1, and no kernel is cached yet"
  dk_say "warning: $1; using the cached $(basename "$newest")"
  local b; b=$(basename "$newest")
  DK_KPKG=${b%%_*}; DK_KVER_PKG=${b#*_}
}

# dk_kernel_prepare MODULE... → ensures the cache holds the kernel and these
# modules' closures. Sets:
#   DK_KDIR     the cache directory of this kernel
#   DK_KVER     its uname -r
#   DK_BZIMAGE  the stock bzImage (vmlinuz)
#   DK_VMLINUX  the same kernel, decompressed (ELF with a PVH entry), or ""
#   DK_MODDIR   lib/modules/$DK_KVER (pruned copy, with the full modules.dep)
dk_kernel_prepare() {
  dk_kernel_resolve
  DK_KDIR=$DK_CACHE/kernel/${DK_KPKG}_${DK_KVER_PKG}
  mkdir -p "$DK_CACHE/kernel" || dk_die "cache" "cannot create $DK_CACHE/kernel"
  local lock
  exec {lock}>"$DK_CACHE/kernel/.lock"
  flock -w 900 "$lock" || dk_die "cache" "another run held $DK_CACHE/kernel/.lock for 15 minutes"

  if [[ ! -f $DK_KDIR/ready ]]; then
    rm -rf "$DK_KDIR"
    mkdir -p "$DK_KDIR.tmp"
    dk_say "downloading $DK_KPKG $DK_KVER_PKG with apt-get download (not installed on the host)"
    local t0; t0=$(dk_now)
    rm -f "$DK_KDIR.tmp"/*.deb
    dk_apt_download "kernel: download" "$DK_KDIR.tmp" "$DK_KPKG=$DK_KVER_PKG"
    local debs=("$DK_KDIR.tmp"/*.deb) deb
    deb=${debs[0]}
    [[ -f $deb ]] || dk_die "kernel: download" "apt-get download left no .deb in $DK_KDIR.tmp"
    mv "$deb" "$DK_KDIR.tmp/kernel.deb"
    local size; size=$(du -m "$DK_KDIR.tmp/kernel.deb" | cut -f1)
    dk_say "downloaded $DK_KPKG ($size MiB) in $(dk_elapsed "$t0") s"
    printf 'downloaded %s %s (%s MiB) in %s s on %s\n' "$DK_KPKG" "$DK_KVER_PKG" "$size" \
      "$(dk_elapsed "$t0")" "$(date -u +%FT%TZ)" >"$DK_KDIR.tmp/download.txt"
    mv "$DK_KDIR.tmp" "$DK_KDIR"
    dk_kernel_unpack "${DK_ALL_MODULES[@]}" "$@"
    touch "$DK_KDIR/ready"
  fi
  DK_KVER=$(<"$DK_KDIR/kver")
  DK_MODDIR=$DK_KDIR/modules/$DK_KVER
  DK_BZIMAGE=$DK_KDIR/vmlinuz
  DK_VMLINUX=""
  [[ -s $DK_KDIR/vmlinux ]] && DK_VMLINUX=$DK_KDIR/vmlinux
  # A module that a newer script asks for and the pruned cache lacks.
  local m
  for m in "$@"; do
    if ! dk_module_closure "$m" >/dev/null 2>&1; then
      dk_kernel_unpack "${DK_ALL_MODULES[@]}" "$@"
      break
    fi
  done
  exec {lock}>&-
}

# dk_kernel_unpack MODULE... — unpacks $DK_KDIR/kernel.deb, runs depmod on it,
# keeps the kernel, the modules.* indexes and the closure of MODULE..., and
# decompresses the bzImage's payload for a faster (PVH) boot.
dk_kernel_unpack() {
  local t0; t0=$(dk_now)
  dk_say "unpacking $DK_KPKG (dpkg-deb -x), resolving modules with depmod"
  local x=$DK_KDIR/unpack
  rm -rf "$x" "$DK_KDIR/modules"
  dpkg-deb -x "$DK_KDIR/kernel.deb" "$x" || dk_die "kernel: unpack" "dpkg-deb -x $DK_KDIR/kernel.deb failed"
  local vmlinuzes=("$x"/boot/vmlinuz-*) vmlinuz
  vmlinuz=${vmlinuzes[0]}
  [[ -f $vmlinuz ]] || dk_die "kernel: unpack" "no boot/vmlinuz-* in $DK_KPKG"
  local kver=${vmlinuz##*/vmlinuz-}
  local mroot=""
  for mroot in "$x/lib/modules/$kver" "$x/usr/lib/modules/$kver"; do
    [[ -d $mroot ]] && break
  done
  [[ -d $mroot ]] || dk_die "kernel: unpack" "no lib/modules/$kver in $DK_KPKG"
  local depmod_base=${mroot%/lib/modules/*}
  local depmod; depmod=$(PATH=$PATH:/usr/sbin:/sbin command -v depmod) ||
    dk_die "kernel: depmod" "depmod (package kmod) is missing"
  "$depmod" -b "$depmod_base" "$kver" 2>"$DK_KDIR/depmod.err" ||
    dk_die "kernel: depmod" "depmod -b $depmod_base $kver failed: $(head -c 300 "$DK_KDIR/depmod.err")"
  printf '%s\n' "$kver" >"$DK_KDIR/kver"
  cp "$vmlinuz" "$DK_KDIR/vmlinuz"
  cp "$x/boot/config-$kver" "$DK_KDIR/config" 2>/dev/null || true
  local dst=$DK_KDIR/modules/$kver
  mkdir -p "$dst"
  cp "$mroot"/modules.{dep,order,builtin,alias,softdep} "$dst"/ 2>/dev/null || true
  [[ -s $dst/modules.dep ]] || dk_die "kernel: depmod" "depmod produced no modules.dep"
  # Copy each module's closure (paths are relative to lib/modules/$kver).
  DK_MODDIR=$dst
  local m rel
  for m in "$@"; do
    while read -r rel; do
      [[ -f $dst/$rel ]] && continue
      mkdir -p "$dst/$(dirname "$rel")"
      cp "$mroot/$rel" "$dst/$rel"
    done < <(DK_MODSRC=$mroot dk_module_closure "$m")
  done
  rm -rf "$x"
  # The bzImage's payload is an XZ-compressed ELF vmlinux with a PVH entry
  # note; QEMU boots that directly, which skips ~2.5 s of decompression under
  # TCG. Without xz (or if anything looks off) the bzImage is used instead.
  rm -f "$DK_KDIR/vmlinux"
  if command -v xz >/dev/null 2>&1; then
    local off
    off=$(LC_ALL=C grep -m 1 -obUaP '\xFD7zXZ\x00' "$DK_KDIR/vmlinuz" | LC_ALL=C sed -n '1s/:.*//p') || off=""
    # xz stops reading at the end of the stream, so tail may die of SIGPIPE:
    # only xz's status counts.
    if [[ -n $off ]] &&
      xz -dc --single-stream < <(tail -c +"$((off + 1))" "$DK_KDIR/vmlinuz") >"$DK_KDIR/vmlinux.tmp" 2>/dev/null &&
      [[ $(head -c 4 "$DK_KDIR/vmlinux.tmp" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]]; then
      mv "$DK_KDIR/vmlinux.tmp" "$DK_KDIR/vmlinux"
    else
      rm -f "$DK_KDIR/vmlinux.tmp"
    fi
  fi
  dk_say "kernel $kver ready in $DK_KDIR ($(dk_elapsed "$t0") s)"
}

# dk_module_closure NAME → prints, in load order, the paths (relative to
# lib/modules/$DK_KVER) of NAME's dependencies and then NAME itself, resolved
# from modules.dep. Prints nothing for a module built into the kernel. Fails
# for an unknown module or one whose file is missing (DK_MODSRC, default
# DK_MODDIR, is where files are looked for).
declare -A DK_DEP=() DK_BYNAME=()
DK_DEP_LOADED=""
dk_load_moddep() {
  [[ $DK_DEP_LOADED == "$DK_MODDIR" ]] && return 0
  DK_DEP=(); DK_BYNAME=()
  local line path deps name
  while IFS= read -r line; do
    path=${line%%:*}; deps=${line#*:}
    DK_DEP[$path]=$deps
    name=${path##*/}; name=${name%%.ko*}; name=${name//-/_}
    DK_BYNAME[$name]=$path
  done <"$DK_MODDIR/modules.dep"
  DK_DEP_LOADED=$DK_MODDIR
}
dk_module_closure() {
  local name=${1//-/_}
  dk_load_moddep
  local path=${DK_BYNAME[$name]:-}
  if [[ -z $path ]]; then
    if grep -qE "/${name//_/[-_]}\.ko(\.[a-z]+)?$" "$DK_MODDIR/modules.builtin" 2>/dev/null; then
      return 0 # built in
    fi
    echo "module $1 is not in $DK_KPKG" >&2
    return 1
  fi
  local -A seen=()
  local -a order=()
  _dk_visit() {
    local p=$1 d
    [[ -n ${seen[$p]:-} ]] && return 0
    seen[$p]=1
    for d in ${DK_DEP[$p]}; do _dk_visit "$d" || return 1; done
    [[ -f ${DK_MODSRC:-$DK_MODDIR}/$p ]] || { echo "module file $p is missing" >&2; return 1; }
    order+=("$p")
  }
  _dk_visit "$path" || return 1
  printf '%s\n' "${order[@]}"
}

# dk_modules_install DESTROOT MODULE... — copies the closures of MODULE... into
# DESTROOT/lib/modules/$DK_KVER/ at their usual paths (decompressing .ko.xz,
# .ko.zst, .ko.gz), writes a modules.dep for them there (so busybox modprobe
# works) and their load order, one absolute path per line, to
# DESTROOT/etc/modules.load.
dk_modules_install() {
  local dest=$1; shift
  local m rel out list
  local -A copied=()
  local mdir=$dest/lib/modules/$DK_KVER
  mkdir -p "$mdir" "$dest/etc"
  : >"$dest/etc/modules.load"
  : >"$mdir/modules.dep"
  dk_load_moddep
  for m in "$@"; do
    list=$(dk_module_closure "$m" 2>&1) || dk_die "initramfs: modules" "$list"
    while read -r rel; do
      [[ -z $rel || -n ${copied[$rel]:-} ]] && continue
      copied[$rel]=1
      out=${rel%%.ko*}.ko
      mkdir -p "$mdir/$(dirname "$out")"
      case $rel in
        *.ko) cp "$DK_MODDIR/$rel" "$mdir/$out" ;;
        *.ko.xz) xz -dc "$DK_MODDIR/$rel" >"$mdir/$out" ;;
        *.ko.zst) zstd -qdc "$DK_MODDIR/$rel" >"$mdir/$out" ;;
        *.ko.gz) gzip -dc "$DK_MODDIR/$rel" >"$mdir/$out" ;;
        *) dk_die "initramfs: modules" "unknown module file type $rel" ;;
      esac
      local deps="" d
      for d in ${DK_DEP[$rel]}; do deps+=" ${d%%.ko*}.ko"; done
      printf '%s:%s\n' "$out" "$deps" >>"$mdir/modules.dep"
      printf '/lib/modules/%s/%s\n' "$DK_KVER" "$out" >>"$dest/etc/modules.load"
    done <<<"$list"
  done
}

# dk_static_busybox → prints the path of a statically linked busybox (the
# initramfs has no libc); installs busybox-static when there is none.
dk_is_static() {
  # ld.so --verify: 0 for a dynamically linked executable, 1 for a static one.
  local rc=0
  [[ -x $1 ]] || return 1
  /lib64/ld-linux-x86-64.so.2 --verify "$1" >/dev/null 2>&1 || rc=$?
  [[ $rc == 1 ]]
}
dk_static_busybox() {
  local bb
  for bb in /bin/busybox /usr/bin/busybox "$(command -v busybox 2>/dev/null)"; do
    if [[ -n $bb ]] && dk_is_static "$bb"; then printf '%s\n' "$bb"; return 0; fi
  done
  # A dynamically linked busybox (package busybox) does not count.
  dk_install_pkgs "packages" busybox-static
  for bb in /bin/busybox /usr/bin/busybox; do
    if dk_is_static "$bb"; then printf '%s\n' "$bb"; return 0; fi
  done
  dk_die "packages" "no statically linked busybox after installing busybox-static"
}

# dk_busybox_install DESTROOT — the static busybox and links for its applets.
dk_busybox_install() {
  local dest=$1 bb a
  bb=$(dk_static_busybox) || exit
  mkdir -p "$dest/bin" "$dest/proc" "$dest/sys" "$dest/dev" "$dest/tmp" "$dest/run" "$dest/etc"
  cp "$bb" "$dest/bin/busybox"
  for a in $("$dest/bin/busybox" --list); do
    [[ $a == busybox ]] && continue
    [[ -e $dest/bin/$a ]] || ln -s busybox "$dest/bin/$a"
  done
  ln -s bin "$dest/sbin"
}

# dk_cpio SRCDIR OUT — a newc cpio of SRCDIR (owned by root, stable order).
dk_cpio() {
  local src=$1 out=$2
  (cd "$src" && find . -mindepth 1 | LC_ALL=C sort |
    cpio -o -H newc -R 0:0 --quiet) >"$out.tmp.$$" || dk_die "initramfs: cpio" "cpio failed for $src"
  mv "$out.tmp.$$" "$out"
}

# dk_hash FILE_OR_STRING... → a short content hash (for cache keys).
dk_hash() {
  local a
  for a in "$@"; do
    if [[ -f $a ]]; then cat "$a"; else printf '%s\n' "$a"; fi
  done | sha256sum | cut -c1-16
}

# --- Debian's xenstore-utils, for the guest ---------------------------------------

# The packages that make xenstore-read & co. run (Debian 12 names); libc and
# the loader come from the host, which is the same Debian release.
DK_XEN_PKGS=(xenstore-utils libxenstore4 libxentoolcore1)

# dk_xen_prepare → sets DK_XENROOT, an unpacked tree of DK_XEN_PKGS, cached
# by xenstore-utils' version.
dk_xen_prepare() {
  local ver memo=$DK_CACHE/xen/resolved fp
  fp=$(dk_apt_fingerprint)
  if [[ -f $memo ]] && read -r mfp ver <"$memo" && [[ $mfp == "$fp" && -n $ver ]]; then
    :
  else
    ver=$(dk_apt_candidate xenstore-utils) || { dk_apt_update_once && ver=$(dk_apt_candidate xenstore-utils); } ||
      dk_die "xenstore-utils: resolve" "apt knows no xenstore-utils"
    mkdir -p "$DK_CACHE/xen" && printf '%s %s\n' "$(dk_apt_fingerprint)" "$ver" >"$memo"
  fi
  DK_XENROOT=$DK_CACHE/xen/$ver/root
  [[ -f $DK_CACHE/xen/$ver/ready ]] && return 0
  local t0 p specs=() d=$DK_CACHE/xen/$ver
  t0=$(dk_now)
  for p in "${DK_XEN_PKGS[@]}"; do specs+=("$p=$ver"); done
  dk_say "downloading ${DK_XEN_PKGS[*]} $ver with apt-get download (not installed on the host)"
  rm -rf "$d" && mkdir -p "$d/debs"
  dk_apt_download "xenstore-utils: download" "$d/debs" "${specs[@]}"
  local deb
  for deb in "$d"/debs/*.deb; do
    dpkg-deb -x "$deb" "$d/root" || dk_die "xenstore-utils: unpack" "dpkg-deb -x $deb failed"
  done
  [[ -x $d/root/usr/bin/xenstore ]] || dk_die "xenstore-utils: unpack" "no usr/bin/xenstore in xenstore-utils"
  touch "$d/ready"
  dk_say "xenstore-utils ready in $(dk_elapsed "$t0") s"
}

# dk_xen_install DESTROOT — xenstore and its xenstore-* names in /usr/bin, the
# shared libraries they need (resolved by the host's ld.so, the packages'
# libraries first), and the loader.
dk_xen_install() {
  local dest=$1 ld=/lib64/ld-linux-x86-64.so.2
  local libdir=$DK_XENROOT/usr/lib/x86_64-linux-gnu
  mkdir -p "$dest/usr/bin" "$dest/lib/x86_64-linux-gnu" "$dest/lib64"
  ln -sfn ../lib/x86_64-linux-gnu "$dest/usr/lib" 2>/dev/null || true
  cp "$DK_XENROOT/usr/bin/xenstore" "$dest/usr/bin/xenstore"
  local f
  for f in "$DK_XENROOT"/usr/bin/xenstore-*; do
    # xenstore-control is a symlink to Xen's dom0 wrapper: not for a guest.
    [[ -L $f ]] && continue
    ln -s xenstore "$dest/usr/bin/${f##*/}"
  done
  local out line name path
  out=$(LD_LIBRARY_PATH=$libdir "$ld" --list "$DK_XENROOT/usr/bin/xenstore" 2>&1) ||
    dk_die "xenstore-utils: libraries" "ld.so --list failed: $out"
  while read -r line; do
    case $line in
      *"=> not found"*) dk_die "xenstore-utils: libraries" "${line%% *} not found" ;;
      *"=> "*)
        name=${line%% =>*}; path=${line#*=> }; path=${path% (*}
        cp -L "$path" "$dest/lib/x86_64-linux-gnu/$name" ;;
    esac
  done <<<"$out"
  # glibc loads libgcc_s at run time for pthread_cancel (xenstore-watch uses it).
  [[ -e /lib/x86_64-linux-gnu/libgcc_s.so.1 ]] && cp -L /lib/x86_64-linux-gnu/libgcc_s.so.1 "$dest/lib/x86_64-linux-gnu/"
  cp -L "$ld" "$dest/lib64/ld-linux-x86-64.so.2"
}
