"""Generic checkpoint handling shared by the network packages (one loader, many tables).

Each network package keeps its own table of official checkpoints (:class:`CheckpointSpec` values:
:mod:`depth_anything_v2.hub`, :mod:`video_depth_anything.hub`) and loads through :func:`load_checkpoint`:

1. :func:`resolve_checkpoint` finds the file: an explicit path; else the spec's default local
   directory; else the Hugging Face hub through :func:`huggingface_hub.hf_hub_download` (pinned repo
   ids and file names; honours ``HF_HOME``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE``);
2. :func:`read_state_dict` reads it with ``torch.load(weights_only=True)`` and remaps keys purely
   (:func:`remap_state_dict`: a leading ``module.`` is stripped, a top-level ``model``/``state_dict``
   entry unwrapped);
3. :func:`build_from_checkpoint` builds the model on the ``meta`` device and loads the state with
   ``strict=True`` (:func:`load_strict`: bad keys are listed).

Every failure raises :class:`CheckpointError` with a one-line message. This module knows no network
(and never imports ``mvda``); :func:`download_checkpoint` and :func:`hub_unreachable` serve the
install script.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn


__all__ = [
    "CheckpointError",
    "CheckpointSpec",
    "ENCODER_SIZE_NAMES",
    "INSTALL_COMMAND",
    "MAX_KEYS_LISTED",
    "check_encoder",
    "hub_unreachable",
    "resolve_checkpoint",
    "download_checkpoint",
    "remap_state_dict",
    "read_state_dict",
    "load_strict",
    "build_from_checkpoint",
    "load_checkpoint",
]

#: Command that downloads every checkpoint into the default local directories.
INSTALL_COMMAND = "bash install_mvda.sh"

#: Encoder names and the size word of their Hugging Face repositories (``...-Small``, ``-Base``, ``-Large``).
ENCODER_SIZE_NAMES: dict[str, str] = {"vits": "Small", "vitb": "Base", "vitl": "Large"}

#: Lines of the error message listing bad keys: at most this many keys of each kind.
MAX_KEYS_LISTED = 5


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not match the model.

    Attributes ``missing``, ``unexpected`` and ``mismatched`` list the offending keys (when known).
    """

    def __init__(
        self,
        message: str,
        missing: list[str] | None = None,
        unexpected: list[str] | None = None,
        mismatched: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.missing = list(missing or [])
        self.unexpected = list(unexpected or [])
        self.mismatched = list(mismatched or [])


@dataclass(frozen=True)
class CheckpointSpec:
    """Where an official checkpoint lives.

    Attributes:
        family: which table the spec belongs to: ``"dav2_metric"``, ``"vda"`` or ``"vda_metric"``.
        encoder: ``"vits"``, ``"vitb"`` or ``"vitl"``.
        repo_id: Hugging Face repository.
        filename: file name in that repository (and in the local directory).
        local_dir: default local directory.
        max_depth: metric range in metres for DA-V2 metric models, else ``None``.
        dataset: training set of DA-V2 metric models (``"hypersim"``/``"vkitti"``), else ``None``.
        install_command: the command that downloads this file, named in the missing-file message
            (``None``: none does).
    """

    family: str
    encoder: str
    repo_id: str
    filename: str
    local_dir: Path
    max_depth: float | None = None
    dataset: str | None = None
    install_command: str | None = INSTALL_COMMAND

    @property
    def local_path(self) -> Path:
        """Default local path of the file."""
        return self.local_dir / self.filename

    @property
    def url(self) -> str:
        """Direct download URL."""
        return f"https://huggingface.co/{self.repo_id}/resolve/main/{self.filename}"


def check_encoder(encoder: str) -> None:
    """Raise ``ValueError`` unless ``encoder`` is one of :data:`ENCODER_SIZE_NAMES`."""
    if encoder not in ENCODER_SIZE_NAMES:
        raise ValueError(f"unknown encoder {encoder!r}: use one of {', '.join(ENCODER_SIZE_NAMES)}")


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _hub_cache_dir() -> str | None:
    """Hub cache from the environment at call time (``HF_HUB_CACHE``, else ``HF_HOME/hub``), else the library default."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def _offline() -> bool:
    if _env_true("HF_HUB_OFFLINE"):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_unreachable(timeout: float = 5.0) -> str | None:
    """Why the Hugging Face hub cannot be reached (one quick DNS + TCP check), or None when it can.

    Checked once before a download so that a machine without network fails at once with one clear
    message instead of going through huggingface_hub's retries for every file.
    """
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"cannot reach {constants.ENDPOINT}: {exc.strerror or exc}"
    return None


def _missing_message(spec: CheckpointSpec, reason: str) -> str:
    return (
        f"checkpoint {spec.filename} not found ({reason}): download it from the Hugging Face repo {spec.repo_id} "
        f"to {spec.local_path}" + (f", or run `{spec.install_command}`" if spec.install_command else "")
    )


def resolve_checkpoint(spec: CheckpointSpec, checkpoint: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Local file of a checkpoint.

    Args:
        spec: which checkpoint.
        checkpoint: explicit file path (must exist); overrides everything else.
        download: when the file is not in ``spec.local_dir``, fetch it with ``hf_hub_download``
            (cached in the Hugging Face cache; offline mode uses the cache only).

    Raises:
        CheckpointError: the file is not available.
    """
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            raise CheckpointError(f"checkpoint {path} {what}: pass the path of a {spec.filename} file")
        return path
    if spec.local_path.is_file():
        return spec.local_path
    if not download:
        raise CheckpointError(_missing_message(spec, f"not in {spec.local_dir} and downloading is disabled"))
    from huggingface_hub import hf_hub_download

    offline = _offline()
    unreachable = None if offline else hub_unreachable()
    try:
        # Without a connection only the local Hugging Face cache is consulted (no retries).
        return Path(
            hf_hub_download(spec.repo_id, spec.filename, cache_dir=_hub_cache_dir(),
                            local_files_only=offline or unreachable is not None)
        )
    except Exception as exc:  # network, offline mode, missing cache entry, HTTP errors: one clear message
        if offline:
            reason = "offline mode and not in the Hugging Face cache"
        elif unreachable is not None:
            reason = f"{unreachable} and not in the Hugging Face cache"
        else:
            reason = f"download failed: {type(exc).__name__}"
        raise CheckpointError(_missing_message(spec, reason)) from exc


def download_checkpoint(spec: CheckpointSpec, local_dir: str | os.PathLike | None = None) -> Path:
    """Download a checkpoint into ``local_dir`` (default ``spec.local_dir``) unless it is already there;
    returns its path. Meant for the install script.

    Raises:
        CheckpointError: the download failed.
    """
    target_dir = Path(local_dir) if local_dir is not None else spec.local_dir
    target = target_dir / spec.filename
    if target.is_file():
        return target
    from huggingface_hub import hf_hub_download

    target_dir.mkdir(parents=True, exist_ok=True)
    try:
        return Path(hf_hub_download(spec.repo_id, spec.filename, local_dir=str(target_dir), local_files_only=_offline()))
    except Exception as exc:
        raise CheckpointError(
            f"could not download {spec.filename} from the Hugging Face repo {spec.repo_id} "
            f"({type(exc).__name__}): check the network, or put the file at {target} by hand"
        ) from exc


def remap_state_dict(state: Mapping) -> dict[str, torch.Tensor]:
    """Pure key remap: unwrap a top-level ``model``/``state_dict`` entry, strip a leading ``module.``.

    Raises:
        CheckpointError: the content is not a mapping of names to tensors.
    """
    if not isinstance(state, Mapping):
        raise CheckpointError(f"checkpoint holds a {type(state).__name__}, not a state_dict")
    for wrapper in ("model", "state_dict"):
        inner = state.get(wrapper)
        if isinstance(inner, Mapping):
            state = inner
            break
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"checkpoint entry {key!r} is a {type(value).__name__}, not a tensor")
        name = key[len("module.") :] if key.startswith("module.") else key
        out[name] = value
    return out


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``torch.load(path, map_location="cpu", weights_only=True)`` and :func:`remap_state_dict`.

    Raises:
        CheckpointError: the file cannot be read as a weights-only checkpoint.
    """
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickled objects that weights_only refuses, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first}") from exc
    return remap_state_dict(state)


def _fmt(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_KEYS_LISTED])
    more = f", ... ({len(keys) - MAX_KEYS_LISTED} more)" if len(keys) > MAX_KEYS_LISTED else ""
    return f"[{shown}{more}]"


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint", assign: bool = False) -> nn.Module:
    """``model.load_state_dict(state, strict=True)`` with a readable error.

    Args:
        model: target model.
        state: remapped state_dict.
        source: name of the checkpoint for messages.
        assign: assign the tensors instead of copying (for models built on the ``meta`` device);
            they are first cast to the model's dtypes.

    Raises:
        CheckpointError: missing, unexpected or shape-mismatched keys (the first few of each are
            listed in the one-line message and all are in the exception attributes).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys {_fmt(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys {_fmt(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches {_fmt(mismatched)}")
        encoder = getattr(model, "encoder", None)
        target = f"{type(model).__name__}({encoder!r})" if isinstance(encoder, str) else type(model).__name__
        raise CheckpointError(
            f"{source} does not match {target}: " + "; ".join(parts)
            + " (wrong encoder size or model family?)",
            missing=missing,
            unexpected=unexpected,
            mismatched=[m.split(" ", 1)[0] for m in mismatched],
        )
    if assign:
        state = {k: state[k].to(expected[k].dtype) for k in expected}
    model.load_state_dict(state, strict=True, assign=assign)
    return model


def build_from_checkpoint(factory, state: Mapping[str, torch.Tensor], source: str, device: str | torch.device = "cpu") -> nn.Module:
    """Build ``factory()`` on the ``meta`` device (no random init), load ``state`` strictly by assignment,
    move to ``device`` and switch to eval mode."""
    dev = torch.device(device)
    with torch.device("meta"):
        model = factory()
    load_strict(model, state, source=source, assign=True)
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if tensor.is_meta:  # a non-persistent buffer would stay on meta: never the case for these models
            raise CheckpointError(f"{name} was not initialised from {source}")
    return model.to(dev).eval()




def load_checkpoint(
    spec: CheckpointSpec,
    factory: Callable[[], nn.Module],
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    download: bool = True,
) -> nn.Module:
    """The one loader: :func:`resolve_checkpoint` -> :func:`read_state_dict` -> :func:`build_from_checkpoint`.

    Args:
        spec: the checkpoint, from a network's table.
        factory: builds the (untrained) model that matches ``spec``; called on the ``meta`` device.
        checkpoint: explicit ``.pth`` path (else ``spec.local_dir``, else the hub).
        device: where the model goes.
        download: allow fetching from the hub.

    Raises:
        CheckpointError: checkpoint missing, unreadable or not matching.
    """
    path = resolve_checkpoint(spec, checkpoint, download)
    state = read_state_dict(path)
    return build_from_checkpoint(factory, state, f"checkpoint {path}", device)
