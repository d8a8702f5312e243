"""Fixtures shared by the test files (plain helper functions are in ``tests/helpers.py``).

Markers (registered in pyproject.toml): ``slow`` marks the golden network tests and the other long
ones; ``python -m pytest -m "not slow" -q`` is the quick run, ``python -m pytest -q`` runs everything.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import FIXTURES


@pytest.fixture
def one_thread():
    """Run torch single-threaded during a test (identical results). For tiny tensors thread start-up
    and contention on a shared 2-core machine dominate, so this is faster and far less noisy. A test
    file opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def procedural_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """pf-v1 checkpoint files of the vits networks, written once a session (read-only for tests):
    ``"vda"``: Video-Depth-Anything (``video_depth_anything_vits.pth``, relative or metric: same layout);
    ``"dav2"``: metric Depth-Anything-V2 (``depth_anything_v2_metric_hypersim_vits.pth``)."""
    from depth_anything_v2 import MODEL_CONFIGS as DAV2_CONFIGS, DepthAnythingV2
    from tests.procedural import write_procedural_checkpoint
    from video_depth_anything import MODEL_CONFIGS as VDA_CONFIGS, VideoDepthAnything

    folder = tmp_path_factory.mktemp("checkpoints")
    with torch.device("meta"):
        vda = VideoDepthAnything(**VDA_CONFIGS["vits"])
        dav2 = DepthAnythingV2(**DAV2_CONFIGS["vits"], max_depth=20.0)
    return {
        "vda": write_procedural_checkpoint(vda, folder / "video_depth_anything_vits.pth"),
        "dav2": write_procedural_checkpoint(dav2, folder / "depth_anything_v2_metric_hypersim_vits.pth"),
    }


@pytest.fixture(scope="session")
def network_manifests() -> dict[str, dict]:
    """The upstream state_dict manifests of every network (``tests/fixtures/manifests_networks.json.gz``)."""
    from tests.procedural import read_manifests

    return read_manifests(FIXTURES / "manifests_networks.json.gz")


@pytest.fixture(scope="session")
def pf_v1_vda_vits() -> dict[bool, torch.nn.Module]:
    """VideoDepthAnything vits in eval mode with pf-v1 weights, keyed by ``metric`` (relative and metric
    share the same weights). Shared by the test files: a test that changes a model attribute restores it."""
    from tests.procedural import procedural_state_dict
    from video_depth_anything import MODEL_CONFIGS, VideoDepthAnything

    models, state = {}, None
    for metric in (False, True):
        model = VideoDepthAnything(**MODEL_CONFIGS["vits"], metric=metric).eval()
        state = procedural_state_dict(model) if state is None else state
        model.load_state_dict(state, strict=True)
        models[metric] = model
    return models


@pytest.fixture(scope="module")
def ray_runtime():
    """A local Ray runtime with 2 CPUs for the tests of one module (``--ray`` batches in the test process
    keep this connection), shut down after them."""
    from mvda.apps.ray_batch import RayConnection

    connection = RayConnection("local", num_cpus=2)
    yield connection
    connection.close()
