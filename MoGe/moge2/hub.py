"""Released MoGe-2 checkpoints and their strict loading.

A released checkpoint (``model.pt`` in each Hugging Face repository) is a dict
``{"model_config": dict, "model": state_dict}``. :func:`load_moge2` builds
``MoGeModel(**model_config)`` from the stored config (never a hard-coded one) on the ``meta`` device
and loads the weights with ``strict=True`` (upstream uses ``strict=False``); a mismatch raises
:class:`~depth_anything_v2.checkpoint.CheckpointError` listing the missing/unexpected keys.

Lookup order (:func:`~depth_anything_v2.checkpoint.resolve_checkpoint`): an explicit path; the default
local folder ``MoGe/checkpoints/<repo name>/model.pt``; the Hugging Face hub (honours ``HF_HOME``,
``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``). The weights are MIT-licensed (model cards); the DINOv2
backbone inside them is Apache-2.0.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from depth_anything_v2.checkpoint import (
    CheckpointError,
    CheckpointSpec,
    build_from_checkpoint,
    remap_state_dict,
    resolve_checkpoint,
)

from .model import MoGeModel

__all__ = [
    "CheckpointError",
    "MOGE2_CHECKPOINT_DIR",
    "MOGE2_CHECKPOINTS",
    "MOGE2_PARAMETERS",
    "DEFAULT_MODEL",
    "IGNORED_KEYS",
    "checkpoint_spec",
    "checkpoint_path",
    "read_checkpoint",
    "remap_moge2_state_dict",
    "load_moge2",
]

#: Default local checkpoint folder (from the package location): ``MoGe/checkpoints/``; each model
#: has its own sub-folder named like its repository, since every repository's file is ``model.pt``.
MOGE2_CHECKPOINT_DIR: Path = Path(__file__).resolve().parents[1] / "checkpoints"

#: Released models: name -> Hugging Face repository (all hold ``model.pt``).
_REPOS: dict[str, str] = {
    "vitl-normal": "Ruicheng/moge-2-vitl-normal",
    "vitb-normal": "Ruicheng/moge-2-vitb-normal",
    "vits-normal": "Ruicheng/moge-2-vits-normal",
    "vitl": "Ruicheng/moge-2-vitl",
}

#: Parameter counts listed by upstream's README (for messages and docs only).
MOGE2_PARAMETERS: dict[str, str] = {"vitl-normal": "331M", "vitb-normal": "104M", "vits-normal": "35M", "vitl": "326M"}

#: Model loaded when none is named.
DEFAULT_MODEL = "vitl-normal"

#: Checkpoint keys that the model does not have and that are dropped by name (none known: the
#: released checkpoints are expected to match exactly; add names here only after seeing them in a
#: real file, never load with ``strict=False``).
IGNORED_KEYS: frozenset[str] = frozenset()


def _spec(name: str) -> CheckpointSpec:
    repo_id = _REPOS[name]
    return CheckpointSpec(
        family="moge2",
        encoder=name.split("-")[0],
        repo_id=repo_id,
        filename="model.pt",
        local_dir=MOGE2_CHECKPOINT_DIR / repo_id.split("/")[1],
        # install_mvda.sh --moge fetches the -normal models only.
        install_command=f"bash install_mvda.sh --moge {name.split('-')[0]}" if name.endswith("-normal") else None,
    )


#: The four released checkpoints, keyed by model name. E.g. ``"vitl-normal"``:
#: ``Ruicheng/moge-2-vitl-normal`` / ``model.pt``, local ``MoGe/checkpoints/moge-2-vitl-normal/model.pt``.
MOGE2_CHECKPOINTS: dict[str, CheckpointSpec] = {name: _spec(name) for name in _REPOS}


def checkpoint_spec(model: str = DEFAULT_MODEL) -> CheckpointSpec:
    """Spec of a released MoGe-2 checkpoint (``"vitl-normal"``, ``"vitb-normal"``, ``"vits-normal"``, ``"vitl"``)."""
    if model not in MOGE2_CHECKPOINTS:
        raise ValueError(f"unknown MoGe-2 model {model!r}: use one of {', '.join(MOGE2_CHECKPOINTS)}")
    return MOGE2_CHECKPOINTS[model]


def checkpoint_path(model: str = DEFAULT_MODEL, checkpoint: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Local file of a MoGe-2 checkpoint (see :func:`depth_anything_v2.checkpoint.resolve_checkpoint`)."""
    return resolve_checkpoint(checkpoint_spec(model), checkpoint, download)


def remap_moge2_state_dict(state: Mapping) -> dict[str, torch.Tensor]:
    """Pure key remap of a MoGe-2 state_dict: :func:`~depth_anything_v2.checkpoint.remap_state_dict`, then
    the keys in :data:`IGNORED_KEYS` are dropped."""
    return {k: v for k, v in remap_state_dict(state).items() if k not in IGNORED_KEYS}


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(model_config, state_dict)`` of a MoGe checkpoint file, read with ``weights_only=True``.

    Raises:
        CheckpointError: the file cannot be read, or is not ``{"model_config": dict, "model": state_dict}``.
    """
    try:
        content = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickled objects that weights_only refuses, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first}") from exc
    if not isinstance(content, Mapping) or not isinstance(content.get("model_config"), Mapping) \
            or not isinstance(content.get("model"), Mapping):
        raise CheckpointError(
            f"checkpoint {path} is not a MoGe checkpoint: expected a dict with 'model_config' (dict) and 'model' (state_dict)"
        )
    return dict(content["model_config"]), remap_moge2_state_dict(content["model"])


def load_moge2(
    model: str = DEFAULT_MODEL,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    download: bool = True,
    model_kwargs: Mapping[str, Any] | None = None,
) -> MoGeModel:
    """MoGe-2 with released weights, in eval mode, float32.

    Args:
        model: released model name (selects the default checkpoint; ignored for the architecture,
            which always comes from the checkpoint's ``model_config``).
        checkpoint: explicit ``model.pt`` path (else the default local folder, else the hub).
        device: a resolved device.
        download: allow fetching from the hub.
        model_kwargs: entries that override the stored ``model_config`` (as upstream's ``from_pretrained``).

    Raises:
        CheckpointError: checkpoint missing, unreadable, with an unusable config, or not matching (strict).
    """
    path = resolve_checkpoint(checkpoint_spec(model), checkpoint, download)
    config, state = read_checkpoint(path)
    if model_kwargs:
        config.update(model_kwargs)
    source = f"checkpoint {path}"
    try:
        with torch.device("meta"):
            MoGeModel(**config)  # validate the config before building for real
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{source} has an unusable model_config: {exc}") from exc
    return build_from_checkpoint(lambda: MoGeModel(**config), state, source, device)
