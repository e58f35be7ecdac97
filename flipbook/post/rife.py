"""RIFE 4.x frame interpolation from the user's own ``flownet.pkl``: the IFNet network and its loader.

The architecture is Practical-RIFE's ``IFNet_HDv3`` of RIFE 4.6 (hzwer/Practical-RIFE, ``train_log/
IFNet_HDv3.py``, MIT licence, Copyright (c) 2021 hzwer), written anew here from the published layout as also
reproduced in HolyWu/vs-rife ``vsrife/IFNet_HDv3_v4_6.py`` and Fannovel16/ComfyUI-Frame-Interpolation
``vfi_models/rife/rife_arch.py`` (both MIT). Parameter names match the original, so its state dicts load
strictly:

- four :class:`IFBlock`\\ s, ``block0`` .. ``block3``, of widths 192, 128, 96, 64, working at 1/8, 1/4, 1/2
  and full resolution; ``block0`` sees both frames and the timestep (7 channels), the later ones the two
  frames warped by the flow so far, the timestep, the mask so far and the flow (8 + 4 channels);
- a block is ``conv0`` (two stride-2 3x3 convs with LeakyReLU 0.2: ``conv0.0.0``, ``conv0.1.0``), ``convblock``
  (eight residual 3x3 convs ``convblock.N.conv`` with a per-channel ``convblock.N.beta``) and ``lastconv``
  (``lastconv.0``, a 4x4 stride-2 transposed conv to 4 x 6 channels, then a 2x pixel shuffle): 4 flow
  channels (time t to frame 0, time t to frame 1), 1 mask logit and 1 unused channel;
- flows and masks add up from block to block; the frames are warped backwards with ``grid_sample`` (bilinear,
  border padding) and blended with the sigmoid of the mask.

RIFE 4.5 differs only in ``lastconv`` making 4 x 5 channels (no unused channel); it is detected from the
shape and runs the same way. Other 4.x layouts (4.0-4.3: plain conv blocks and a context/U-Net refiner; 4.7
and later: a feature encoder) are refused with a FlipbookError naming ``interpolate.model``.

Loading never unpickles arbitrary objects: ``torch.load(..., weights_only=True)`` reads tensors and plain
containers only, and ``.safetensors`` files hold nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from flipbook.errors import FlipbookError, first_line
from flipbook.models.pickles import load_torch_file

MODEL_FIELD = "interpolate.model"
ALLOWED_RIFE = (
    "a RIFE 4.6 (or 4.5) flownet.pkl / .pth / .safetensors state dict of Practical-RIFE's IFNet "
    "(as ComfyUI-Frame-Interpolation's rife46.pth)"
)
WIDTHS = (192, 128, 96, 64)  # channels of block0 .. block3
IN_CHANNELS = (7, 12, 12, 12)  # block0: img0, img1, t; later: warped img0, img1, t, mask + flow
SCALES = (8, 4, 2, 1)  # each block's working resolution is 1 / scale
# Sizes must be divisible by 32 for scale 8: the block reads the frame at 1/8, halves it twice in conv0 and
# doubles it twice back, so every stage is an exact integer size only when H and W are multiples of 8 * 4.
ALIGN = 32
SUFFIXES = (".pkl", ".pth", ".pt", ".ckpt", ".safetensors")


# --- the network --------------------------------------------------------------------------------------------


def _conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv + LeakyReLU(0.2); a Sequential so the weights are named ``N.0.weight`` as in RIFE."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1), nn.LeakyReLU(0.2, inplace=True))


class ResConv(nn.Module):
    """``relu(conv(x) * beta + x)``, beta a learned per-channel scale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.relu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x) * self.beta + x)


class IFBlock(nn.Module):
    """One coarse-to-fine step: a flow update (4 channels, in full-resolution pixels) and a mask update."""

    def __init__(self, in_channels: int, width: int, out_channels: int = 6) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv(in_channels, width // 2, 2), _conv(width // 2, width, 2))
        self.convblock = nn.Sequential(*(ResConv(width) for _ in range(8)))
        self.lastconv = nn.Sequential(
            nn.ConvTranspose2d(width, 4 * out_channels, 4, 2, 1), nn.PixelShuffle(2)
        )

    def forward(
        self, x: torch.Tensor, flow: torch.Tensor | None, scale: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if scale != 1:
            x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
        if flow is not None:
            if scale != 1:
                flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
            x = torch.cat((x, flow / scale), 1)
        out = self.lastconv(self.convblock(self.conv0(x)))
        if scale != 1:
            out = F.interpolate(out, scale_factor=scale, mode="bilinear", align_corners=False)
        return out[:, :4] * scale, out[:, 4:5]


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``image`` read at ``q + flow[q]`` (flow in pixels, x then y), bilinear, edges replicated."""
    _, _, height, width = image.shape
    ys = torch.linspace(-1.0, 1.0, height, device=image.device, dtype=flow.dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=image.device, dtype=flow.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack(
        (
            grid_x + flow[:, 0] * (2.0 / max(width - 1, 1)),
            grid_y + flow[:, 1] * (2.0 / max(height - 1, 1)),
        ),
        dim=-1,
    )
    return F.grid_sample(
        image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=True
    )


class IFNet(nn.Module):
    """RIFE 4.6's flow network (4.5 with ``out_channels=5``): ``forward(img0, img1, timestep)`` on B x 3 x H
    x W images in [0, 1] (H, W multiples of :data:`ALIGN`) and a B x 1 x H x W timestep map."""

    def __init__(self, out_channels: int = 6) -> None:
        super().__init__()
        self.out_channels = out_channels
        for index, (channels, width) in enumerate(zip(IN_CHANNELS, WIDTHS, strict=True)):
            self.add_module(f"block{index}", IFBlock(channels, width, out_channels))

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        flow: torch.Tensor | None = None
        mask: torch.Tensor | None = None
        warped_0, warped_1 = img0, img1
        for index, scale in enumerate(SCALES):
            block = getattr(self, f"block{index}")
            if flow is None:
                flow, mask = block(torch.cat((img0, img1, timestep), 1), None, scale)
            else:
                delta_flow, delta_mask = block(
                    torch.cat((warped_0, warped_1, timestep, mask), 1), flow, scale
                )
                flow, mask = flow + delta_flow, mask + delta_mask
            warped_0, warped_1 = warp(img0, flow[:, :2]), warp(img1, flow[:, 2:4])
        weight = torch.sigmoid(mask)
        return warped_0 * weight + warped_1 * (1 - weight)


# --- loading ------------------------------------------------------------------------------------------------


def _read_state_dict(path: Path) -> Mapping[str, object]:
    """Tensors from a ``torch.save`` file (weights only) or a safetensors file; errors name the model."""
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as error:  # safetensors raises its own SafetensorError
            raise FlipbookError(
                MODEL_FIELD, str(path), ALLOWED_RIFE, detail=f"not a safetensors file: {first_line(error)}"
            ) from None
    loaded = load_torch_file(
        path, lambda detail: FlipbookError(MODEL_FIELD, str(path), ALLOWED_RIFE, detail=detail)
    )
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        detail = f"it holds a {type(loaded).__name__}, not a mapping of names to tensors"
        raise FlipbookError(MODEL_FIELD, str(path), ALLOWED_RIFE, detail=detail)
    return loaded


def clean_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys without DataParallel's ``module.`` prefix (Practical-RIFE saves ``flownet.pkl`` with it removed,
    other tools keep it)."""
    return {
        (key[len("module.") :] if key.startswith("module.") else key): value for key, value in state.items()
    }


def detect_version(state: Mapping[str, torch.Tensor], path: Path | str) -> str:
    """``"4.6"`` or ``"4.5"`` from the keys and ``lastconv`` shape; any other layout is refused, naming the
    version it looks like where the keys tell."""
    last = state.get("block0.lastconv.0.weight")
    first = state.get("block0.conv0.0.0.weight")
    has_encoder = any(key.startswith("encode.") for key in state)
    if (
        not has_encoder
        and last is not None
        and last.ndim == 4
        and last.shape[1] in (20, 24)
        and first is not None
        and first.ndim == 4
        and first.shape[1] == IN_CHANNELS[0]
        and "block0.convblock.0.beta" in state
    ):
        return "4.6" if last.shape[1] == 24 else "4.5"
    if has_encoder:
        looks = "RIFE 4.7 or later (it has a feature encoder)"
    elif first is not None and first.ndim == 4 and first.shape[1] != IN_CHANNELS[0]:
        looks = f"block0 takes {first.shape[1]} channels, not RIFE 4.5/4.6's {IN_CHANNELS[0]}"
    elif "block0.convblock.0.0.weight" in state or any(key.startswith("contextnet.") for key in state):
        looks = "RIFE 4.0-4.3 or an older RIFE (plain conv blocks)"
    elif "block0.lastconv.0.weight" in state:
        looks = f"a RIFE layout with lastconv of shape {tuple(last.shape)}"
    else:
        looks = "no RIFE IFNet (no block0.lastconv weights)"
    raise FlipbookError(MODEL_FIELD, str(path), ALLOWED_RIFE, detail=f"unsupported layout: {looks}")


def _brief(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_rife(path: str | Path, device: str | torch.device = "cpu") -> IFNet:
    """An :class:`IFNet` with the weights of ``path`` loaded strictly, in eval mode on ``device``.

    ``.pkl`` / ``.pth`` / ``.pt`` / ``.ckpt`` files are read with ``torch.load(weights_only=True)`` (tensors
    and plain containers only, never arbitrary pickled objects), ``.safetensors`` with safetensors. A
    ``module.`` prefix is dropped. A missing file, a file of anything else, an unsupported RIFE version or
    missing / unexpected / mis-shaped weights raise FlipbookError naming ``interpolate.model``.
    """
    path = Path(path)
    if not path.is_file():
        raise FlipbookError(MODEL_FIELD, str(path), ALLOWED_RIFE, detail="no such file")
    state = clean_state_dict(_read_state_dict(path))
    version = detect_version(state, path)
    model = IFNet(out_channels=6 if version == "4.6" else 5)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing {_brief(missing)}")
    if unexpected:
        problems.append(f"unexpected {_brief(unexpected)}")
    if not problems:
        wrong = [key for key, value in expected.items() if tuple(state[key].shape) != tuple(value.shape)]
        if wrong:
            key = wrong[0]
            problems.append(
                f"{len(wrong)} mis-shaped, e.g. {key} {tuple(state[key].shape)} "
                f"instead of {tuple(expected[key].shape)}"
            )
    if problems:
        detail = f"not a RIFE {version} IFNet state dict: " + "; ".join(problems)
        raise FlipbookError(MODEL_FIELD, str(path), ALLOWED_RIFE, detail=detail)
    model.load_state_dict({key: value.float() for key, value in state.items()}, strict=True)
    return model.eval().to(device)


# --- inference ----------------------------------------------------------------------------------------------


class RifeInterpolator:
    """In-betweens of uint8 RGB frames from a loaded :class:`IFNet`, one model call per pair and time (RIFE
    4.x takes the time directly). float32 by default; ``half`` runs in float16, for CUDA only."""

    def __init__(self, model: IFNet, device: str | torch.device | None = None, *, half: bool = False) -> None:
        parameter = next(model.parameters())
        self.device = torch.device(device) if device is not None else parameter.device
        if half and self.device.type != "cuda":
            raise FlipbookError("interpolate.device", str(self.device), "cuda", detail="fp16 RIFE needs CUDA")
        self.dtype = torch.float16 if half else torch.float32
        self.model = model.to(self.device, self.dtype).eval()

    def tweens(self, first: np.ndarray, second: np.ndarray, times: list[float]) -> list[np.ndarray]:
        """The in-betweens of one pair at ``times``; each frame is moved to the device once."""
        img_0, img_1 = self._tensor(first), self._tensor(second)
        height, width = first.shape[:2]
        return [self._run(img_0, img_1, s, height, width) for s in times]

    def between(self, first: np.ndarray, second: np.ndarray, s: float) -> np.ndarray:
        """The in-between of two HxWx3 uint8 frames at time ``s`` in (0, 1), as HxWx3 uint8."""
        return self.tweens(first, second, [s])[0]

    def _run(self, img_0: torch.Tensor, img_1: torch.Tensor, s: float, height: int, width: int) -> np.ndarray:
        timestep = torch.full_like(img_0[:, :1], float(s))
        with torch.inference_mode():
            result = self.model(img_0, img_1, timestep)
        result = result[0, :, :height, :width].float().clamp(0, 1)
        return (result * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    def _tensor(self, frame: np.ndarray) -> torch.Tensor:
        """1 x 3 x H' x W' in [0, 1], padded at the bottom and right to multiples of ALIGN by replicating the
        edge (Practical-RIFE pads with zeros; replicated edges give the flow no false edge to track, and
        keep every warp's samples inside the frame's colours)."""
        height, width = frame.shape[:2]
        pad_h, pad_w = -height % ALIGN, -width % ALIGN
        # a copy: frames read from files are often read-only arrays, which torch.from_numpy warns about
        tensor = torch.from_numpy(np.array(frame, dtype=np.uint8)).to(self.device).permute(2, 0, 1)[None]
        tensor = tensor.to(self.dtype) / 255.0
        if pad_h or pad_w:
            tensor = F.pad(tensor, (0, pad_w, 0, pad_h), mode="replicate")
        return tensor
