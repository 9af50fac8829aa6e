#!/usr/bin/env bash
# Installs the system tools sshcc's tests and demo drive for real: OpenSSH (the
# throwaway build boxes), distcc (the baseline sshcc is compared against), the
# compilers (gcc, g++, and arm-none-eabi-gcc with newlib's nano.specs and its C++
# library for the cross-compiler tests), make, ccache, tmux (sshcc mon on a real terminal),
# iproute2 (network namespaces for the bastion test), binutils (objdump
# compares DWARF line tables), PostgreSQL 15 (the scheduler database of the
# BuildGrid engine of the REAPI tests) and openssl (their private CA); then BuildGrid 0.9.1 itself, from PyPI
# into a venv at target/buildgrid-venv or $BUILDGRID_VENV (tests/reapi/engine.sh
# runs it), with a Python 3.13 from $BUILDGRID_PYTHON, PATH or pyenv. Idempotent:
# does nothing when everything is present.
#
# Says in one line what it installs and why; apt-get's and pip's output goes to a log
# file (target/install-deps.log, or $INSTALL_DEPS_LOG), shown only when the install
# fails. pip's cache stays under target/, out of $HOME.
#
# If installing openssh-server makes Debian start the system ssh service, we
# leave it be: the tests only ever use their own sshd on ephemeral ports.
set -euo pipefail

# "path-or-command package" pairs; sshd is checked by absolute path because
# /usr/sbin is often not on a regular user's PATH, nano.specs is a file.
required=(
  /usr/sbin/sshd openssh-server
  ssh openssh-client
  ssh-keygen openssh-client
  ssh-agent openssh-client
  /usr/sbin/ip iproute2
  objdump binutils
  distcc distcc
  distccd distcc
  gcc gcc
  g++ g++
  make make
  ccache ccache
  tmux tmux
  arm-none-eabi-gcc gcc-arm-none-eabi
  /usr/lib/arm-none-eabi/lib/nano.specs libnewlib-arm-none-eabi
  /usr/include/newlib/c++ libstdc++-arm-none-eabi-newlib
  /usr/lib/postgresql/15/bin/initdb postgresql
  openssl openssl
)

repo=$(cd "$(dirname "$0")/.." && pwd)
log=${INSTALL_DEPS_LOG:-$repo/target/install-deps.log}

have() {
  if [[ $1 == /* ]]; then [[ -e $1 ]]; else command -v "$1" >/dev/null 2>&1; fi
}

missing_cmds=()
packages=()
for ((i = 0; i < ${#required[@]}; i += 2)); do
  cmd=${required[i]} pkg=${required[i + 1]}
  if ! have "$cmd"; then
    missing_cmds+=("${cmd##*/}")
    [[ " ${packages[*]} " == *" $pkg "* ]] || packages+=("$pkg")
  fi
done

# Installs the missing packages with apt-get; returns at once when none is missing.
install_packages() {
  ((${#packages[@]} > 0)) || return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: missing ${missing_cmds[*]}; apt-get not found; install these packages by hand: ${packages[*]}" >&2
    exit 1
  fi

  local sudo=()
  if ((EUID != 0)); then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      echo "install-deps: missing ${missing_cmds[*]}; not root and sudo is unavailable; as root run: apt-get install ${packages[*]}" >&2
      exit 1
    fi
  fi

  mkdir -p "$(dirname "$log")"
  echo "install-deps: installing ${packages[*]} with apt-get for ${missing_cmds[*]}, which the tests use for real; log: $log"

  local started=$SECONDS
  if ! {
    "${sudo[@]}" apt-get update &&
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${packages[@]}"
  } </dev/null >"$log" 2>&1; then
    echo "install-deps: apt-get failed; its output (all of it in $log):" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi

  local still_missing=()
  for ((i = 0; i < ${#required[@]}; i += 2)); do
    have "${required[i]}" || still_missing+=("${required[i]}")
  done
  if ((${#still_missing[@]} > 0)); then
    echo "install-deps: still missing after install: ${still_missing[*]} (apt-get's output: $log)" >&2
    exit 1
  fi
  echo "install-deps: done in $((SECONDS - started)) s"
}

# The first Python 3.13 of $BUILDGRID_PYTHON, python3.13 on PATH and pyenv's 3.13.x
# that runs (a pyenv shim on PATH may name a version pyenv does not select).
find_python313() {
  local candidate
  for candidate in ${BUILDGRID_PYTHON:+"$BUILDGRID_PYTHON"} \
    "$(command -v python3.13 || true)" "$HOME"/.pyenv/versions/3.13*/bin/python3; do
    [[ -n $candidate && -x $candidate ]] || continue
    if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

# Makes the venv of BuildGrid (the REAPI engine of tests/reapi_client.rs) when it is
# missing; BuildGrid 0.9.1 needs Python 3.13, which Debian 12 does not package.
install_buildgrid() {
  local venv=${BUILDGRID_VENV:-$repo/target/buildgrid-venv} python started=$SECONDS
  [[ -x $venv/bin/bgd ]] && return 0
  if ! python=$(find_python313); then
    echo "install-deps: no Python 3.13 (\$BUILDGRID_PYTHON, python3.13 on PATH, ~/.pyenv/versions/3.13*), so no BuildGrid venv: tests/reapi_client.rs will skip" >&2
    return 0
  fi
  mkdir -p "$(dirname "$log")"
  echo "install-deps: installing buildgrid==0.9.1 with pip into $venv (the REAPI engine tests/reapi_client.rs starts); log: $log"
  rm -rf "$venv"
  if ! {
    "$python" -m venv "$venv" &&
      PIP_CACHE_DIR=$repo/target/pip-cache PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$venv/bin/pip" install --quiet buildgrid==0.9.1
  } </dev/null >>"$log" 2>&1; then
    rm -rf "$venv"
    echo "install-deps: pip failed; its output (all of it in $log):" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  echo "install-deps: BuildGrid installed in $((SECONDS - started)) s"
}

if ((${#packages[@]} == 0)) && [[ -x ${BUILDGRID_VENV:-$repo/target/buildgrid-venv}/bin/bgd ]]; then
  echo "install-deps: all required tools present"
  exit 0
fi
install_packages
install_buildgrid
