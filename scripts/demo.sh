#!/usr/bin/env bash
# The quick-start demo: a throwaway local sshd as the build box, the bundled sample
# project built through sshcc, one line per job saying where it ran, and the total.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --locked --bins
exec target/release/sshcc-demo
