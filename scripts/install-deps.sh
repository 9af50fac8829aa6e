#!/usr/bin/env bash
# Installs the system tools sshcc's tests and demo drive for real: OpenSSH (the
# throwaway build boxes), distcc (the baseline sshcc is compared against), the
# compilers (gcc, g++, and arm-none-eabi-gcc with newlib's nano.specs and its C++
# library for the cross-compiler tests), make, ccache, tmux (sshcc mon on a real terminal),
# iproute2 (network namespaces for the bastion test) and binutils (objdump
# compares DWARF line tables). Idempotent: does nothing when everything is present.
#
# Says in one line what it installs and why; apt-get's output goes to a log file
# (target/install-deps.log, or $INSTALL_DEPS_LOG), shown only when the install fails.
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
)

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

if ((${#packages[@]} == 0)); then
  echo "install-deps: all required tools present"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: missing ${missing_cmds[*]}; apt-get not found; install these packages by hand: ${packages[*]}" >&2
  exit 1
fi

sudo=()
if ((EUID != 0)); then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "install-deps: missing ${missing_cmds[*]}; not root and sudo is unavailable; as root run: apt-get install ${packages[*]}" >&2
    exit 1
  fi
fi

log=${INSTALL_DEPS_LOG:-$(cd "$(dirname "$0")/.." && pwd)/target/install-deps.log}
mkdir -p "$(dirname "$log")"
echo "install-deps: installing ${packages[*]} with apt-get for ${missing_cmds[*]}, which the tests use for real; log: $log"

started=$SECONDS
if ! {
  "${sudo[@]}" apt-get update &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y --no-install-recommends "${packages[@]}"
} </dev/null >"$log" 2>&1; then
  echo "install-deps: apt-get failed; its output (all of it in $log):" >&2
  tail -n 40 "$log" >&2
  exit 1
fi

still_missing=()
for ((i = 0; i < ${#required[@]}; i += 2)); do
  have "${required[i]}" || still_missing+=("${required[i]}")
done
if ((${#still_missing[@]} > 0)); then
  echo "install-deps: still missing after install: ${still_missing[*]} (apt-get's output: $log)" >&2
  exit 1
fi
echo "install-deps: done in $((SECONDS - started)) s"
