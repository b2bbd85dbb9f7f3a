#!/usr/bin/env bash
# Makes a fresh machine ready for `npm start` / `npm test`: installs npm dependencies when missing and,
# on Debian/Ubuntu without a Vulkan loader or SwiftShader, the system packages `libvulkan1` and
# `chromium` (the loader, Chromium's SwiftShader CPU Vulkan driver, and the browser used by the
# end-to-end demo test). Idempotent: does nothing when everything is already there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need_pkgs=()
ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1' || need_pkgs+=(libvulkan1)
[ -e /usr/lib/chromium/vk_swiftshader_icd.json ] && command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${need_pkgs[*]} (Vulkan loader, SwiftShader, Chromium)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    echo "setup: installing ${need_pkgs[*]} with sudo"
    sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    echo "setup: missing ${need_pkgs[*]}: install them (Debian/Ubuntu: apt-get install -y libvulkan1 chromium)," >&2
    echo "setup: or a GPU driver with Vulkan support; continuing without them." >&2
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies"
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error; else npm install --no-audit --no-fund --loglevel=error; fi
fi
