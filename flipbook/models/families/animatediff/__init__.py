"""AnimateDiff motion modules, motion LoRAs, the v3 domain adapter and scheduler presets, from whatever the user has.

Motion modules (:func:`~flipbook.models.families.animatediff.loading.load_motion_adapter`) -- ``ref`` may be:

* a built-in: ``tiny`` (random weights, fits the built-in tiny image model) or ``random-sd15`` (SD 1.5's real
  motion-module architecture, the v2 layout diffusers' ``MotionAdapter()`` builds, with deterministic random
  weights: for speed and memory measurements);
* an original single-file motion module as A1111 / ComfyUI users have them (``mm_sd_v14.ckpt``,
  ``mm_sd_v15.ckpt``, ``mm_sd_v15_v2.ckpt``, ``v3_sd15_mm.ckpt``, ``mm_sd15_v3.safetensors``, AnimateDiff-
  Lightning's ``*_comfyui.safetensors``, AnimateLCM's ``AnimateLCM_sd15_t2v.ckpt``) or a diffusers-layout
  single file (Lightning's ``*_diffusers.safetensors``), as a path or as a name in the models folder
  (A1111 ``extensions/sd-webui-animatediff/model``, ``models/AnimateDiff``; ComfyUI
  ``models/animatediff_models``, ``custom_nodes/ComfyUI-AnimateDiff-Evolved/models``);
* a diffusers MotionAdapter folder, or a hub id in the local Hugging Face cache.

Single files load fully offline, like :mod:`flipbook.models.families.sd.single_file` loads SD checkpoints: read safely
(safetensors, or ``torch.load(weights_only=True)``), keys renamed from the original layout
(``...motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_q.weight``) to
diffusers' (``...motion_modules.0.transformer_blocks.0.attn1.to_q.weight``, the renaming of diffusers'
``convert_animatediff_checkpoint_to_diffusers``), every size taken from the tensor shapes over a template
config (the one a flipbook-written file embeds, else the shipped ``configs/animatediff/v1|v2|v3``, copies of
guoyww's ``animatediff-motion-adapter-v1-4`` / ``-v1-5-2`` / ``-v1-5-3`` configs), and loaded strictly: a
missing or unexpected weight is a :class:`FlipbookError` naming the field. The version is told from the keys
as the A1111 extension and AnimateDiff-Evolved tell it: a mid block means v2; without one a positional
encoding of 24 frames means v1, of 32 frames v3. Unlike diffusers' converter, the positional encodings are
read from the file (they are fixed sinusoids, so this only matters for their length, the longest context the
module accepts); AnimateLCM's files store none, and get 64 frames as in AnimateDiff-Evolved.

Motion LoRAs (:func:`~.loras.merge_motion_loras`) and the v3 domain adapter (:func:`~.loras.merge_adapter_lora`) are fused
into the weights (``W += weight * up @ down``, times ``alpha / rank`` when the file stores an alpha), which
is what AnimateDiff's own ``load_diffusers_lora`` does with both. Accepted key layouts: the original
attention-processor layout (``...attention_blocks.0.processor.to_q_lora.down.weight``; the v2 motion LoRAs
``v2_lora_ZoomIn.ckpt``..., and ``v3_sd15_adapter.ckpt`` with diffusers' UNet names
``down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight``), the same converted
by diffusers' script (``unet.`` prefix; the guoyww/animatediff-motion-lora-* files), PEFT
(``...to_q.lora_A.weight``) and kohya (``lora_unet_..._to_q.lora_down.weight`` + ``.alpha``, diffusers or
LDM module names). Every key must land on a weight of the right shape, or nothing is merged.

Scheduler presets for distilled checkpoints are :data:`~.presets.PRESETS` and
:func:`~.presets.preset_scheduler_config`.

Modules: ``loading`` (:func:`load_motion_adapter`: single files, folders, hub ids), ``builtin`` (the
built-ins), ``files`` (reading and writing weights files), ``keys`` (original <-> diffusers key names),
``detect`` (version and layout), ``architecture`` (shipped configs, configs from shapes), ``lora_layout``
(LoRA key layouts, per-layer updates), ``loras`` (the merges), ``presets`` (the scheduler presets; pure, the
plan reads them). This ``__init__`` only declares the families (pure, as the registry needs): SD 1.5 motion
modules attach to the SD 1.x family's UNets, SDXL ones (``mm_sdxl_v10_beta``, Hotshot-XL) to SDXL's.
"""

from __future__ import annotations

from flipbook.models.families.family import Family, Hook
from flipbook.models.families.sd import SD1
from flipbook.models.families.sdxl import FAMILY as SDXL

FAMILY = Family(
    name="animatediff-sd15",
    title="AnimateDiff motion modules for SD 1.5",
    capability="motion",
    builtins=("tiny", "random-sd15"),
    attaches_to=(SD1.name,),
    detect_checkpoint=Hook("flipbook.models.families.animatediff.detect", "is_motion_module"),
    load=Hook("flipbook.models.families.animatediff.loading", "load_motion_adapter"),
)
SDXL_FAMILY = Family(
    name="animatediff-sdxl",
    title="AnimateDiff motion modules for SDXL",
    capability="motion",
    builtins=("tiny", "random-sdxl"),
    attaches_to=(SDXL.name,),
    load=Hook("flipbook.models.families.animatediff.loading", "load_motion_adapter"),
)
"""SDXL's motion modules (AnimateDiff's ``mm_sdxl_v10_beta``, Hotshot-XL's temporal layers): the same
MotionAdapter shape over SDXL's three UNet levels. Their files are told apart from SD 1.5's by the keys (one
detector, :data:`FAMILY`'s, claims both); the built-in ``tiny`` of each family fits that family's tiny model."""

FAMILIES = (FAMILY, SDXL_FAMILY)
