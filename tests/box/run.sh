#!/usr/bin/env bash
# tests/box/run.sh — tests of scripts/amdv-box (and scripts/guest-linux).
#
# Exits 0 when every test passes. When QEMU itself cannot run here (not
# installed and not installable, or it fails to start a TCG machine), prints
# SKIP with the reason and exits 0. Any other failure exits 1.
# The last line is "box: N passed, N failed[, N skipped]".
#
# Runtime: ~50 s with a warm cache (each box run costs 3-5 s), plus the
# one-time download and build of the cache (~20 s here).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
BOX=$REPO/scripts/amdv-box
GUEST=$REPO/scripts/guest-linux
WORK=$(mktemp -d "${TMPDIR:-/tmp}/amdv-box-test.XXXXXX")
# Runs of the box under test keep their run directories (and so QEMU's command
# line) under $WORK, which is how leftover QEMU processes are found.
export TMPDIR=$WORK
trap 'rm -rf "$WORK"' EXIT

passed=0 failed=0 skipped=0
t0=$SECONDS
pass() { passed=$((passed + 1)); printf 'PASS %s\n' "$1"; }
fail() { failed=$((failed + 1)); printf 'FAIL %s: %s\n' "$1" "$2"; }
skip() { skipped=$((skipped + 1)); printf 'SKIP %s: %s\n' "$1" "$2"; }
summary() {
  printf 'box: %d passed, %d failed, %d skipped (%d s)\n' "$passed" "$failed" "$skipped" $((SECONDS - t0))
  ((failed == 0))
}
skip_all() {
  printf 'SKIP tests/box: %s\n' "$1"
  printf 'box: 0 passed, 0 failed, 1 skipped\n'
  exit 0
}
# box NAME ARGS... — runs the box with output in $WORK/NAME.{out,err}, sets rc.
# Every box is bounded (a TCG machine has been seen to hang on its way down); a test's
# own --timeout, given later, wins.
box() {
  local name=$1; shift
  rc=0
  "$BOX" --timeout 300 "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" </dev/null || rc=$?
}
show() { sed 's/^/    | /' "$WORK/$1.err" | tail -n 8; }
leftover_qemu() { pgrep -f "qemu-system-x86_64.*$WORK/" || true; }

# --- can QEMU run here at all? --------------------------------------------------------

# Preparing installs the packages (QEMU included) and builds the cache.
if ! "$BOX" --prepare 2>"$WORK/prepare.err"; then
  if grep -q 'step "packages"' "$WORK/prepare.err" && ! command -v qemu-system-x86_64 >/dev/null; then
    skip_all "QEMU is not installed and could not be installed: $(tail -n 1 "$WORK/prepare.err")"
  fi
  cat "$WORK/prepare.err"
  echo "FAIL prepare: scripts/amdv-box --prepare failed"
  printf 'box: 0 passed, 1 failed\n'
  exit 1
fi
probe=$(printf 'quit\n' | timeout 60 qemu-system-x86_64 -M none -accel tcg,thread=multi -display none \
  -nodefaults -no-user-config -monitor stdio 2>&1) || skip_all "QEMU cannot start a TCG machine here: $(tail -n 2 <<<"$probe" | tr '\n' ' ')"

# --- tests ----------------------------------------------------------------------------

# The issue's own check: /dev/kvm is there, and the status comes back.
box kvm -- sh -c 'test -c /dev/kvm && exit 7'
if [[ $rc == 7 ]]; then pass "status passthrough, /dev/kvm inside (exit 7)"; else fail "kvm" "exit $rc, wanted 7"; show kvm; fi

box zero -- true
if [[ $rc == 0 ]]; then pass "exit 0"; else fail "exit 0" "exit $rc"; show zero; fi

# Host files at the same paths, read-only; kvm_amd loaded with nested paging.
box hostfs -- bash -c 'sha256sum /bin/bash /etc/os-release; cat /sys/module/kvm_amd/parameters/npt;
  if touch /etc/amdv-box-test 2>/dev/null; then echo root-writable; fi'
want=$(sha256sum /bin/bash /etc/os-release)
if [[ $rc == 0 && $(head -n 2 "$WORK/hostfs.out") == "$want" && $(sed -n 3p "$WORK/hostfs.out") == Y ]] &&
  ! grep -q root-writable "$WORK/hostfs.out"; then
  pass "host files visible read-only at the same paths; kvm_amd npt=Y"
else
  fail "host files" "exit $rc; got: $(tr '\n' ' ' <"$WORK/hostfs.out")"; show hostfs
fi

# The repository is writable at its own path; cwd and environment carry over.
mkdir -p "$REPO/.cache/box-test"
token=$RANDOM$RANDOM
rm -f "$REPO/.cache/box-test/out"
rc=0
(cd "$REPO/scripts" && AMDV_TEST_TOKEN=$token "$BOX" -- sh -c \
  'echo "$AMDV_TEST_TOKEN $PWD $DOMUS_AMDV_BOX" >"$0/.cache/box-test/out"' "$REPO" \
  >"$WORK/share.out" 2>"$WORK/share.err" </dev/null) || rc=$?
if [[ $rc == 0 && $(cat "$REPO/.cache/box-test/out" 2>/dev/null) == "$token $REPO/scripts 1" ]]; then
  pass "repository writable; cwd and environment carried over"
else
  fail "repository writable" "exit $rc; file: $(cat "$REPO/.cache/box-test/out" 2>&1)"; show share
fi
rm -rf "$REPO/.cache/box-test"

# --share DIR, and stdout/stderr kept apart and byte-exact (no \r).
mkdir -p "$WORK/shared"
# Run from the share, so that the caller's directory is visible inside whatever it is
# (a repository under /tmp would not be: the box's /tmp is its own).
pushd "$WORK/shared" >/dev/null
box streams --share "$WORK/shared" -- sh -c 'printf "a\nb\n"; echo err >&2; echo x >"$0/f"' "$WORK/shared"
popd >/dev/null
printf 'a\nb\n' >"$WORK/streams.want"
if [[ $rc == 0 && $(cat "$WORK/streams.err") == err && $(cat "$WORK/shared/f" 2>/dev/null) == x ]] &&
  cmp -s "$WORK/streams.out" "$WORK/streams.want"; then
  pass "--share; stdout and stderr separate and byte-exact"
else
  fail "streams" "exit $rc; out: $(od -An -c "$WORK/streams.out" | head -n 2)"; show streams
fi

# Output streams live: a line arrives while the command still runs.
rc=0
start=$SECONDS
first=""
exec {live}< <("$BOX" --timeout 120 -- sh -c 'echo first; sleep 8; echo second' 2>/dev/null </dev/null)
if IFS= read -r -t 60 -u "$live" first; then t_first=$((SECONDS - start)); fi
cat <&"$live" >/dev/null
exec {live}<&-
t_all=$((SECONDS - start))
if [[ $first == first ]] && ((t_all - t_first >= 5)); then
  pass "output streams live (first line ${t_first}s, end ${t_all}s)"
else
  fail "live output" "first='$first' after ${t_first:-?}s, end ${t_all}s"
fi

# --timeout: exit 124 within 15 s, no QEMU left.
start=$SECONDS
box timeout --timeout 5 -- sleep 60
el=$((SECONDS - start))
left=$(leftover_qemu)
if [[ $rc == 124 && $el -le 15 && -z $left ]]; then
  pass "--timeout 5 → 124 after ${el}s, no QEMU left"
else
  fail "timeout" "exit $rc after ${el}s; leftover QEMU: ${left:-none}"; show timeout
fi

# A COMMAND that does not exist: before booting, and inside only.
box notfound -- no-such-command-amdv
if [[ $rc == 127 ]] && grep -q 'step "command".*not found' "$WORK/notfound.err"; then
  pass "missing COMMAND → 127 with a clear error"
else
  fail "missing COMMAND" "exit $rc"; show notfound
fi
# /tmp inside the box is a fresh tmpfs: a script under the host's $TMPDIR
# exists on the host but not inside.
printf '#!/bin/sh\necho hi\n' >"$WORK/hostonly.sh"
chmod +x "$WORK/hostonly.sh"
if [[ $WORK == /tmp/* ]]; then
  box notinside -- "$WORK/hostonly.sh"
  if [[ $rc == 127 ]] && grep -q 'not found inside the box' "$WORK/notinside.err"; then
    pass "COMMAND missing inside the box → 127 with a clear error"
  else
    fail "COMMAND missing inside" "exit $rc"; show notinside
  fi
fi

box badargs --cpus zero -- true
if [[ $rc == 2 ]]; then pass "bad arguments → 2"; else fail "bad arguments" "exit $rc"; fi

# A module that does not load names its step (a CPU without SVM: kvm-amd fails).
rc=0
AMDV_BOX_CPU=EPYC,-svm "$BOX" -- true >"$WORK/nosvm.out" 2>"$WORK/nosvm.err" </dev/null || rc=$?
if [[ $rc == 125 ]] && grep -q 'step "load module kvm-amd"' "$WORK/nosvm.err"; then
  pass "kvm-amd failing to load → 125 naming the step"
else
  fail "module failure" "exit $rc"; show nosvm
fi

# Interactive mode: a terminal (from script(1)) becomes COMMAND's controlling tty.
if command -v script >/dev/null; then
  rc=0
  script -qec "$BOX -- sh -c 'tty; exit 5'" /dev/null </dev/null >"$WORK/tty.out" 2>&1 || rc=$?
  if [[ $rc == 5 ]] && grep -q '^/dev/ttyS1' "$WORK/tty.out"; then
    pass "interactive mode: a terminal inside, status 5 back"
  else
    fail "interactive" "exit $rc; $(tr -d '\r' <"$WORK/tty.out" | tail -n 3 | tr '\n' ' ')"
  fi
else
  skip "interactive" "no script(1)"
fi

# A Swift binary from the repository's .build runs inside and opens /dev/kvm.
if command -v swiftc >/dev/null; then
  bin=$REPO/.build/amdv-box-test/kvm-probe
  mkdir -p "${bin%/*}"
  cat >"$WORK/probe.swift" <<'EOF'
#if canImport(Glibc)
import Glibc
#endif
let fd = open("/dev/kvm", O_RDWR | O_CLOEXEC)
guard fd >= 0 else { print("cannot open /dev/kvm: errno \(errno)"); exit(1) }
print("swift: opened /dev/kvm")
close(fd)
EOF
  if swiftc -o "$bin" "$WORK/probe.swift" 2>"$WORK/swiftc.err"; then
    box swift -- "$bin"
    if [[ $rc == 0 && $(cat "$WORK/swift.out") == "swift: opened /dev/kvm" ]]; then
      pass "Swift binary from .build runs inside and opens /dev/kvm"
    else
      fail "swift" "exit $rc; $(cat "$WORK/swift.out")"; show swift
    fi
  else
    skip "swift" "swiftc failed: $(head -n 2 "$WORK/swiftc.err")"
  fi
  rm -rf "${bin%/*}"
else
  skip "swift" "no swiftc on PATH"
fi

# A KVM guest started inside the box by Domus's KVM layer takes the `syscall` path from
# ring 3 to the host and back: the usersyscall PV test guest (a user-mode `syscall`
# bounced to its kernel) and hcerrors (hypercalls made with `syscall` from guest
# kernel mode), run by the repository's domus binary on the box's /dev/kvm.
domus_bin=$(cd "$REPO" && swift build --show-bin-path 2>/dev/null)/domus
if [[ -x $domus_bin && -x $REPO/guests/build/usersyscall && -x $REPO/guests/build/hcerrors ]]; then
  box syscall -- sh -c "'$domus_bin' run --kernel '$REPO/guests/build/usersyscall' --memory 32 --timeout 60 --stats && '$domus_bin' run --kernel '$REPO/guests/build/hcerrors' --memory 32 --timeout 60 --stats"
  if [[ $rc == 0 ]] && grep -q "domus-test: PASS usersyscall" "$WORK/syscall.out" && grep -q "domus-test: PASS hcerrors" "$WORK/syscall.out" \
      && grep -q "^  syscall [1-9]" "$WORK/syscall.err" && ! grep -q "via a fault" "$WORK/syscall.err"; then
    pass "a KVM guest run by Domus inside the box takes the syscall path (ring 3 -> LSTAR stub -> host -> back)"
  else
    fail "syscall" "exit $rc; $(grep -E 'PASS|FAIL|syscall' "$WORK/syscall.out" "$WORK/syscall.err" | tail -n 4 | tr '\n' ' ')"; show syscall
  fi
else
  skip "syscall" "domus or the PV test guests are not built (swift build; make -C guests)"
fi

# scripts/guest-linux: two lines, both files there; --kernel / --initrd.
rc=0
out=$("$GUEST" 2>"$WORK/guest.err") || rc=$?
k=$(sed -n 's/^kernel=//p' <<<"$out")
i=$(sed -n 's/^initrd=//p' <<<"$out")
if [[ $rc == 0 && $(wc -l <<<"$out") == 2 && -s $k && -s $i && $("$GUEST" --kernel) == "$k" &&
  $("$GUEST" --initrd) == "$i" ]] && cpio -it --quiet <"$i" | grep -qx 'usr/bin/xenstore-read' &&
  cpio -it --quiet <"$i" | grep -q 'xen-blkfront.ko$'; then
  pass "guest-linux prints kernel= and initrd=; initramfs has xenstore-read and xen-blkfront"
else
  fail "guest-linux" "exit $rc; $out"; sed 's/^/    | /' "$WORK/guest.err" | tail -n 5
fi

left=$(leftover_qemu)
if [[ -z $left ]]; then pass "no QEMU process left behind"; else fail "leftovers" "QEMU still running: $left"; fi

summary
