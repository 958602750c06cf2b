#!/usr/bin/env bash
# Installs what vdvae needs beside Rust on Debian/Ubuntu: Mesa's Vulkan drivers,
# whose lavapipe runs the GPU kernels on the CPU when there is no GPU.
# `./setup.sh --mpi` also installs Open MPI and libclang, for data-parallel
# training across processes and machines (`cargo build --release --features mpi`).
# Runs apt-get through sudo only when not root (containers often have no sudo).
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

PACKAGES="mesa-vulkan-drivers"
for arg in "$@"; do
    case "$arg" in
        --mpi) PACKAGES="$PACKAGES openmpi-bin libopenmpi-dev libclang-dev" ;;
        *) echo "setup.sh: unknown option $arg (the one option is --mpi)" >&2; exit 2 ;;
    esac
done

$SUDO apt-get update
# shellcheck disable=SC2086 # the package list is meant to split
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $PACKAGES

if ! command -v cargo >/dev/null; then
    echo "setup.sh: the Vulkan driver is installed, but cargo is not on PATH: install Rust (https://rustup.rs)" >&2
    exit 1
fi
