#!/usr/bin/env bash
# Installs what vdvae needs beside Rust on Debian/Ubuntu: Mesa's Vulkan drivers,
# whose lavapipe runs the GPU kernels on the CPU when there is no GPU.
# Runs apt-get through sudo only when not root (containers often have no sudo).
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

$SUDO apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mesa-vulkan-drivers

if ! command -v cargo >/dev/null; then
    echo "setup.sh: the Vulkan driver is installed, but cargo is not on PATH: install Rust (https://rustup.rs)" >&2
    exit 1
fi
