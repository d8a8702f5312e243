#!/usr/bin/env bash
# install_mvda.sh: the one set-up command of metric video depth anything.
#
# Installs the Python dependencies into the ACTIVE Python environment (torch, this project in
# editable mode, the 3D viewer's open3d), links Video-Depth-Anything/video_metric_convert.py, and
# downloads the default checkpoints from the Hugging Face hub into the folders the original tool
# used. Running it twice changes nothing. Run `bash install_mvda.sh --help` for the options.
set -euo pipefail

PROG="install_mvda.sh"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TORCH_SPEC="torch==2.13.0"

usage() {
    cat <<'EOF'
usage: bash install_mvda.sh [options]

Set up metric video depth anything in the active Python environment (activate a venv or conda
environment first if you want one):
  1. pip install torch==2.13.0 (only when torch is not importable; on Linux x86_64 PyPI serves a
     CUDA build), then `pip install -e .` of this folder (plus the test tools with --dev), and the
     3D viewer's open3d (open3d-cpu on Linux x86_64, open3d elsewhere; Debian's libusb-1.0-0 libegl1 libgl1 too);
     with --dev on Debian/Ubuntu, also the Debian packages the tests need (run as root, or it tells
     you what to install): libusb-1.0-0 libegl1 libgl1 xvfb xdotool imagemagick libvulkan1
     mesa-vulkan-drivers;
  2. Video-Depth-Anything/video_metric_convert.py -> ../video_metric_convert.py (a link);
  3. the checkpoints, from the Hugging Face hub:
       Video-Depth-Anything/checkpoints/video_depth_anything_<encoder>.pth
       Video-Depth-Anything/checkpoints/metric_video_depth_anything_<encoder>.pth   (--vda_metric)
       Depth-Anything-V2/metric_depth/checkpoints/depth_anything_v2_metric_<model>_<encoder>.pth
     Files already there are kept. When the hub cannot be reached, the missing files are listed
     with their Hugging Face repo and where to put them by hand, and the script exits with 3.

options:
  --encoders LIST          Video-Depth-Anything encoders to fetch: vits,vitb,vitl (default: vitl)
  --vda_metric             also fetch the Metric-Video-Depth-Anything checkpoints of --encoders
  --metric_encoders LIST   Depth-Anything-V2 metric encoders: vits,vitb,vitl (default: vitl)
  --metric_models LIST     hypersim (indoor, 20 m) and/or vkitti (outdoor, 80 m) (default: hypersim)
  --moge LIST              MoGe-2 sizes to fetch (field of view, python -m mvda.fov): vits,vitb,vitl
                           (Ruicheng/moge-2-<size>-normal -> MoGe/checkpoints/moge-2-<size>-normal/model.pt;
                           default: none)
  --no-weights             skip the checkpoint download
  --weights-only           only the checkpoint download (skip step 1)
  --dev                    also install the test tools (pytest, psutil, scikit-image, ray; the Debian packages above)
  --ray                    also install Ray (the [ray] extra) for many videos on several GPUs or machines:
                           video_metric_convert.py --ray local|auto|ADDRESS (run it on every node)
  -h, --help               show this help

environment: PYTHON (interpreter to use; default: python, else python3), HF_HOME / HF_ENDPOINT /
HF_HUB_OFFLINE (as huggingface_hub).

examples:
  bash install_mvda.sh                                   # default models, for the README's job
  bash install_mvda.sh --encoders vits,vitl --metric_models hypersim,vkitti --vda_metric
  bash install_mvda.sh --moge vits          # MoGe-2 for python -m mvda.fov
  bash install_mvda.sh --ray                # on each node of a Ray cluster (video_metric_convert.py --ray)
  bash install_mvda.sh --no-weights --dev && python -m pytest -q       # the test set-up
EOF
}

say() { printf '%s: %s\n' "$PROG" "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit "${2:-2}"; }

# --- options ---------------------------------------------------------------------------------------
ENCODERS="vitl"
METRIC_ENCODERS="vitl"
METRIC_MODELS="hypersim"
VDA_METRIC=0
MOGE=""
WEIGHTS=1
PACKAGES=1
DEV=0
RAY=0

need_value() { [[ $# -ge 2 && -n "$2" && "$2" != --* ]] || die "$1 needs a value; see --help"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --encoders) need_value "$@"; ENCODERS="$2"; shift 2 ;;
        --encoders=*) ENCODERS="${1#*=}"; shift ;;
        --metric_encoders) need_value "$@"; METRIC_ENCODERS="$2"; shift 2 ;;
        --metric_encoders=*) METRIC_ENCODERS="${1#*=}"; shift ;;
        --metric_models) need_value "$@"; METRIC_MODELS="$2"; shift 2 ;;
        --metric_models=*) METRIC_MODELS="${1#*=}"; shift ;;
        --vda_metric) VDA_METRIC=1; shift ;;
        --moge) need_value "$@"; MOGE="$2"; shift 2 ;;
        --moge=*) MOGE="${1#*=}"; shift ;;
        --no-weights|--no_weights) WEIGHTS=0; shift ;;
        --weights-only|--weights_only) PACKAGES=0; shift ;;
        --dev) DEV=1; shift ;;
        --ray) RAY=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1'; see --help" ;;
    esac
done

check_list() {  # check_list FLAG VALUE ALLOWED...
    local flag="$1" value="$2" item ok allowed
    shift 2
    [[ -n "$value" ]] || die "$flag needs a value; see --help"
    IFS=',' read -r -a items <<<"$value"
    for item in "${items[@]}"; do
        ok=0
        for allowed in "$@"; do [[ "$item" == "$allowed" ]] && ok=1; done
        [[ $ok == 1 ]] || die "$flag: unknown value '$item'; use a comma-separated list of: $*"
    done
}
check_list --encoders "$ENCODERS" vits vitb vitl
check_list --metric_encoders "$METRIC_ENCODERS" vits vitb vitl
check_list --metric_models "$METRIC_MODELS" hypersim vkitti
[[ -z "$MOGE" ]] || check_list --moge "$MOGE" vits vitb vitl
[[ $WEIGHTS == 1 || $PACKAGES == 1 ]] || die "--no-weights and --weights-only together leave nothing to do"

PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
    PY="$(command -v python || command -v python3 || true)"
    [[ -n "$PY" ]] || die "no python or python3 on PATH; install Python 3.10+ or set PYTHON"
fi
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || die "$PY is Python $("$PY" -c 'import sys; print(sys.version.split()[0])'); 3.10 or newer is needed"

pip_install() { "$PY" -m pip install --disable-pip-version-check "$@"; }

# --- 1. packages -----------------------------------------------------------------------------------
# Debian packages the tests need (--dev): Open3D's shared libraries (libusb, EGL, GL), a virtual X
# server and the tools that drive and photograph the viewer window (tests/test_viewer.py), and Vulkan
# with Mesa's drivers for Open3D's Filament renderer.
TEST_DEB_PACKAGES=(libusb-1.0-0 libegl1 libgl1 xvfb xdotool imagemagick libvulkan1 mesa-vulkan-drivers)

deb_installed() {  # deb_installed PACKAGE: true when dpkg lists PACKAGE as installed
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

install_test_deb_packages() {
    if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
        warn "no dpkg-query/apt-get here: for the viewer tests install your system's equivalents of" \
             "${TEST_DEB_PACKAGES[*]}"
        return 0
    fi
    local pkg missing=()
    for pkg in "${TEST_DEB_PACKAGES[@]}"; do
        deb_installed "$pkg" || missing+=("$pkg")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        say "the Debian packages of the tests are already installed: kept"
        return 0
    fi
    if [[ "$(id -u)" != 0 ]]; then
        warn "not root, so the Debian packages of the tests were not installed; the viewer tests need" \
             "them: sudo apt-get install ${missing[*]}"
        return 0
    fi
    say "installing Debian packages for the tests: ${missing[*]}"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
           && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                  "${missing[@]}" >/dev/null; }; then
        warn "apt-get could not install ${missing[*]}; the viewer tests will fail without them"
    fi
}

install_viewer_libs() {
    # open3d's Linux wheels link libusb-1.0.so.0, libEGL.so.1 and libGL.so.1 (Debian/Ubuntu packages
    # libusb-1.0-0, libegl1, libgl1), which a minimal system lacks.
    [[ "$(uname -s)" == Linux ]] || return 0
    local pair lib pkg missing=()
    for pair in "libusb-1\.0\.so\.0 libusb-1.0-0" "libEGL\.so\.1 libegl1" "libGL\.so\.1 libgl1"; do
        read -r lib pkg <<<"$pair"
        ldconfig -p 2>/dev/null | grep -q "$lib" || missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        say "installing Debian packages needed by open3d (the 3D viewer): ${missing[*]}"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
                >/dev/null 2>&1; then
            DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
                >/dev/null || warn "could not install ${missing[*]}; the 3D viewer may not start"
        fi
    else
        warn "the 3D viewer (open3d) needs ${missing[*]} (Debian/Ubuntu package names): install them with" \
             "'sudo apt-get install ${missing[*]}' or your system's package manager"
    fi
}

installed() {  # installed DIST...: true when one of the distributions is installed
    "$PY" - "$@" <<'PYEOF'
import importlib.metadata as md, sys
for name in sys.argv[1:]:
    try:
        md.version(name)
    except md.PackageNotFoundError:
        continue
    sys.exit(0)
sys.exit(1)
PYEOF
}

install_packages() {
    if "$PY" -c 'import torch' >/dev/null 2>&1; then
        say "torch $("$PY" -c 'import torch; print(torch.__version__)') is already installed: kept"
    else
        say "installing $TORCH_SPEC"
        pip_install "$TORCH_SPEC"
    fi
    local target="$REPO" extras=()
    if [[ $DEV == 1 ]]; then
        extras+=(test)
        install_test_deb_packages  # first, so that install_viewer_libs finds its libraries in place
    fi
    [[ $RAY == 1 ]] && extras+=(ray)
    if [[ ${#extras[@]} -gt 0 ]]; then
        target="$REPO[$(IFS=,; echo "${extras[*]}")]"
    fi
    say "installing this project (pip install -e '$target')"
    pip_install --quiet -e "$target"

    install_viewer_libs
    local viewer="open3d"
    [[ "$(uname -s)/$(uname -m)" == Linux/x86_64 ]] && viewer="open3d-cpu"
    if installed open3d-cpu open3d; then
        say "open3d is already installed: kept"
    else
        say "installing $viewer (the 3D viewer)"
        pip_install --quiet "$viewer" \
            || warn "pip could not install $viewer for this Python; everything but 3d_view_depthfile.py works"
    fi
}

# --- 2. link ---------------------------------------------------------------------------------------
link_convert_script() {
    local link="$REPO/Video-Depth-Anything/video_metric_convert.py"
    if [[ -e "$link" || -L "$link" ]]; then
        return 0
    fi
    mkdir -p "$REPO/Video-Depth-Anything"
    ln -s ../video_metric_convert.py "$link"
    say "linked Video-Depth-Anything/video_metric_convert.py -> ../video_metric_convert.py"
}

# --- 3. checkpoints --------------------------------------------------------------------------------
download_weights() {
    "$PY" - "$REPO" "$ENCODERS" "$VDA_METRIC" "$METRIC_ENCODERS" "$METRIC_MODELS" "$MOGE" <<'PYEOF'
"""Fetch the selected checkpoints; on failure list what is missing and how to get it by hand."""
import os
import shutil
import sys
from pathlib import Path

PROG = "install_mvda.sh"
repo = Path(sys.argv[1])
encoders = sys.argv[2].split(",")
vda_metric = sys.argv[3] == "1"
metric_encoders = sys.argv[4].split(",")
metric_models = sys.argv[5].split(",")
moge = [m for m in sys.argv[6].split(",") if m]

try:
    from depth_anything_v2.checkpoint import CheckpointError, download_checkpoint, hub_unreachable
    from depth_anything_v2.hub import DAV2_METRIC_CHECKPOINTS
    from moge2.hub import MOGE2_CHECKPOINTS
    from video_depth_anything.hub import VDA_CHECKPOINTS
except ImportError as exc:
    print(f"{PROG}: error: cannot import the project ({exc}); run bash install_mvda.sh without "
          "--weights-only first", file=sys.stderr)
    sys.exit(2)

# Where the files go, relative to this checkout (the folders of the original tool).
VDA_DIR = repo / "Video-Depth-Anything" / "checkpoints"
DAV2_DIR = repo / "Depth-Anything-V2" / "metric_depth" / "checkpoints"
wanted = [(VDA_CHECKPOINTS[(e, False)], VDA_DIR) for e in encoders]
if vda_metric:
    wanted += [(VDA_CHECKPOINTS[(e, True)], VDA_DIR) for e in encoders]
wanted += [(DAV2_METRIC_CHECKPOINTS[(m, e)], DAV2_DIR) for m in metric_models for e in metric_encoders]
for size in moge:  # one folder per release: every MoGe-2 repository names its file model.pt
    spec = MOGE2_CHECKPOINTS[f"{size}-normal"]
    wanted.append((spec, repo / "MoGe" / "checkpoints" / spec.local_dir.name))


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def first_missing_dir(folder: Path) -> Path | None:
    """The outermost folder on the way to ``folder`` that does not exist yet (None if it exists)."""
    top = None
    for candidate in [folder, *folder.parents]:
        if candidate.exists():
            break
        top = candidate
    return top


def clean_partial(folder: Path, filename: str, created: Path | None) -> None:
    """Remove what a failed download left: huggingface_hub's lock/.incomplete files and the folders
    this download created, so that nothing half-written stays behind."""
    cache = folder / ".cache" / "huggingface" / "download"
    for leftover in cache.glob(f"{filename}*"):
        leftover.unlink(missing_ok=True)
    if created is not None and created.is_dir():
        real = [p for p in created.rglob("*") if p.is_file() and ".cache" not in p.relative_to(created).parts]
        if not real:
            shutil.rmtree(created, ignore_errors=True)


present, missing = [], []
for spec, folder in wanted:
    target = folder / spec.filename
    (present if target.is_file() and target.stat().st_size > 0 else missing).append((spec, folder))
for spec, folder in present:
    print(f"{PROG}: {(folder / spec.filename).relative_to(repo)} is already there: kept")

# Offline mode only looks at local files (fast); otherwise check the hub once instead of letting
# every file go through huggingface_hub's retries.
reason = hub_unreachable() if missing and not offline() else None
failed = []
for spec, folder in missing:
    if reason is not None:
        failed.append((spec, folder))
        continue
    created = first_missing_dir(folder)
    if offline():
        print(f"{PROG}: HF_HUB_OFFLINE: looking for {spec.filename} in local files only", flush=True)
    else:
        print(f"{PROG}: downloading {spec.filename} from {spec.repo_id} ...", flush=True)
    try:
        download_checkpoint(spec, folder)
    except CheckpointError as exc:
        clean_partial(folder, spec.filename, created)
        if not offline():
            cause = exc.__cause__
            print(f"{PROG}: warning: {spec.filename}: {type(cause).__name__ if cause else exc}", file=sys.stderr)
        failed.append((spec, folder))
    except KeyboardInterrupt:
        clean_partial(folder, spec.filename, created)
        print(f"{PROG}: interrupted; {spec.filename} was not saved", file=sys.stderr)
        sys.exit(130)
    else:
        print(f"{PROG}: saved {(folder / spec.filename).relative_to(repo)}")

if failed:
    if reason is None:
        reason = "HF_HUB_OFFLINE is set" if offline() else "download failed"
    lines = [f"{PROG}: error: {len(failed)} checkpoint(s) missing ({reason}).",
             "Download them by hand and put them here (then run this script again, or add --no-weights):"]
    for spec, folder in failed:
        lines.append(f"  {(folder / spec.filename).relative_to(repo)}")
        lines.append(f"      Hugging Face repo {spec.repo_id}, file {spec.filename}")
        lines.append(f"      {spec.url}")
    print("\n".join(lines), file=sys.stderr)
    sys.exit(3)
print(f"{PROG}: checkpoints ready")
PYEOF
}

# --- main ------------------------------------------------------------------------------------------
if [[ $PACKAGES == 1 ]]; then
    install_packages
fi
link_convert_script
if [[ $WEIGHTS == 1 ]]; then
    download_weights || exit $?
else
    say "--no-weights: checkpoints not downloaded"
fi
say "done"
