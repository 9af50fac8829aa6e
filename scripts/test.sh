#!/usr/bin/env bash
# The full check CI runs (via .ci/run): system dependencies, tests, formatting
# and lints. Tests start real sshd and distcc processes, hence install-deps; they
# must leave no trace (no change under $HOME, no process still running), which
# scripts/no-trace.sh checks around them.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

scripts/no-trace.sh cargo test --locked
scripts/fuzz.sh
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
