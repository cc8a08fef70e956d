#!/usr/bin/env bash
# Makes sure wgpu finds a Vulkan driver on Linux: installs Mesa's software Vulkan driver
# (llvmpipe, package mesa-vulkan-drivers) and the Vulkan loader when no driver is present, and
# Mesa's OpenGL driver through EGL (for the GL-backend test) when it is missing.
# On macOS and Windows wgpu uses Metal or DX12 and nothing is installed.
set -euo pipefail

case "$(uname -s)" in
Linux) ;;
*)
    echo "setup: $(uname -s): wgpu uses the system's GPU API (Metal/DX12); nothing to install"
    exit 0
    ;;
esac

# A Vulkan driver = an ICD manifest in a standard place + the Vulkan loader library.
# (No pipelines here: with pipefail, `ls` on an empty glob or `grep -q` closing early would
# make a present driver look absent.)
have_driver() {
    local icd="" f
    for f in /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json /usr/local/share/vulkan/icd.d/*.json; do
        if [ -e "$f" ]; then icd="$f"; fi
    done
    [ -n "$icd" ] || return 1
    local libs
    libs="$(ldconfig -p 2>/dev/null || true)"
    [[ "$libs" == *libvulkan.so.1* ]]
}

# Mesa's OpenGL driver (EGL + llvmpipe), for the test of a context shared by threads on
# wgpu's GL backend (tests/gpu/threads.rs); nothing else uses it.
have_gl() {
    local libs
    libs="$(ldconfig -p 2>/dev/null || true)"
    [[ "$libs" == *libEGL_mesa.so.0* && "$libs" == *libEGL.so.1* ]]
}

missing=()
have_driver || missing+=(mesa-vulkan-drivers libvulkan1)
have_gl || missing+=(libegl1 libegl-mesa0 libgl1-mesa-dri)
if [ "${#missing[@]}" -eq 0 ]; then
    echo "setup: a Vulkan driver and Mesa's OpenGL driver are present"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: missing ${missing[*]}, and no apt-get to install them: install your" \
        "distribution's Mesa Vulkan and EGL drivers (Debian/Ubuntu: mesa-vulkan-drivers" \
        "libegl-mesa0) or a GPU driver" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "setup: installing Mesa's software drivers: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
have_driver || { echo "setup: mesa-vulkan-drivers installed, but no Vulkan driver is visible" >&2; exit 1; }
have_gl || { echo "setup: Mesa's EGL installed, but libEGL_mesa is not visible" >&2; exit 1; }
echo "setup: Mesa's software Vulkan and OpenGL drivers installed"
