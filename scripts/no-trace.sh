#!/usr/bin/env bash
# Runs a command (the test suite) and fails if it left a trace behind:
#
#   - a file or directory created, changed or removed under $HOME, other than
#     cargo's and rustup's own (~/.cargo, ~/.rustup, $CARGO_HOME, $RUSTUP_HOME)
#     and the build's target directory, or in this user's real sshcc daemon and
#     slot directories ($XDG_RUNTIME_DIR/sshcc, $TMPDIR/sshcc-<uid>,
#     /tmp/sshcc-<uid>, /tmp/sshcc-slots);
#   - a process it started that still runs;
#   - anything left in its temporary directory.
#
#   scripts/no-trace.sh cargo test --locked
#
# The command runs with two things of its own, which is how its processes are
# told apart from everything else on the machine (other builds included):
# SSHCC_TEST_RUN_ID=<random>, which every process it starts inherits and which
# throwaway boxes pass on to their sessions, and TMPDIR=<a fresh directory>,
# where every test keeps its scratch, boxes and job directories. A process is
# left behind if, after the command ended (and a grace period), it carries that
# marker in its environment, or its working directory, executable or command
# line lies in that directory; each one found is listed, then ended.
#
# NO_TRACE_IGNORE: more paths (colon-separated) that other programs on this
# machine may change meanwhile, e.g. an editor's or an agent's state in $HOME.
#
# Exits with the command's status if it failed, else 1 if it left a trace.
set -uo pipefail

if (($# == 0)); then
  echo "usage: $0 COMMAND [ARGS...]" >&2
  exit 2
fi

repo=$(cd "$(dirname "$0")/.." && pwd)
uid=$(id -u)
# What the command's processes would find without our TMPDIR.
real_tmp=${TMPDIR:-/tmp}

run_id=$(od -An -N8 -tx8 /dev/urandom | tr -d ' \n')
run_dir=$(mktemp -d "$real_tmp/sshcc-test-run.XXXXXX") || exit 1
# Like /tmp: box accounts and distccd's own user (distccd drops root) write there.
chmod 1777 "$run_dir"
marker=$run_dir/.started
touch "$marker"

SSHCC_TEST_RUN_ID=$run_id TMPDIR=$run_dir "$@"
status=$?

traces=0

# --- processes ----------------------------------------------------------------

# Prints "pid<TAB>why" for each live process of the run.
leftovers() {
  local proc pid stat state why cwd exe var arg
  local -a environ cmdline
  for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    { stat=$(<"$proc/stat"); } 2>/dev/null || continue
    state=${stat##*) }
    state=${state%% *}
    [[ $state == Z ]] && continue
    why=
    mapfile -d '' environ 2>/dev/null <"$proc/environ" || environ=()
    for var in "${environ[@]}"; do
      if [[ $var == "SSHCC_TEST_RUN_ID=$run_id" ]]; then
        why="has the run's marker"
        break
      fi
    done
    if [[ -z $why ]] && cwd=$(readlink "$proc/cwd" 2>/dev/null) &&
      [[ $cwd == "$run_dir" || $cwd == "$run_dir"/* ]]; then
      why="works in $cwd"
    fi
    if [[ -z $why ]] && exe=$(readlink "$proc/exe" 2>/dev/null) && [[ $exe == "$run_dir"/* ]]; then
      why="runs $exe"
    fi
    if [[ -z $why ]]; then
      mapfile -d '' cmdline 2>/dev/null <"$proc/cmdline" || cmdline=()
      for arg in "${cmdline[@]}"; do
        if [[ $arg == *"$run_dir"* ]]; then
          why="names $run_dir"
          break
        fi
      done
    fi
    [[ -n $why ]] && printf '%s\t%s\n' "$pid" "$why"
  done
}

# Whatever was just ended (a box's sshd, a daemon told to stop) gets a moment.
found=$(leftovers)
for _ in $(seq 20); do
  [[ -z $found ]] && break
  sleep 0.5
  found=$(leftovers)
done
if [[ -n $found ]]; then
  traces=1
  echo "no-trace: the command left $(wc -l <<<"$found") process(es) running:" >&2
  while IFS=$'\t' read -r pid why; do
    ps -o pid=,ppid=,user=,etime=,args= -p "$pid" 2>/dev/null | cut -c1-240 | sed 's/^/    /' >&2
    echo "        ($why)" >&2
  done <<<"$found"
  pids=$(cut -f1 <<<"$found")
  # shellcheck disable=SC2086 # one word per pid
  kill -TERM $pids 2>/dev/null
  sleep 2
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null
  echo "no-trace: ended them" >&2
fi

# --- files ----------------------------------------------------------------------

# Directories whose changes are not the command's doing, or are the build's own.
ignored=("$HOME/.cargo" "$HOME/.rustup" "$repo/target" "$run_dir")
for var in CARGO_HOME RUSTUP_HOME CARGO_TARGET_DIR; do
  [[ -n ${!var:-} ]] && ignored+=("${!var%/}")
done
IFS=: read -r -a extra <<<"${NO_TRACE_IGNORE:-}"
for path in "${extra[@]}"; do
  [[ -n $path ]] && ignored+=("${path%/}")
done
prune=()
for path in "${ignored[@]}"; do
  prune+=(-path "$path" -o)
done
unset 'prune[${#prune[@]}-1]'

watched=("$HOME" /tmp/sshcc-slots "/tmp/sshcc-$uid")
[[ ${real_tmp%/} != /tmp ]] && watched+=("${real_tmp%/}/sshcc-$uid")
[[ -n ${XDG_RUNTIME_DIR:-} ]] && watched+=("$XDG_RUNTIME_DIR/sshcc")
changed=$(
  for dir in "${watched[@]}"; do
    [[ -e $dir ]] || continue
    find "$dir" -xdev \( "${prune[@]}" \) -prune -o \
      \( -newer "$marker" -o -cnewer "$marker" \) -print 2>/dev/null
  done
)
if [[ -n $changed ]]; then
  traces=1
  echo "no-trace: the command changed $(wc -l <<<"$changed") path(s) it must leave alone (a directory: an entry in it came or went):" >&2
  head -n 50 <<<"$changed" | while read -r path; do
    ls -ld --time-style=+%T "$path" 2>/dev/null | sed 's/^/    /' >&2
  done
  (($(wc -l <<<"$changed") > 50)) && echo "    …" >&2
fi

left=$(find "$run_dir" -mindepth 1 -maxdepth 1 ! -path "$marker" 2>/dev/null)
if [[ -n $left ]]; then
  traces=1
  echo "no-trace: the command left $(wc -l <<<"$left") entr(y/ies) in its TMPDIR:" >&2
  head -n 20 <<<"$left" | sed 's/^/    /' >&2
fi
rm -rf "$run_dir" 2>/dev/null || echo "no-trace: could not remove all of $run_dir" >&2

if ((status != 0)); then
  echo "no-trace: the command failed (exit $status)" >&2
  exit "$status"
fi
if ((traces)); then
  exit 1
fi
echo "no-trace: nothing changed under $HOME, no process left running, TMPDIR empty"
