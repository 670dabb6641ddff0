#!/usr/bin/env bash
# Set-up for the ARM test (tests/arm/test_arm.py); `make arm-tools` runs it.
#
#  1. Debian packages qemu-user-static, g++-aarch64-linux-gnu and g++: installed
#     when missing (needs root; without root it prints SKIPPED and exits 0, and
#     the test then reports itself skipped).
#  2. The aarch64 executorch wheel pinned in wheel-aarch64.txt, from PyPI. Only
#     its runtime libraries and headers are unpacked; torch is never needed on
#     the ARM side.
#  3. A newer QEMU, for the i8mm CPUs (neoverse-v1, neoverse-n2) that
#     bookworm's QEMU 7.2 does not model: qemu-user from <codename>-backports,
#     fetched by package name with a private apt state and unpacked, not
#     installed, so the system's apt sources and packages stay as they were.
#  4. The runner (runner.cpp), compiled for aarch64 against step 2 and for
#     x86_64 against the venv's executorch.
#
# Everything it writes goes to tests/arm/build/ (git-ignored). It is safe to run
# again: each step is skipped when its result is already there and up to date.
set -euo pipefail
cd "$(dirname "$0")/../.."

PY=${PY:-.venv/bin/python}
BUILD=tests/arm/build
ET_ARM=$BUILD/aarch64/executorch
QEMU_NEW=$BUILD/qemu/qemu-aarch64
BIN=$BUILD/bin

say() { echo "arm-tools: $*"; }
mkdir -p "$BUILD"

# --- 1. Debian packages -------------------------------------------------------
missing=()
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
command -v aarch64-linux-gnu-g++ >/dev/null || missing+=(g++-aarch64-linux-gnu)
command -v g++ >/dev/null || missing+=(g++)
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        say "SKIPPED: the Debian packages ${missing[*]} are missing, and installing them needs root and apt-get."
        say "Install them (apt-get install ${missing[*]}), then run 'make arm-tools' again."
        say "Until then 'make test' reports the ARM test as skipped."
        exit 0
    fi
    say "installing ${missing[*]} (log: $BUILD/apt-install.log)"
    if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$BUILD/apt-install.log" 2>&1; then
        tail -20 "$BUILD/apt-install.log"
        say "FAILED to install ${missing[*]}"
        exit 1
    fi
fi

# --- 2. the aarch64 runtime from the pinned wheel -----------------------------
if [[ ! -f $ET_ARM/.done || tests/arm/wheel-aarch64.txt -nt $ET_ARM/.done ]]; then
    say "fetching the aarch64 executorch wheel"
    rm -rf "$BUILD/wheel" "$ET_ARM" "$ET_ARM.tmp" "$BUILD/aarch64/unpack"
    "$PY" -m pip download -q --no-deps --require-hashes --only-binary=:all: \
        --platform manylinux_2_28_aarch64 --python-version 3.11 --implementation cp --abi cp311 \
        -r tests/arm/wheel-aarch64.txt -d "$BUILD/wheel"
    "$PY" - "$BUILD/wheel" "$ET_ARM.tmp" <<'EOF'
import pathlib, sys, zipfile
wheel_dir, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
(wheel,) = wheel_dir.glob("executorch-*.whl")
with zipfile.ZipFile(wheel) as z:
    # The Python half of the wheel is useless without an aarch64 torch; keep the C++ runtime only.
    members = [m for m in z.namelist() if m.startswith(("executorch/lib/", "executorch/include/"))]
    for m in members:
        z.extract(m, dest.parent / "unpack")
(dest.parent / "unpack" / "executorch").rename(dest)
(dest.parent / "unpack").rmdir()
EOF
    mv "$ET_ARM.tmp" "$ET_ARM"
    touch "$ET_ARM/.done"
fi

# --- 3. a QEMU that models i8mm CPUs -------------------------------------------
fetch_newer_qemu() {
    [[ -r /etc/os-release ]] && command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || return 1
    local codename uri apt_dir keyring="" opts
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    # The mirror the system already uses, so nothing new is contacted.
    uri=$(apt-get indextargets --format '$(RELEASE) $(REPO_URI)' 'Identifier: Packages' \
          | awk -v r="$codename" '$1 == r { print $2; exit }')
    [[ -n $codename && -n $uri ]] || return 1
    apt_dir=$PWD/$BUILD/apt
    rm -rf "$apt_dir"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
    [[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] &&
        keyring="[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
    echo "deb ${keyring}${uri} ${codename}-backports main" >"$apt_dir/sources.list"
    opts=(-q -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
    # apt's download sandbox user cannot write into a root-owned work tree.
    [[ $(id -u) -eq 0 ]] && opts+=(-o APT::Sandbox::User=root)
    apt-get "${opts[@]}" update >"$apt_dir/update.log" 2>&1 || return 1
    (cd "$apt_dir/debs" && apt-get "${opts[@]}" download "qemu-user/${codename}-backports") \
        >"$apt_dir/download.log" 2>&1 || return 1
    mkdir -p "$(dirname "$QEMU_NEW")"
    dpkg-deb --fsys-tarfile "$apt_dir"/debs/qemu-user_*.deb | tar -xO ./usr/bin/qemu-aarch64 >"$QEMU_NEW.tmp" || return 1
    chmod +x "$QEMU_NEW.tmp"
    [[ $("$QEMU_NEW.tmp" -cpu help) == *neoverse-v1* ]] || return 1
    mv "$QEMU_NEW.tmp" "$QEMU_NEW" || return 1
    rm -rf "$apt_dir/debs"  # 60 MB; the binary is all we keep
}
if [[ ! -x $QEMU_NEW ]]; then
    mkdir -p "$(dirname "$QEMU_NEW")"
    # grep -q would close the pipe early, and pipefail would count that as a failure.
    if [[ $(qemu-aarch64-static -cpu help) == *neoverse-v1* ]]; then
        ln -sf "$(command -v qemu-aarch64-static)" "$QEMU_NEW"
    else
        say "fetching a newer qemu-aarch64 from Debian backports, for the i8mm CPUs"
        if ! fetch_newer_qemu; then
            rm -f "$QEMU_NEW.tmp"
            say "WARNING: no QEMU that models neoverse-v1 could be had from Debian's packages;"
            say "the ARM test reports the i8mm CPUs as not covered (a failure under CI=true)."
        fi
    fi
fi

# --- 4. the runner, for aarch64 and x86_64 ---------------------------------------
ET_X86=$("$PY" -c 'import importlib.util; print(importlib.util.find_spec("executorch").submodule_search_locations[0])')
ET_X86=$(realpath "$ET_X86")
x86_version=$("$PY" -c 'import importlib.metadata as m; print(m.version("executorch"))')
arm_version=$(sed -n 's/^executorch==\([^ ]*\).*/\1/p' tests/arm/wheel-aarch64.txt)
if [[ $x86_version != "$arm_version" ]]; then
    say "FAILED: the venv has executorch $x86_version but wheel-aarch64.txt pins $arm_version; make them agree."
    exit 1
fi

build_runner() {  # compiler, executorch package dir, output, runtime search path
    local cxx=$1 et=$2 out=$3 rpath=$4
    if [[ -x $out && $out -nt tests/arm/runner.cpp && $out -nt $et/lib/libexecutorch.so ]]; then
        return
    fi
    say "compiling $out"
    # The kernel and backend libraries only register themselves from static
    # initialisers, so --no-as-needed keeps them although nothing references them.
    # -Wno-deprecated-declarations: module.h warns about its own members.
    "$cxx" -std=c++17 -O2 -Wall -Wno-deprecated-declarations \
        -DC10_USING_CUSTOM_GENERATED_MACROS -DET_EVENT_TRACER_ENABLED -DET_USE_THREADPOOL \
        -I"$et/include" -I"$et/include/executorch/runtime/core/portable_type/c10" \
        tests/arm/runner.cpp -o "$out.tmp" -L"$et/lib" \
        -Wl,--no-as-needed -lexecutorch_backend_xnnpack -lexecutorch_kernels_optimized \
        -lexecutorch_kernels_quantized -Wl,--as-needed -lexecutorch_threadpool -lexecutorch \
        -Wl,--enable-new-dtags,-rpath,"$rpath"
    mv "$out.tmp" "$out"
}
mkdir -p "$BIN"
build_runner aarch64-linux-gnu-g++ "$ET_ARM" "$BIN/xnnquant_runner-aarch64" '$ORIGIN/../aarch64/executorch/lib'
build_runner g++ "$ET_X86" "$BIN/xnnquant_runner-x86_64" "$ET_X86/lib"

say "ready: executorch $arm_version runner for aarch64 and x86_64 in $BIN;" \
    "$(qemu-aarch64-static --version | head -1);" \
    "$([[ -x $QEMU_NEW ]] && "$QEMU_NEW" --version | head -1 || echo 'no newer QEMU')"
