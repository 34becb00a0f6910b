#!/bin/sh
# Runs every guest under build/pvsmoke (needs /dev/kvm) and checks each
# verdict: the expected final "domus-test:" line and the runner's exit status
# (0 poweroff, 10 + reason for other shutdowns, 2 domain crash).
set -u
dir=$(cd "$(dirname "$0")/.." && pwd)
runner=$dir/build/pvsmoke
failed=0

run() {
    guest=$1 cmdline=$2 want_status=$3 want_line=$4
    out=$("$runner" "$dir/build/$guest" "$cmdline" 2>&1)
    status=$?
    last=$(printf '%s\n' "$out" | grep '^domus-test: ' | tail -n 1)
    if [ "$status" -eq "$want_status" ] && [ "$last" = "$want_line" ]; then
        echo "ok   $guest $cmdline"
    else
        echo "FAIL $guest $cmdline: exit $status, last line: $last"
        printf '%s\n' "$out" | grep -v '^domus-test: ok - \|^  ' | sed 's/^/     /'
        failed=$((failed + 1))
    fi
}

run hello "" 0 "domus-test: PASS hello"
run traps "" 0 "domus-test: PASS traps"
run usersyscall "" 0 "domus-test: PASS usersyscall"
run hcerrors "" 0 "domus-test: PASS hcerrors"
run multicall "" 0 "domus-test: PASS multicall"
run hcbench "" 0 "domus-test: PASS hcbench"
run shutdown reason=poweroff 0 "domus-test: shutdown reason=poweroff code=0"
run shutdown reason=reboot 11 "domus-test: shutdown reason=reboot code=1"
run shutdown reason=suspend 12 "domus-test: shutdown reason=suspend code=2"
run shutdown reason=crash 13 "domus-test: shutdown reason=crash code=3"
run shutdown reason=watchdog 14 "domus-test: shutdown reason=watchdog code=4"
run shutdown reason=bogus 13 "domus-test: FAIL shutdown: unknown reason=bogus (want poweroff, reboot, suspend, crash or watchdog)"

[ "$failed" -eq 0 ] && echo "all guests behaved" || echo "$failed run(s) failed"
exit "$failed"
