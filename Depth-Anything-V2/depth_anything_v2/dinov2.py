"""DINOv2 vision transformer encoder (ViT-S/B/L, patch 14, layer scale, no register tokens).

Parameters are named as in the official checkpoints (``cls_token``, ``pos_embed``, ``mask_token``,
``patch_embed.proj``, ``blocks.N``, ``norm``). The positional embedding was trained for a 518x518
input (37x37 patches) and is resampled with bicubic interpolation for other sizes, exactly as the
official model does it (scale factor ``(n + 0.1) / 37``, no antialiasing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import ENCODER_LN_EPS, Block, PatchEmbed

__all__ = ["VIT_CONFIGS", "DinoVisionTransformer", "DINOv2"]

#: Size of each encoder: embedding width, number of blocks, attention heads.
VIT_CONFIGS: dict[str, dict[str, int]] = {
    "vits": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "vitb": {"embed_dim": 768, "depth": 12, "num_heads": 12},
    "vitl": {"embed_dim": 1024, "depth": 24, "num_heads": 16},
}

#: Offset added to the target patch grid size before computing the pos-embed scale factor.
POS_EMBED_INTERPOLATE_OFFSET = 0.1


class DinoVisionTransformer(nn.Module):
    """DINOv2 ViT encoder.

    Args:
        img_size: training image size the positional table was built for (518 -> 37x37 patches).
        patch_size: patch side in pixels.
        embed_dim, depth, num_heads, mlp_ratio: transformer size.
    """

    def __init__(
        self,
        img_size: int = 518,
        patch_size: int = 14,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        grid = img_size // patch_size
        self.num_patches = grid * grid
        # Parameter registration order matters for state_dict order: cls_token, pos_embed, mask_token.
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))  # unused at inference, kept for strict loading
        self.patch_embed = PatchEmbed(patch_size=patch_size, in_chans=3, embed_dim=embed_dim)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio=mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=ENCODER_LN_EPS)

    def interpolate_pos_encoding(self, num_tokens: int, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
        """Positional embedding ``(1, 1 + h*w, D)`` for an input of ``height`` x ``width`` pixels.

        The stored 37x37 table is returned as is for a 518x518 input; otherwise it is bicubic-resampled
        in float32 with ``scale_factor = (n + 0.1) / 37`` per axis (``n`` = patches along that axis),
        which yields an ``(H//14, W//14)`` grid, then cast to ``dtype``.
        """
        n_stored = self.pos_embed.shape[1] - 1
        if num_tokens - 1 == n_stored and height == width:
            return self.pos_embed
        pos = self.pos_embed.float()
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        side = int(math.sqrt(n_stored))
        dim = pos.shape[-1]
        gh = height // self.patch_size
        gw = width // self.patch_size
        sh = (gh + POS_EMBED_INTERPOLATE_OFFSET) / side
        sw = (gw + POS_EMBED_INTERPOLATE_OFFSET) / side
        grid = patch_pos.reshape(1, side, side, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=(sh, sw), mode="bicubic", antialias=False)
        if grid.shape[-2:] != (gh, gw):  # cannot happen with the 0.1 offset; guards against misuse
            raise RuntimeError(f"positional embedding resampled to {tuple(grid.shape[-2:])}, expected {(gh, gw)}")
        patch_pos = grid.permute(0, 2, 3, 1).reshape(1, gh * gw, dim)
        return torch.cat((cls_pos, patch_pos), dim=1).to(dtype)

    def prepare_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``(B, 3, H, W)`` -> tokens ``(B, 1 + H/14 * W/14, D)`` (class token first, positions added)."""
        b, _, h, w = x.shape
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(b, -1, -1), tokens), dim=1)  # promotes like the official model
        return tokens + self.interpolate_pos_encoding(tokens.shape[1], h, w, tokens.dtype)

    def get_intermediate_layers(
        self,
        x: torch.Tensor,
        n: int | Sequence[int] = 1,
        reshape: bool = False,
        return_class_token: bool = False,
        norm: bool = True,
    ) -> tuple:
        """Outputs of selected blocks.

        Args:
            x: ``(B, 3, H, W)`` normalised images, H and W multiples of 14.
            n: block indices to return, or an int meaning "the last n blocks".
            reshape: return patch tokens as ``(B, D, H/14, W/14)`` maps instead of ``(B, N, D)``.
            return_class_token: also return the class token ``(B, D)`` of each selected block.
            norm: apply the final LayerNorm to each output.

        Returns:
            A tuple with one entry per selected block: the patch tokens, or
            ``(patch_tokens, class_token)`` pairs when ``return_class_token``.
        """
        depth = len(self.blocks)
        take = list(range(depth - n, depth)) if isinstance(n, int) else [int(i) for i in n]
        for i in take:
            if not 0 <= i < depth:
                raise ValueError(f"block index {i} out of range for a {depth}-block encoder")
        wanted = set(take)
        _, _, h, w = x.shape
        tokens = self.prepare_tokens(x)
        collected: dict[int, torch.Tensor] = {}
        last = max(take)
        for i, blk in enumerate(self.blocks):
            tokens = blk(tokens)
            if i in wanted:
                collected[i] = tokens
            if i == last:
                break
        outputs = [self.norm(collected[i]) if norm else collected[i] for i in take]
        class_tokens = [o[:, 0] for o in outputs]
        patches = [o[:, 1:] for o in outputs]
        if reshape:
            gh, gw = h // self.patch_size, w // self.patch_size
            patches = [p.reshape(p.shape[0], gh, gw, -1).permute(0, 3, 1, 2).contiguous() for p in patches]
        if return_class_token:
            return tuple(zip(patches, class_tokens))
        return tuple(patches)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Final normalised tokens ``(B, 1 + N, D)``."""
        tokens = self.prepare_tokens(x)
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.norm(tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised class token ``(B, D)``."""
        return self.forward_features(x)[:, 0]


def DINOv2(model_name: str = "vitl") -> DinoVisionTransformer:  # noqa: N802 - name of the official factory
    """Build the DINOv2 encoder used by Depth-Anything (``model_name`` in ``vits``, ``vitb``, ``vitl``)."""
    if model_name not in VIT_CONFIGS:
        raise ValueError(f"unknown encoder {model_name!r}: use one of {', '.join(VIT_CONFIGS)}")
    return DinoVisionTransformer(img_size=518, patch_size=14, **VIT_CONFIGS[model_name])
