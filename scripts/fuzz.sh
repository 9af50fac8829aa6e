#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time, starting from and adding to
# fuzz/corpus/<target>/ (and replaying fuzz/regressions/<target>/). Exits non-zero if any
# target crashes (panic, abort, hang, oversized allocation, memory blow-up) and says
# where the crashing input is.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]          default 20 (what CI runs)
#   scripts/fuzz.sh [SECONDS_PER_TARGET] --cmin   then minimise each corpus in place
#
# Works on the stable toolchain: `--sanitizer none` keeps cargo-fuzz from passing any
# nightly-only -Z flag (the coverage instrumentation it needs is stable -C flags).
# sshcc's own code is safe Rust, so a sanitizer would add little; allocations beyond
# sshcc's limits are caught by the fuzz crate's allocator instead.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=20
cmin=false
for arg in "$@"; do
    case "$arg" in
        --cmin) cmin=true ;;
        *[!0-9]* | '') echo "usage: $0 [SECONDS_PER_TARGET] [--cmin]" >&2; exit 2 ;;
        *) seconds=$arg ;;
    esac
done

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# The same flags for build, run and cmin, so nothing is rebuilt between them.
flags=(--sanitizer none --debug-assertions)
cargo fuzz build "${flags[@]}"

failed=()
marker=$(mktemp)
trap 'rm -f "$marker"' EXIT
for target in $(cargo fuzz list); do
    corpus=corpus/$target
    mkdir -p "$corpus" "artifacts/$target"
    options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
    if [[ -f dict/$target.dict ]]; then
        options+=(-dict="dict/$target.dict")
    fi
    touch "$marker"
    echo "=== fuzz: $target for ${seconds}s ($(find "$corpus" -type f | wc -l) corpus inputs)"
    # regressions/<target>/ holds named inputs of past (or still open) bugs. libFuzzer
    # replays every directory before mutating, writes new inputs only to the first, and
    # cmin below never renames or drops the regressions.
    dirs=("$corpus")
    if [[ -d regressions/$target ]]; then
        dirs+=("regressions/$target")
    fi
    if ! cargo fuzz run "${flags[@]}" "$target" "${dirs[@]}" -- "${options[@]}"; then
        failed+=("$target")
        echo "=== fuzz: $target FAILED; crashing input(s):" >&2
        find "$PWD/artifacts/$target" -type f -newer "$marker" -print >&2 || true
        echo "    reproduce: (cd fuzz && cargo fuzz run ${flags[*]} $target artifacts/$target/<file>)" >&2
    fi
    if $cmin; then
        cargo fuzz cmin "${flags[@]}" "$target" "$corpus"
    fi
done

if ((${#failed[@]})); then
    echo "fuzz: crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: all targets ran ${seconds}s without a crash"
