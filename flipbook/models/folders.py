"""Find the user's own models in an AUTOMATIC1111 or ComfyUI install, where most people already keep them.

Point :class:`ModelsDir` at the webui / ComfyUI folder (or its ``models/`` folder) and name models the way
those tools show them: the path below the kind's folder, without extension, with forward slashes
(``"anime/foo"`` for ``models/Lora/anime/foo.safetensors``), or just the file's stem when that is unique.

Both layouts' folders are searched whichever one the root looks like, so a ComfyUI install that also has
A1111-style folders (or the reverse) still finds everything. Folder names are compared exactly as listed by
the file system, so ``models/VAE`` (A1111) and ``models/vae`` (ComfyUI) are told apart on case-sensitive
systems and found once on case-insensitive ones.

Where a kind has no folder of its own in A1111 or ComfyUI, the folder of the extension or custom node that
uses such models is searched: Deforum's ``models/Deforum`` (its RIFE weights, and depth models) and
``models/Deforum/film_interpolation`` (FILM), sd-webui-controlnet's ``annotator/downloads`` and Forge's
``models/ControlNetPreprocessor`` (preprocessor models), ComfyUI-DepthAnythingV2's ``models/depthanything``,
comfyui_controlnet_aux's ``ckpts`` and ComfyUI-Frame-Interpolation's ``ckpts/film`` and ``ckpts/rife``. Depth
and preprocessor models are folders (a transformers depth-estimation model with its ``config.json``, or
controlnet_aux's OpenPose weights), listed by the folder's name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from flipbook.errors import FlipbookError

ENV_VAR = "FLIPBOOK_MODELS_DIR"
MODEL_KINDS = ("checkpoint", "diffusion_model")
"""Where a whole model (a checkpoint, or a video model's transformer file or folder) is looked up by name."""

# Folders relative to the install root (the folder holding ``models/``), in search order.
A1111_FOLDERS: dict[str, tuple[str, ...]] = {
    "checkpoint": ("models/Stable-diffusion",),
    "lora": ("models/Lora", "models/LyCORIS"),
    "vae": ("models/VAE",),
    "embedding": ("embeddings",),
    "controlnet": ("models/ControlNet", "extensions/sd-webui-controlnet/models"),
    "motion_module": ("extensions/sd-webui-animatediff/model", "models/AnimateDiff"),
    "motion_lora": ("models/Lora",),  # the A1111 extension loads motion LoRAs from the LoRA folder
    "upscaler": ("models/ESRGAN", "models/RealESRGAN"),
    "depth": ("models/Deforum",),  # Deforum's depth models live here
    "annotator": ("extensions/sd-webui-controlnet/annotator/downloads", "models/ControlNetPreprocessor"),
    "film": ("models/Deforum/film_interpolation",),
    "rife": ("models/Deforum",),  # Deforum keeps RIFE46.pkl here
    "diffusion_model": ("models/diffusion_models",),  # Forge keeps Wan/LTX transformers as ComfyUI does
    "text_encoder": ("models/text_encoder",),
    "clip_vision": ("models/clip_vision",),  # Forge's folder for CLIP vision encoders, as ComfyUI's
    "vae_approx": ("models/VAE-approx",),  # TAESD decoders for live previews
}
COMFYUI_FOLDERS: dict[str, tuple[str, ...]] = {
    "checkpoint": ("models/checkpoints",),
    "lora": ("models/loras",),
    "vae": ("models/vae",),
    "embedding": ("models/embeddings",),
    "controlnet": ("models/controlnet",),
    "motion_module": ("models/animatediff_models", "custom_nodes/ComfyUI-AnimateDiff-Evolved/models"),
    "motion_lora": ("models/animatediff_motion_lora", "custom_nodes/ComfyUI-AnimateDiff-Evolved/motion_lora"),
    "upscaler": ("models/upscale_models",),
    "depth": ("models/depthanything",),
    "annotator": ("custom_nodes/comfyui_controlnet_aux/ckpts",),
    "film": ("custom_nodes/ComfyUI-Frame-Interpolation/ckpts/film",),
    "rife": ("custom_nodes/ComfyUI-Frame-Interpolation/ckpts/rife",),
    "diffusion_model": ("models/diffusion_models", "models/unet"),  # video transformers (Wan, LTX), GGUF too
    "text_encoder": ("models/text_encoders", "models/clip"),  # UMT5/T5 encoders (ComfyUI's older folder)
    "clip_vision": ("models/clip_vision",),  # CLIP vision encoders (Wan image-to-video's clip_vision_h)
    "vae_approx": ("models/vae_approx",),
}
KINDS: tuple[str, ...] = tuple(A1111_FOLDERS)

# Preferred first: when "foo.safetensors" and "foo.ckpt" sit side by side, "foo" means the safetensors file,
# which loads without running pickled code.
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "checkpoint": (".safetensors", ".ckpt"),
    "lora": (".safetensors", ".ckpt", ".pt"),
    "vae": (".safetensors", ".ckpt", ".pt", ".bin"),
    "embedding": (".safetensors", ".pt", ".bin"),
    "controlnet": (".safetensors", ".ckpt", ".pt", ".pth", ".bin"),
    "motion_module": (".safetensors", ".ckpt", ".pt", ".pth"),
    "motion_lora": (".safetensors", ".ckpt", ".pt", ".pth", ".bin"),
    "upscaler": (".safetensors", ".pth", ".pt"),
    "depth": (),  # folders only (FOLDER_MARKERS)
    "annotator": (),
    "film": (".pt", ".pth"),  # TorchScript
    "rife": (".safetensors", ".pkl", ".pth"),
    "diffusion_model": (".safetensors", ".gguf"),
    "text_encoder": (".safetensors",),
    "clip_vision": (".safetensors",),
    "vae_approx": (".safetensors", ".pth", ".pt"),
}
DIFFUSERS_MARKER = "model_index.json"
# A folder holding one of these files is one model of the kind, listed by the folder's name: a diffusers
# pipeline; a diffusers ControlNet (config.json next to diffusion_pytorch_model.safetensors); a transformers
# depth-estimation model (config.json); controlnet_aux's OpenPose weights (body_pose_model.pth).
FOLDER_MARKERS: dict[str, tuple[str, ...]] = {
    "checkpoint": (DIFFUSERS_MARKER,),
    "controlnet": ("config.json",),
    "depth": ("config.json",),
    "annotator": ("config.json", "body_pose_model.pth"),
    "vae_approx": ("config.json",),
}
_ANY_MARKER = frozenset(marker for markers in FOLDER_MARKERS.values() for marker in markers)
MAX_LISTED = 20

# Subfolders of ``models/`` that only one of the tools creates; used to tell what a root is.
_A1111_MARKERS = frozenset(
    {
        "Stable-diffusion",
        "Lora",
        "LyCORIS",
        "VAE",
        "ESRGAN",
        "RealESRGAN",
        "VAE-approx",
        "ControlNet",
        "Deforum",
        "ControlNetPreprocessor",
    }
)
_COMFYUI_MARKERS = frozenset(
    {
        "checkpoints",
        "loras",
        "vae",
        "embeddings",
        "upscale_models",
        "animatediff_models",
        "animatediff_motion_lora",
        "diffusion_models",
        "controlnet",
        "depthanything",
        "text_encoders",
    }
)
_A1111_HASH = re.compile(
    r"\s+\[[0-9a-fA-F]{6,}\]$"
)  # A1111 shows checkpoints as "name.safetensors [abcdef12]"


def _child_names(folder: Path) -> set[str]:
    """Entry names exactly as stored, so case differences are seen even on case-insensitive file systems."""
    try:
        return {entry.name for entry in os.scandir(folder) if entry.is_dir()}
    except OSError:
        return set()


def _expected_subfolders() -> str:
    a1111 = ", ".join(
        sorted({f for folders in A1111_FOLDERS.values() for f in folders if f.startswith("models/")})
    )
    comfy = ", ".join(
        sorted({f for folders in COMFYUI_FOLDERS.values() for f in folders if f.startswith("models/")})
    )
    return f"an AUTOMATIC1111 or ComfyUI folder (or its models/ folder) with AUTOMATIC1111's {a1111} or ComfyUI's {comfy}"


def _locate_install(root: Path) -> tuple[Path, str]:
    """The install folder and the layout name for a root that is the install folder or its ``models/``."""
    if not root.is_dir():
        raise FlipbookError("models_dir", str(root), _expected_subfolders(), detail="no such folder")
    candidates = [(root, root / "models")] if "models" in _child_names(root) else []
    candidates.append((root.parent, root))
    for install, models in candidates:
        names = _child_names(models)
        a1111, comfy = len(names & _A1111_MARKERS), len(names & _COMFYUI_MARKERS)
        if a1111 or comfy:
            return install, "comfyui" if comfy > a1111 else "a1111"
    raise FlipbookError("models_dir", str(root), _expected_subfolders(), detail="matches neither layout")


def _existing_folder(install: Path, relative: str) -> Path | None:
    """``install/relative`` if every part exists under exactly that name (case-sensitively)."""
    folder = install
    for part in relative.split("/"):
        if part not in _child_names(folder):
            return None
        folder = folder / part
    return folder


def _walk(folder: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    """os.walk following symlinked folders (model folders are often links) without looping forever."""
    seen: set[str] = set()
    for current, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(current)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield Path(current), dirs, sorted(files)


def _scan(folder: Path, kind: str) -> dict[str, Path]:
    """Name → path for one kind folder, preferred extension winning when two files share a name. A subfolder
    holding a model-folder marker is one model: listed when the marker is this kind's, else left alone (the
    weights of a depth model in ``models/Deforum`` are not RIFE files)."""
    extensions = EXTENSIONS[kind]
    found: dict[str, tuple[int, Path]] = {}
    for current, dirs, files in _walk(folder):
        relative = current.relative_to(folder)
        if current != folder and not _ANY_MARKER.isdisjoint(files):
            if any(marker in files for marker in FOLDER_MARKERS.get(kind, ())):
                found.setdefault(relative.as_posix(), (-1, current))
            dirs[:] = []
            continue
        for file in files:
            suffix = Path(file).suffix.lower()
            if suffix not in extensions:
                continue
            name = (relative / Path(file).stem).as_posix() if relative.parts else Path(file).stem
            rank = extensions.index(suffix)
            if name not in found or rank < found[name][0]:
                found[name] = (rank, current / file)
    return {name: path for name, (_, path) in sorted(found.items())}


class ModelsDir:
    """A user's AUTOMATIC1111 or ComfyUI model folders, searched by kind and name."""

    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser()
        self.install, self.layout = _locate_install(self.root)

    def __repr__(self) -> str:
        return f"ModelsDir({str(self.root)!r}, layout={self.layout!r})"

    def folders(self, kind: str) -> list[Path]:
        """The existing folders searched for ``kind``: this layout's first, then the other layout's."""
        _check_kind(kind)
        primary, secondary = (
            (COMFYUI_FOLDERS, A1111_FOLDERS) if self.layout == "comfyui" else (A1111_FOLDERS, COMFYUI_FOLDERS)
        )
        result: list[Path] = []
        seen: set[str] = set()
        for relative in (*primary[kind], *secondary[kind]):
            folder = _existing_folder(self.install, relative)
            if folder is not None and os.path.realpath(folder) not in seen:
                seen.add(os.path.realpath(folder))
                result.append(folder)
        return result

    def list(self, kind: str) -> dict[str, Path]:
        """Every model of ``kind``: name (relative path, no extension, forward slashes) → file or folder."""
        models: dict[str, Path] = {}
        for folder in self.folders(kind):
            for name, path in _scan(folder, kind).items():
                models.setdefault(name, path)
        return models

    def find(self, kind: str, name: str) -> Path:
        """The model ``name`` of ``kind``: relative name, with or without extension, or a unique bare stem."""
        _check_kind(kind)
        if not isinstance(name, str) or not name.strip():
            raise FlipbookError(kind, name, "a model name")
        given = Path(name).expanduser()
        if given.is_absolute() and given.exists():
            return given
        models = self.list(kind)
        key = _normalise(name, kind)
        for matches in (_exact(models, key), _by_stem(models, key), _folded(models, key)):
            if len(matches) == 1:
                return models[matches[0]]
            if len(matches) > 1:
                raise FlipbookError(
                    kind, name, f"one of: {', '.join(matches)}", detail="the name is ambiguous"
                )
        raise FlipbookError(kind, name, self._available(kind, models))

    def find_listed(self, kinds: tuple[str, ...], name: str) -> Path | None:
        """``name`` in the first of ``kinds`` that lists it by its name or its bare stem (see :meth:`find`);
        None where none does."""
        for kind in kinds:
            found = self.list(kind)
            if name in found or any(Path(listed).stem == name for listed in found):
                return self.find(kind, name)
        return None

    def _available(self, kind: str, models: dict[str, Path]) -> str:
        if not models:
            folders = self.folders(kind)
            searched = ", ".join(str(f) for f in folders) if folders else _missing_folders(self.install, kind)
            return f"a {kind} model, but none was found in {searched}"
        names = list(models)
        listed = ", ".join(names[:MAX_LISTED])
        more = f" (and {len(names) - MAX_LISTED} more)" if len(names) > MAX_LISTED else ""
        return f"one of: {listed}{more}"


def _missing_folders(install: Path, kind: str) -> str:
    folders = dict.fromkeys((*A1111_FOLDERS[kind], *COMFYUI_FOLDERS[kind]))
    return " or ".join(str(install / f) for f in folders) + " (none of them exists)"


def _check_kind(kind: str) -> None:
    if kind not in EXTENSIONS:
        raise FlipbookError("kind", kind, f"one of: {', '.join(KINDS)}")


def _normalise(name: str, kind: str) -> str:
    """A1111 and Windows spellings to a list() name: "sub\\foo.safetensors [abc123]" → "sub/foo"."""
    key = _A1111_HASH.sub("", name.strip()).replace("\\", "/").strip("/")
    suffix = Path(key).suffix.lower()
    if suffix in EXTENSIONS[kind]:
        key = key[: -len(suffix)]
    return key


def _exact(models: dict[str, Path], key: str) -> list[str]:
    return [key] if key in models else []


def _by_stem(models: dict[str, Path], key: str) -> list[str]:
    """Names whose last part is ``key`` ("foo" finds "anime/foo"); only for keys without a folder part."""
    if "/" in key:
        return []
    return [name for name in models if name.rsplit("/", 1)[-1] == key]


def _folded(models: dict[str, Path], key: str) -> list[str]:
    """Case-insensitive fall-back, whole name first, then the stem."""
    folded = key.casefold()
    whole = [name for name in models if name.casefold() == folded]
    if whole or "/" in key:
        return whole
    return [name for name in models if name.rsplit("/", 1)[-1].casefold() == folded]


def models_dir_from_env() -> ModelsDir | None:
    """The folder named by ``FLIPBOOK_MODELS_DIR``, or None when it is unset or empty."""
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return None
    try:
        return ModelsDir(value)
    except FlipbookError as error:
        raise FlipbookError(ENV_VAR, value, error.allowed, detail=error.detail) from None
