#!/bin/sh
# Soak: the resilience, hostile-input and PipeWire tests at full counts, then the fuzz
# targets. Each test starts its own PulseAudio (or PipeWire session), daemon and
# clients, and kills them by pid; nothing here touches a desktop's audio server.
#
# Full counts (NOVNC_AUDIO_FULL=1), against the CI counts of a plain `cargo test`:
#   tests/resilience.rs  pulseaudio_killed_and_restarted       20 SIGKILL/restart cycles (CI: 5)
#                        connection_churn_leaks_nothing        10,000 connect/close cycles (CI: 1000)
#                        stalled_readers_do_not_hurt           100 stalled clients for 60 s (CI: 10 s)
#                        never_reading_client_is_dropped_after_30s   35 s (full mode only)
#   tests/pipewire.rs    pipewire_restarted                    20 restarts of the stack (CI: 5)
#   tests/hostile.rs     (the same corpus in both modes)
# Then each fuzz target for FUZZ_SECONDS (default 300) with cargo-fuzz when a nightly
# toolchain and cargo-fuzz are installed, else the stable replay of fuzz/ with
# FUZZ_ITERS mutations (default 1,000,000). See fuzz/README.md.
#
# Usage: scripts/soak.sh [--no-fuzz]
# Needs: pulseaudio, pulseaudio-utils; for tests/pipewire.rs also pipewire,
# pipewire-pulse, wireplumber, dbus-daemon (skipped with a message otherwise).
set -eu
cd "$(dirname "$0")/.."
start=$(date +%s)
section() { printf '\n===== %s (%ss)\n' "$1" "$(($(date +%s) - start))"; }

export NOVNC_AUDIO_FULL=1
for t in resilience hostile pipewire; do
    section "tests/$t.rs, full counts"
    cargo test --locked --test "$t" -- --nocapture --test-threads 1
done

if [ "${1:-}" = "--no-fuzz" ]; then
    section "done"
    exit 0
fi

seconds=${FUZZ_SECONDS:-300}
cd fuzz
if cargo +nightly fuzz --version >/dev/null 2>&1; then
    for t in http_request config_text cli_args; do
        section "cargo fuzz run $t for ${seconds}s"
        mkdir -p "corpus/$t"
        cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- \
            -max_total_time="$seconds" -print_final_stats=1
    done
else
    section "no nightly cargo-fuzz: stable replay with ${FUZZ_ITERS:-1000000} mutations per target"
    FUZZ_ITERS=${FUZZ_ITERS:-1000000} cargo test --release -- --nocapture
fi
section "done"
