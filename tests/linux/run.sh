#!/usr/bin/env bash
# tests/linux/run.sh — Debian's stock Linux kernel as a PV domU on Domus.
#
# The kernel and a busybox initramfs come from scripts/guest-linux. Each test boots
# the kernel with `domus run`, lets the initramfs's init run a command, and checks
# the console and the exit status:
#   boot      init prints uname -r, /sys/hypervisor/type (xen), CPU and memory
#             counts, runs a user-space loop, powers off: exit 0
#   reboot    `reboot -f`: exit 3
#   panic     `echo c > /proc/sysrq-trigger`: the kernel panics, Domus reports the
#             crash: exit 1
#   xenstore  Debian's xenstore-write, -read, -ls and -watch against Domus's XenStore
# In the box, the boot must also show the ring-0 core completing mmu_updates in the VM,
# and the guest's ticks taken there by the local APIC timer (one vCPU's default); it
# boots once more with --no-apic-timer, which must take none there.
# They run on this host's /dev/kvm, and the boot test also inside the emulated AMD-V
# machine (scripts/amdv-box), where KVM behaves like real hardware. A machine that is
# missing makes its tests SKIP with the reason. Exits 1 if any test failed.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
cd "$REPO"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/domus-linux-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
passed=0 failed=0 skipped=0
pass() { passed=$((passed + 1)); printf 'PASS %s\n' "$1"; }
# A failure shows what the run printed before --stats' tables (the crash reason, the
# vCPU registers and stack, the console's end), then the exit tables.
fail() {
  failed=$((failed + 1)); printf 'FAIL %s: %s\n' "$1" "$2"
  sed '/^domus: hypercalls:/,$d' "$WORK/$1.log" | tail -n 40 | sed 's/^/    | /'
  sed -n '/^domus: exits/,$p' "$WORK/$1.log" | sed 's/^/    | /'
}
skip() { skipped=$((skipped + 1)); printf 'SKIP %s: %s\n' "$1" "$2"; }

DOMUS=${DOMUS:-$(swift build --show-bin-path 2>/dev/null)/domus}
[[ -x $DOMUS ]] || { echo "FAIL: $DOMUS is not built (swift build)"; exit 1; }
if ! paths=$(scripts/guest-linux 2>"$WORK/guest-linux.err"); then
  cat "$WORK/guest-linux.err"
  echo "FAIL: scripts/guest-linux could not prepare the kernel and initramfs"
  exit 1
fi
KERNEL=$(sed -n 's/^kernel=//p' <<<"$paths")
INITRD=$(sed -n 's/^initrd=//p' <<<"$paths")

# run NAME TIMEOUT COMMAND [domus run prefix...]: boots with domus.cmd=COMMAND, with
# the domus run options in RUN_OPTIONS (an array) too.
RUN_OPTIONS=()
run() {
  local name=$1 timeout=$2 command=$3; shift 3
  rc=0
  timeout $((timeout + 60)) "$@" "$DOMUS" run "${RUN_OPTIONS[@]}" --kernel "$KERNEL" --initrd "$INITRD" --memory 512 \
    --cmdline "console=hvc0 quiet domus.modules=none domus.cmd=\"$command\"" --timeout "$timeout" --stats \
    >"$WORK/$name.log" 2>&1 </dev/null || rc=$?
}

# No backslashes or single quotes: init splits /proc/cmdline with xargs.
BOOT_COMMAND='echo kernel=$(uname -r); echo hypervisor=$(cat /sys/hypervisor/type); echo cpus=$(nproc); grep MemTotal /proc/meminfo; i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo loop=$i'

# Two vCPUs: both online in the guest (VCPUOP_initialise, VCPUOP_up, the cpu/N/availability
# XenStore nodes), CPU 1 unplugged and plugged back (VCPUOP_down, VCPUOP_is_up, VCPUOP_up),
# then four busy workers share them.
SMP_COMMAND='echo cpus=$(nproc) online=$(cat /sys/devices/system/cpu/online); echo 0 > /sys/devices/system/cpu/cpu1/online; echo unplugged=$(cat /sys/devices/system/cpu/online); echo 1 > /sys/devices/system/cpu/cpu1/online; echo replugged=$(cat /sys/devices/system/cpu/online); for n in 1 2 3 4; do (i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo worker=$n) & done; wait; grep ^cpu1 /proc/stat; echo smp-done'

XENSTORE_COMMAND='xenstore-write data/x 17; echo read=$(xenstore-read data/x); xenstore-ls data; xenstore-watch -n 2 data/y > /tmp/w & sleep 1; xenstore-write data/y hello; wait; echo watch=$(cat /tmp/w); echo name=$(xenstore-read name); xenstore-ls /local/domain; echo ls=$?'

check_xenstore() {
  local name=$1
  if ((rc != 0)); then fail "$name" "domus run exited $rc, expected 0"; return; fi
  # The watch fires once when set and once for the write; a domU may not list /local/domain.
  for expected in "read=17" 'x = "17"' "watch=data/y data/y" "name=domus" "Permission denied" "ls=1"; do
    if ! grep -qF "$expected" "$WORK/$name.log"; then fail "$name" "console lacks \"$expected\""; return; fi
  done
  pass "$name"
}

# check_boot NAME [in-vm [apic|host]]: in-vm also wants the ring-0 core's mmu_updates
# (--stats); apic wants the guest's ticks taken by the local APIC timer inside the VM,
# host none (the host's timers: --no-apic-timer, or two vCPUs).
check_boot() {
  local name=$1 core=${2:-} timer=${3:-}
  if ((rc != 0)); then fail "$name" "domus run exited $rc, expected 0"; return; fi
  if [[ $core == in-vm ]] && ! grep -Eq "mmu_update [0-9]+ \([1-9][0-9]* in the VM" "$WORK/$name.log"; then
    fail "$name" "the ring-0 core completed no mmu_update inside the VM"; return
  fi
  if [[ $timer == apic ]] && ! grep -Eq "timer interrupt \(VIRQ_TIMER raised\) [1-9]" "$WORK/$name.log"; then
    fail "$name" "no timer interrupt was taken inside the VM (the local APIC timer)"; return
  fi
  if [[ $timer == host ]] && grep -q "timer interrupt (VIRQ_TIMER raised)" "$WORK/$name.log"; then
    fail "$name" "with the host's timers, yet the VM took timer interrupts"; return
  fi
  for expected in "kernel=6." "hypervisor=xen" "cpus=1" "loop=100000" "domus-guest: exit status 0"; do
    if ! grep -q "$expected" "$WORK/$name.log"; then fail "$name" "console lacks \"$expected\""; return; fi
  done
  grep -q "MemTotal: *[1-9]" "$WORK/$name.log" || { fail "$name" "console lacks the memory size"; return; }
  pass "$name"
}

check_smp() {
  local name=$1
  if ((rc == 0)) && grep -q "cpus=2 online=0-1" "$WORK/$name.log" && grep -q "unplugged=0[[:space:]]*$" "$WORK/$name.log" \
     && grep -q "replugged=0-1" "$WORK/$name.log" && grep -q "smp-done" "$WORK/$name.log" \
     && [[ $(grep -c "^worker=" "$WORK/$name.log") == 4 ]]; then pass "$name"
  else fail "$name" "domus run exited $rc; expected both vCPUs online in the guest, CPU 1 unplugged and back, and four workers done"; fi
}

if [[ -r /dev/kvm && -w /dev/kvm ]]; then
  run boot 240 "$BOOT_COMMAND"
  check_boot boot

  run reboot 240 "reboot -f"
  if ((rc == 3)) && grep -q "shut down: reboot" "$WORK/reboot.log"; then pass reboot
  else fail reboot "domus run exited $rc, expected 3 with the reason"; fi

  run panic 240 "echo c > /proc/sysrq-trigger"
  if ((rc == 1)) && grep -q "sysrq: Trigger a crash" "$WORK/panic.log" && grep -q "shut down: crash" "$WORK/panic.log"; then pass panic
  else fail panic "domus run exited $rc, expected 1 after the guest's panic"; fi

  run xenstore 240 "$XENSTORE_COMMAND"
  check_xenstore xenstore

  RUN_OPTIONS=(--vcpus 2)
  run smp 240 "$SMP_COMMAND"
  RUN_OPTIONS=()
  check_smp smp
else
  skip boot "no usable /dev/kvm on this host"
  skip reboot "no usable /dev/kvm on this host"
  skip panic "no usable /dev/kvm on this host"
  skip xenstore "no usable /dev/kvm on this host"
  skip smp "no usable /dev/kvm on this host"
fi

# run_in_box NAME COMMAND: `run` inside the box. A boot that stalls until its timeout
# (exit 124) is tried once more and says so: about one boot in six stalls in the
# emulated machine with or without the ring-0 core (the guest spins with events masked
# or its timer lost; under investigation, see the issue note). Any other failure, or a
# second stall, fails the test.
# domus's own timeout (700 s) ends before the box's (1000 s) and the outer one (760 s
# with the box's own start), so a stalled boot prints each vCPU's state; the stalled
# boot's log is kept as NAME.stalled.log and its end shown.
# A boot that ends in a triple fault (exit 4, "triple fault") is retried the same way.
# The emulated machine ends about one two-vCPU box boot in twelve so, by running the
# guest on the box kernel's own state (docs/amdv-box.md, "Known problem"), with QEMU
# 7.2 and 10.0 alike. Its report (with the flight recorders) is shown before the retry.
run_in_box() {
  local name=$1 command=$2
  run "$name" 700 "$command" scripts/amdv-box --timeout 1000 --
  if ((rc == 124)); then
    printf 'RETRY %s: the boot stalled until its timeout; once more. What it printed last:\n' "$name"
    cp "$WORK/$name.log" "$WORK/$name.stalled.log"
    grep -v "^  " "$WORK/$name.log" | tail -n 12 | sed 's/^/    | /'
    run "$name" 700 "$command" scripts/amdv-box --timeout 1000 --
  elif ((rc == 125)) && grep -q "COMMAND had not started" "$WORK/$name.log"; then
    # The emulated machine itself did not come up (seen once in a full run: nothing on
    # its console for 180 s); Domus had not run yet.
    printf 'RETRY %s: the emulated machine did not boot; once more\n' "$name"
    run "$name" 700 "$command" scripts/amdv-box --timeout 1000 --
  elif ((rc == 4)) && grep -q "crashed: d[0-9]*v[0-9]*: triple fault" "$WORK/$name.log"; then
    printf 'RETRY %s: the hypervisor crashed the domain on a triple fault; once more. Its report:\n' "$name"
    cp "$WORK/$name.log" "$WORK/$name.triple-fault.log"
    sed -n '/crashed: d[0-9]*v[0-9]*: triple fault/,/^domus: ran/p' "$WORK/$name.log" | head -n 120 | sed 's/^/    | /'
    run "$name" 700 "$command" scripts/amdv-box --timeout 1000 --
  fi
}

# Inside the emulated AMD-V machine: the same boot, with `syscall` running as on
# real hardware.
if [[ -x scripts/amdv-box ]] && command -v qemu-system-x86_64 >/dev/null; then
  run_in_box boot-in-box "$BOOT_COMMAND"
  if grep -q "amdv-box: .*cannot\|QEMU cannot start" "$WORK/boot-in-box.log"; then
    skip boot-in-box "the emulated AMD-V machine cannot start here"
  else
    # One vCPU: the guest's timer runs on the local APIC, inside the VM (the default).
    check_boot boot-in-box in-vm apic
    # The same with the host's timers.
    RUN_OPTIONS=(--no-apic-timer)
    run_in_box boot-in-box-host-timer "$BOOT_COMMAND"
    RUN_OPTIONS=()
    check_boot boot-in-box-host-timer in-vm host
  fi
  run_in_box xenstore-in-box "$XENSTORE_COMMAND"
  check_xenstore xenstore-in-box
  RUN_OPTIONS=(--vcpus 2)
  run_in_box smp-in-box "$SMP_COMMAND"
  RUN_OPTIONS=()
  check_smp smp-in-box
else
  skip boot-in-box "QEMU (scripts/amdv-box) is not available"
fi

printf 'linux: %d passed, %d failed, %d skipped\n' "$passed" "$failed" "$skipped"
((failed == 0))
