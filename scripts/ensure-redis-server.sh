#!/usr/bin/env bash
# Makes sure `redis-server` is on the PATH before `npm test` and `npm run dev`, which start their own.
# On Debian/Ubuntu it installs the package when it is missing (as root, or through sudo without a
# password prompt); elsewhere it says what to install. Nothing happens when redis-server is there, or
# when REDIS_ADDRESS points `npm run dev` at a Redis that already runs.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then exit 0; fi
if [ "${1:-}" = "dev" ] && [ -n "${REDIS_ADDRESS:-}" ]; then exit 0; fi

if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    sudo=""
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    sudo="unavailable"
  fi
  if [ "$sudo" != "unavailable" ]; then
    echo "redis-server is missing: installing it from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq redis-server >/dev/null
    # The package starts a system service on 6379 where an init system runs; we never use it.
    command -v redis-server >/dev/null 2>&1 && exit 0
  fi
fi

echo "redis-server is not installed. Install it (Debian/Ubuntu: sudo apt-get install redis-server;" \
  "macOS: brew install redis), or for npm run dev set REDIS_ADDRESS to a running Redis." >&2
exit 1
