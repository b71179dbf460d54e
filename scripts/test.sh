#!/bin/sh
# Sets up and runs the tests: installs what they need (apt, idempotent), checks
# formatting and lints, then runs every test. Each test starts its own PulseAudio
# (and the PipeWire tests their own pipewire, wireplumber, pipewire-pulse and D-Bus).
set -eu
cd "$(dirname "$0")/.."
# shellcheck disable=SC2046
scripts/deps.sh $(cat scripts/build-deps.txt scripts/test-deps.txt)
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
