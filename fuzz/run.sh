#!/usr/bin/env bash
# `make fuzz` (or `fuzz/run.sh [TARGET...]`): seeds each target's corpus from the test fixtures,
# runs every cargo-fuzz target (or those named) for FUZZ_SECONDS (default 60) and writes
# fuzz/results.md (executions, coverage, crashes per target).
# Needs cargo-fuzz (installed by the Makefile) and nightly features: on a stable toolchain we set
# RUSTC_BOOTSTRAP=1, which lets stable rustc take the -Z sanitizer flags cargo-fuzz passes.
set -u
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-60}
export RUSTC_BOOTSTRAP=1
# Targets named on the command line, else every target.
targets=${*:-$(cargo fuzz list)}

seed() {
    local corpus=corpus/$1
    mkdir -p "$corpus"
    # Inputs that once crashed a target stay in its corpus (fuzz/regressions/TARGET-*).
    for f in regressions/"$1"-*; do
        [ -e "$f" ] && cp "$f" "$corpus"/
    done
    case $1 in
    parse_message)
        find ../tests/data/torture -type f ! -name '*.md' ! -name MANIFEST.tsv ! -name SOURCE \
            -exec cp {} "$corpus"/ \; ;;
    parse_sdp)
        # The SDP bodies of the torture messages (after the blank line), and the SDP fixtures.
        for f in $(grep -rl '^v=0' ../tests/data/torture ../tests/data/sdp); do
            python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); i=d.find(b"\r\n\r\n"); sys.stdout.buffer.write(d[i+4:] if i>=0 and d.startswith((b"INVITE",b"SIP/")) else d)' \
                "$f" >"$corpus/$(basename "$f")"
        done ;;
    parse_rtp)
        # One PCMU RTP packet, one RTP with CSRCs + extension + padding, one SR+SDES compound.
        printf '\x80\x00\x00\x01\x00\x00\x00\xa0\x12\x34\x56\x78\xff\xff\xff\xff' >"$corpus/rtp"
        printf '\xb1\x00\x00\x02\x00\x00\x01\x40\x12\x34\x56\x78\x00\x00\x00\x09\xbe\xde\x00\x01\x10\xaa\x00\x00\x01\x02\x00\x02' >"$corpus/rtp-ext"
        printf '\x80\xc8\x00\x06\x12\x34\x56\x78\xe9\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xa0\x00\x00\x00\x01\x00\x00\x00\xa0\x81\xca\x00\x03\x12\x34\x56\x78\x01\x04abcd\x00\x00\x00' >"$corpus/rtcp" ;;
    parse_stun)
        # RFC 5769 §2.2 / §2.3 test vectors (Binding success, IPv4 and IPv6) live in the unit
        # tests; a request and a success built by our own encoder are enough to start from.
        printf '\x00\x01\x00\x00\x21\x12\xa4\x42abcdefghijkl' >"$corpus/request"
        printf '\x01\x01\x00\x0c\x21\x12\xa4\x42abcdefghijkl\x00\x20\x00\x08\x00\x01\xa1\x47\xe1\x12\xa6\x43' >"$corpus/success-v4" ;;
    ua_datagrams)
        # Each torture message as one step from the proxy over UDP (control byte 0x01).
        for f in $(find ../tests/data/torture -type f ! -name '*.md' ! -name MANIFEST.tsv ! -name SOURCE); do
            { printf '\x01'; cat "$f"; } >"$corpus/$(basename "$f")"
        done ;;
    *) ;;
    esac
}

status=0
{
    echo "# Fuzzing results"
    echo
    echo "\`make fuzz\` on $(date -u +%Y-%m-%d), ${seconds} s per target, $(nproc) cores, cargo-fuzz $(cargo fuzz --version | cut -d' ' -f2)."
    echo
    echo "| target | executions | exec/s | coverage (cov) | corpus | crashes |"
    echo "|---|---|---|---|---|---|"
} >results.md.tmp
for t in $targets; do
    seed "$t"
    log=$(mktemp)
    cargo fuzz run -O "$t" -- -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
    units=$(find "corpus/$t" -type f | wc -l)
    crashes=$(find "artifacts/$t" -type f 2>/dev/null | wc -l)
    rate=$(( ${runs:-0} / seconds ))
    echo "| $t | ${runs:-?} | $rate | ${cov:-?} | $units | $crashes |" >>results.md.tmp
    echo "$t: exit $rc, ${runs:-?} executions, ${crashes} crash files (log: $log)"
    if [ "$rc" != 0 ] || [ "$crashes" != 0 ]; then
        status=1
        tail -40 "$log"
    fi
done
mv results.md.tmp results.md
cat results.md
exit $status
