#!/usr/bin/env bash
# `make fuzz`: each cargo-fuzz target for FUZZ_SECONDS (600) in turn, from the
# checked-in corpus (fuzz/corpus/<target>, read only) with what it finds kept
# in a scratch corpus (FUZZ_WORK, default target/fuzz-corpus/<target>), and
# libFuzzer's final statistics printed per target. A crash stops the run and
# leaves the input under fuzz/artifacts/<target>/. Fold new finds into the
# checked-in corpus with
#   cargo fuzz run <target> fuzz/corpus/<target> <scratch> -- -merge=1
# (only inputs that add coverage are copied). Needs cargo-fuzz (installed
# when missing) and a nightly-capable compiler (RUSTC_BOOTSTRAP=1 on stable).
#
# Environment: FUZZ_SECONDS (600), FUZZ_TARGETS (all), FUZZ_WORK.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export RUSTC_BOOTSTRAP=1
SECONDS_EACH=${FUZZ_SECONDS:-600}
WORK=${FUZZ_WORK:-$PWD/../target/fuzz-corpus}
read -r -a TARGETS <<<"${FUZZ_TARGETS:-validate_event batch_split stream_decode otlp_logs}"

cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for t in "${TARGETS[@]}"; do
    mkdir -p "$WORK/$t"
    cargo fuzz build -O "$t"
    printf '\n==> %s for %s s (new inputs in %s)\n' "$t" "$SECONDS_EACH" "$WORK/$t" >&2
    log="$WORK/$t.log"
    if ! cargo fuzz run -O "$t" "$WORK/$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        printf 'error: %s failed; the input is under fuzz/artifacts/%s/\n' "$t" "$t" >&2
        exit 1
    fi
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" >&2
    grep -E '#[0-9]+[[:space:]]+DONE' "$log" >&2 || true
done
