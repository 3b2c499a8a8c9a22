#!/usr/bin/env bash
# Installs what l2pipe's build, demo and tests need on a fresh Debian/Ubuntu machine (as root):
# Bun 1.4.5, the JavaScript dependencies, and the system tools the tests drive.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v tc >/dev/null 2>&1 || need_apt+=(iproute2)
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
command -v socat >/dev/null 2>&1 || need_apt+=(socat)
command -v lz4 >/dev/null 2>&1 || need_apt+=(lz4)
command -v zstd >/dev/null 2>&1 || need_apt+=(zstd)
command -v setcap >/dev/null 2>&1 || need_apt+=(libcap2-bin)
command -v setpriv >/dev/null 2>&1 || need_apt+=(util-linux)
command -v strace >/dev/null 2>&1 || need_apt+=(strace)
ldconfig -p | grep -q 'liblz4.so.1 ' || need_apt+=(liblz4-1)
ldconfig -p | grep -q 'libzstd.so.1 ' || need_apt+=(libzstd1)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! command -v bun >/dev/null 2>&1 || [ "$(bun --version)" != "1.4.5" ]; then
  npm install -g bun@1.4.5 >/dev/null 2>&1
fi
bun install --frozen-lockfile >/dev/null
echo "setup done: bun $(bun --version)"
