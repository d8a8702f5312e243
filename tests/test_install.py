"""install_mvda.sh: syntax, flags, the checkpoint step without a reachable hub, and the Debian step.

The real pip step is not run here (it changes the environment and is exercised by .ci/run itself);
the Debian step of ``--dev`` runs with fake ``apt-get``, ``dpkg-query``, ``id`` and ``ldconfig``
commands and a Python wrapper that only records ``-m pip`` calls. The script runs as a copy in
tmp_path, so the "repository" it fills is tmp_path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "install_mvda.sh"
VDA_L = "Video-Depth-Anything/checkpoints/video_depth_anything_vitl.pth"
DAV2_HL = "Depth-Anything-V2/metric_depth/checkpoints/depth_anything_v2_metric_hypersim_vitl.pth"


def run(args: list[str], cwd: Path, **env_extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(PYTHON=sys.executable, HF_HOME=str(cwd / "hf_home"))
    env.update(env_extra)
    return subprocess.run(["bash", str(cwd / "install_mvda.sh"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    shutil.copy(SCRIPT, tmp_path / "install_mvda.sh")
    return tmp_path


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink())


def test_script_syntax_and_mode():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    assert os.access(SCRIPT, os.X_OK)
    assert SCRIPT.read_text().splitlines()[:1] == ["#!/usr/bin/env bash"]
    assert "set -euo pipefail" in SCRIPT.read_text()


def test_help(repo):
    result = run(["--help"], repo)
    assert result.returncode == 0
    for flag in ("--encoders", "--metric_encoders", "--metric_models", "--vda_metric", "--no-weights",
                 "--dev", "--ray", "torch==2.13.0"):
        assert flag in result.stdout
    assert files_under(repo) == ["install_mvda.sh"]  # --help does nothing else


@pytest.mark.parametrize("args, message", [
    (["--encoders", "vitx"], "--encoders: unknown value 'vitx'"),
    (["--metric_models", "hypersim,kitti"], "--metric_models: unknown value 'kitti'"),
    (["--encoders"], "--encoders needs a value"),
    (["--frobnicate"], "unknown option '--frobnicate'"),
])
def test_bad_flags(repo, args, message):
    result = run(args, repo)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"install_mvda.sh: error: {message}"), result.stderr
    assert files_under(repo) == ["install_mvda.sh"]  # validated before anything is installed


def check_missing_report(stderr: str, expected: list[tuple[str, str]]) -> None:
    assert "Traceback" not in stderr
    assert f"{len(expected)} checkpoint(s) missing" in stderr
    assert "Download them by hand and put them here" in stderr
    for path, repo_id in expected:
        name = path.rsplit("/", 1)[1]
        assert f"  {path}\n" in stderr
        assert f"Hugging Face repo {repo_id}, file {name}" in stderr
        assert f"https://huggingface.co/{repo_id}/resolve/main/{name}" in stderr


def test_offline_reports_missing_files_and_writes_nothing(repo):
    result = run(["--weights-only"], repo, HF_HUB_OFFLINE="1")
    assert result.returncode == 3, result.stderr
    assert "(HF_HUB_OFFLINE is set)" in result.stderr
    check_missing_report(result.stderr, [
        (VDA_L, "depth-anything/Video-Depth-Anything-Large"),
        (DAV2_HL, "depth-anything/Depth-Anything-V2-Metric-Hypersim-Large"),
    ])
    # Nothing half-written: no checkpoint folders, no lock or .incomplete files; only the link.
    assert files_under(repo) == ["Video-Depth-Anything/video_metric_convert.py", "install_mvda.sh"]
    link = repo / "Video-Depth-Anything" / "video_metric_convert.py"
    assert link.is_symlink() and os.readlink(link) == "../video_metric_convert.py"


def test_unreachable_hub_lists_every_selected_file(repo):
    result = run(["--weights-only", "--encoders", "vits,vitl", "--vda_metric",
                  "--metric_encoders", "vitb", "--metric_models", "hypersim,vkitti"],
                 repo, HF_ENDPOINT="http://127.0.0.1:9")  # nothing listens on port 9
    assert result.returncode == 3, result.stderr
    assert "cannot reach http://127.0.0.1:9" in result.stderr
    check_missing_report(result.stderr, [
        ("Video-Depth-Anything/checkpoints/video_depth_anything_vits.pth",
         "depth-anything/Video-Depth-Anything-Small"),
        (VDA_L, "depth-anything/Video-Depth-Anything-Large"),
        ("Video-Depth-Anything/checkpoints/metric_video_depth_anything_vits.pth",
         "depth-anything/Metric-Video-Depth-Anything-Small"),
        ("Video-Depth-Anything/checkpoints/metric_video_depth_anything_vitl.pth",
         "depth-anything/Metric-Video-Depth-Anything-Large"),
        ("Depth-Anything-V2/metric_depth/checkpoints/depth_anything_v2_metric_hypersim_vitb.pth",
         "depth-anything/Depth-Anything-V2-Metric-Hypersim-Base"),
        ("Depth-Anything-V2/metric_depth/checkpoints/depth_anything_v2_metric_vkitti_vitb.pth",
         "depth-anything/Depth-Anything-V2-Metric-VKITTI-Base"),
    ])
    assert files_under(repo) == ["Video-Depth-Anything/video_metric_convert.py", "install_mvda.sh"]


def test_present_files_are_kept_and_a_second_run_changes_nothing(repo):
    for rel in (VDA_L, DAV2_HL):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_bytes(b"placed by hand")
    first = run(["--weights-only"], repo, HF_HUB_OFFLINE="1")
    assert first.returncode == 0, first.stderr
    assert f"{VDA_L} is already there: kept" in first.stdout
    assert f"{DAV2_HL} is already there: kept" in first.stdout
    before = {p: (repo / p).read_bytes() if not (repo / p).is_symlink() else os.readlink(repo / p)
              for p in files_under(repo)}
    second = run(["--weights-only"], repo, HF_HUB_OFFLINE="1")
    assert second.returncode == 0
    assert "linked" in first.stdout and "linked" not in second.stdout  # the link is made once
    after = {p: (repo / p).read_bytes() if not (repo / p).is_symlink() else os.readlink(repo / p)
             for p in files_under(repo)}
    assert after == before


def test_no_weights_and_weights_only_together(repo):
    result = run(["--no-weights", "--weights-only"], repo)
    assert result.returncode == 2 and "leave nothing to do" in result.stderr


def test_repository_link_is_committed():
    link = SCRIPT.parent / "Video-Depth-Anything" / "video_metric_convert.py"
    assert link.is_symlink() and os.readlink(link) == "../video_metric_convert.py"


def readme_commands() -> list[str]:
    """The one-line commands in the README's fenced bash blocks."""
    text = (SCRIPT.parent / "README.md").read_text()
    blocks = text.split("```bash\n")[1:]
    return [line for block in blocks for line in block.split("```", 1)[0].splitlines() if line.strip()]


def test_ci_runs_exactly_the_readme_test_command():
    commands = readme_commands()
    test_command = "bash install_mvda.sh --no-weights --dev && python -m pytest -q"
    assert test_command in commands
    ci = (SCRIPT.parent / ".ci" / "run").read_text().splitlines()
    assert test_command in ci
    assert os.access(SCRIPT.parent / ".ci" / "run", os.X_OK)


def test_readme_main_job_uses_the_bundled_clip():
    (main_job,) = [c for c in readme_commands() if c.startswith("bash install_mvda.sh &&")]
    clip = main_job.split("--input_video ", 1)[1].split()[0]
    assert (SCRIPT.parent / clip).is_file() and (SCRIPT.parent / clip).stat().st_size < 2_000_000


# --------------------------------------------------------------------------------------------------
# --dev: the tests' Debian packages (fake apt-get / dpkg-query / id / ldconfig, recorded pip)
# --------------------------------------------------------------------------------------------------
VIEWER_LIBS = ["libusb-1.0.so.0", "libEGL.so.1", "libGL.so.1"]  # linked by open3d's Linux wheels
TEST_DEBS = ["libusb-1.0-0", "libegl1", "libgl1", "xvfb", "xdotool", "imagemagick", "libvulkan1",
             "mesa-vulkan-drivers"]
FAKES = {
    # dpkg-query -W -f='${Status}' PACKAGE: "installed" when PACKAGE is a line of $FAKE_DPKG_DB
    "dpkg-query": 'pkg="${@: -1}"\n'
                  'if grep -qx "$pkg" "$FAKE_DPKG_DB"; then printf "install ok installed"; exit 0; fi\n'
                  'echo "dpkg-query: no packages found matching $pkg" >&2; exit 1\n',
    # apt-get: record the call; "install" adds its package arguments to $FAKE_DPKG_DB
    "apt-get": 'echo "$*" >> "$FAKE_APT_LOG"\n'
               'seen=0; for a in "$@"; do\n'
               '  if [[ $a == install ]]; then seen=1; elif [[ $seen == 1 && $a != -* ]]; then\n'
               '    echo "$a" >> "$FAKE_DPKG_DB"; fi\n'
               'done\n',
    "id": 'echo "$FAKE_UID"\n',
    # ldconfig -p: the shared libraries listed in $FAKE_LDCONFIG
    "ldconfig": 'cat "$FAKE_LDCONFIG"\n',
}


@pytest.fixture
def fake_system(tmp_path_factory) -> dict[str, str]:
    """Environment for run(): fake Debian tools first on PATH; PYTHON records ``-m pip`` calls and
    answers the torch check, everything else goes to the real interpreter."""
    root = tmp_path_factory.mktemp("fake_system")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for name, body in FAKES.items():
        (bin_dir / name).write_text("#!/usr/bin/env bash\n" + body)
        (bin_dir / name).chmod(0o755)
    python = root / "python-recording-pip"
    python.write_text('#!/usr/bin/env bash\n'
                      'if [[ "$1" == -m && "$2" == pip ]]; then echo "$*" >> "$FAKE_PIP_LOG"; exit 0; fi\n'
                      # torch is "installed" without the seconds its import takes
                      'if [[ "$1" == -c && "$2" == "import torch"* ]]; then echo 2.13.0; exit 0; fi\n'
                      f'exec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    state = root / "state"
    state.mkdir()
    for name in ("dpkg_db", "apt.log", "pip.log"):
        (state / name).write_text("")
    (state / "ldconfig").write_text("".join(f"\t{lib} (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/{lib}\n"
                                            for lib in VIEWER_LIBS))
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHON": str(python),
            "FAKE_DPKG_DB": str(state / "dpkg_db"), "FAKE_APT_LOG": str(state / "apt.log"),
            "FAKE_PIP_LOG": str(state / "pip.log"), "FAKE_UID": "0", "FAKE_LDCONFIG": str(state / "ldconfig")}


def read_lines(path: str) -> list[str]:
    return Path(path).read_text().splitlines()


def test_dev_installs_the_missing_test_debian_packages_once_as_root(repo, fake_system):
    Path(fake_system["FAKE_DPKG_DB"]).write_text("libusb-1.0-0\nxdotool\n")  # already installed
    first = run(["--no-weights", "--dev"], repo, **fake_system)
    assert first.returncode == 0, first.stderr
    missing = [p for p in TEST_DEBS if p not in ("libusb-1.0-0", "xdotool")]
    assert read_lines(fake_system["FAKE_APT_LOG"]) == [
        "update -qq", "install -y -qq --no-install-recommends " + " ".join(missing)]
    assert f"installing Debian packages for the tests: {' '.join(missing)}" in first.stdout
    assert sorted(read_lines(fake_system["FAKE_DPKG_DB"])) == sorted(TEST_DEBS)
    assert any(line.endswith(f"-e {repo}[test]") for line in read_lines(fake_system["FAKE_PIP_LOG"]))

    second = run(["--no-weights", "--dev"], repo, **fake_system)  # idempotent: installs nothing
    assert second.returncode == 0, second.stderr
    assert len(read_lines(fake_system["FAKE_APT_LOG"])) == 2
    assert "the Debian packages of the tests are already installed: kept" in second.stdout


def test_dev_as_a_user_only_says_what_to_install(repo, fake_system):
    result = run(["--no-weights", "--dev"], repo, **dict(fake_system, FAKE_UID="1000"))
    assert result.returncode == 0, result.stderr
    assert read_lines(fake_system["FAKE_APT_LOG"]) == []
    (hint,) = [line for line in result.stderr.splitlines() if "Debian packages" in line]
    assert hint.startswith("install_mvda.sh: warning: not root")
    assert hint.endswith("sudo apt-get install " + " ".join(TEST_DEBS))


def test_without_dev_no_test_debian_packages(repo, fake_system):
    result = run(["--no-weights"], repo, **fake_system)
    assert result.returncode == 0, result.stderr
    assert read_lines(fake_system["FAKE_APT_LOG"]) == []
    assert "Debian packages" not in result.stdout + result.stderr
    assert any(line.endswith(f"-e {repo}") for line in read_lines(fake_system["FAKE_PIP_LOG"]))


@pytest.mark.parametrize("flags, target", [(["--ray"], "[ray]"), (["--dev", "--ray"], "[test,ray]")])
def test_ray_installs_the_ray_extra(repo, fake_system, flags, target):
    result = run(["--no-weights", *flags], repo, **fake_system)
    assert result.returncode == 0, result.stderr
    assert any(line.endswith(f"-e {repo}{target}") for line in read_lines(fake_system["FAKE_PIP_LOG"]))


def test_without_dev_installs_missing_viewer_libraries_as_root(repo, fake_system):
    Path(fake_system["FAKE_LDCONFIG"]).write_text(
        "\tlibusb-1.0.so.0 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libusb-1.0.so.0\n")
    result = run(["--no-weights"], repo, **fake_system)
    assert result.returncode == 0, result.stderr
    assert read_lines(fake_system["FAKE_APT_LOG"]) == ["install -y -qq --no-install-recommends libegl1 libgl1"]
    assert "installing Debian packages needed by open3d (the 3D viewer): libegl1 libgl1" in result.stdout


def test_without_dev_names_missing_viewer_libraries_to_a_user(repo, fake_system):
    Path(fake_system["FAKE_LDCONFIG"]).write_text("")
    result = run(["--no-weights"], repo, **dict(fake_system, FAKE_UID="1000"))
    assert result.returncode == 0, result.stderr
    assert read_lines(fake_system["FAKE_APT_LOG"]) == []
    (hint,) = [line for line in result.stderr.splitlines() if "open3d" in line]
    assert "sudo apt-get install libusb-1.0-0 libegl1 libgl1" in hint


def test_moge_checkpoints_are_listed_with_their_own_folders(repo):
    result = run(["--weights-only", "--moge", "vits,vitl"], repo, HF_HUB_OFFLINE="1")
    assert result.returncode == 3, result.stderr
    check_missing_report(result.stderr, [
        ("MoGe/checkpoints/moge-2-vits-normal/model.pt", "Ruicheng/moge-2-vits-normal"),
        ("MoGe/checkpoints/moge-2-vitl-normal/model.pt", "Ruicheng/moge-2-vitl-normal"),
        (VDA_L, "depth-anything/Video-Depth-Anything-Large"),
        (DAV2_HL, "depth-anything/Depth-Anything-V2-Metric-Hypersim-Large"),
    ])
    assert files_under(repo) == ["Video-Depth-Anything/video_metric_convert.py", "install_mvda.sh"]
    bad = run(["--moge", "vitx"], repo)
    assert bad.returncode != 0 and "--moge: unknown value 'vitx'" in bad.stderr
