"""``[videomodel]``: the settings of the ``videomodel`` mode (video diffusion transformers: text and image to
video, keyframes, long videos in segments, loops). Pure pydantic: no torch."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from flipbook.spec.fields import (
    ImageEncoder,
    ImageFile,
    Range,
    ScheduleValue,
    Section,
    TextEncoder,
    Tokenizer,
    Unit,
    Vae,
    VideoDiffusionModel,
)

SHIFT = Range(0.0, 50.0, "0 (the model's own shift) or a flow shift up to 50")
SHARE = Range(0.0, 1.0, "a share from 0 to 1")


class KeyframeImage(Section):
    """An image the video passes through at ``frame``."""

    frame: int = Field(0, ge=0, description="the frame (0-based) this image is placed at; 0: the start image")
    image: ImageFile = Field(description="the image (resized to the animation size)")


class LoraExpert(Section):
    """Which of Wan 2.2 A14B's experts the LoRA ``name`` goes into."""

    name: str = Field(
        description="the LoRA's name: its file name without the suffix, as in <lora:NAME:w> or model.loras"
    )
    expert: Literal["high_noise", "low_noise", "both"] = Field(
        "low_noise",
        description="high_noise (the first transformer, where LoRAs go by default), low_noise (the second, "
        "used below the boundary step) or both",
    )


class VideoModelSection(Section):
    """``[videomodel]``: a video diffusion model (Wan 2.x) makes the frames in segments of ``segment_frames``.
    The first segment is text to video, or image to video from ``init.image`` (or a keyframe image at frame
    0); each later segment continues from the last ``overlap`` frames of the video so far (conditioned on them,
    as written to disk: a resume restarts at a segment border with the same frames). Each segment takes its
    prompt, negative prompt, cfg (``sampling.cfg``), steps (``sampling.steps``), seed and ``shift`` from the
    plan at its first new frame, so prompt keyframes travel from segment to segment. ``keyframes`` put images
    at chosen frames (the segment that makes a keyframe's frame is conditioned on it: first-last-frame when it
    falls on a segment border); ``loop`` conditions the frame after the last on frame 0, so the video loops.
    With ``init.video`` the video is a restyle of that source (video to video): each segment starts from its
    source frames noised to ``strength``, and the source's audio is kept (``keep_audio``)."""

    model: VideoDiffusionModel = Field(
        "tiny-wan",
        description="built-in (tiny-wan, tiny-wan-i2v, tiny-wan-flf2v, random-wan-1.3b), a diffusers folder or "
        "hub id (Wan-AI/Wan2.1-T2V-1.3B-Diffusers), or a name in the models folder; image-to-video models "
        "(I2V, FLF2V) are needed for more than one segment, keyframes and loops (Wan 2.2 TI2V: a start image "
        "and more segments)",
    )
    text_encoder: TextEncoder = Field(
        None,
        description="with a single transformer file: its text encoder file (ComfyUI's models/text_encoders)",
    )
    vae: Vae = Field(
        None,
        description="with a single Wan transformer file or a GGUF LTX-Video one: its VAE file (models/vae; for "
        "LTX-Video also its single file, which holds one; a .safetensors LTX-Video single file holds its own)",
    )
    tokenizer: Tokenizer = Field(
        None,
        description="with a single text-encoder file: a tokenizer folder or hub id (Wan: google/umt5-xxl, "
        "LTX-Video: google/t5-v1_1-xxl)",
    )
    image_encoder: ImageEncoder = Field(
        None,
        description="with a single image-to-video transformer file: its CLIP vision encoder file (ComfyUI's "
        "models/clip_vision, e.g. clip_vision_h)",
    )
    segment_frames: int = Field(
        81, ge=1, le=1025, description="frames per segment: the model's rule (Wan: 4k+1, e.g. 33, 81)"
    )
    overlap: int = Field(
        1, ge=1, le=64, description="frames of the previous segment each later segment is conditioned on"
    )
    blend_frames: int = Field(
        0,
        ge=0,
        le=64,
        description="frames after each segment border over which the segment's jump from the "
        "frame as written fades out (0: none)",
    )
    shift: Annotated[ScheduleValue, SHIFT, Unit("shift")] = Field(
        0.0, description="the flow-matching shift per segment (Wan: 3 at 480p, 5 at 720p); 0: the model's own"
    )
    guidance_scale_2: float | None = Field(
        None, ge=0, le=100, description="cfg of Wan 2.2's low-noise expert; default sampling.cfg"
    )
    max_sequence_length: int = Field(512, ge=16, le=1024, description="prompt tokens (padded to this)")
    keyframes: list[KeyframeImage] = Field(
        default_factory=list,
        description="images at chosen frames (frame 0: the start image); those past the last frame are not "
        "used, as prompt keyframes past it",
    )
    loop: bool = Field(
        False, description="the frame after the last is conditioned on frame 0: a seamless loop"
    )
    strength: Annotated[ScheduleValue, SHARE, Unit("share")] = Field(
        0.8,
        description="with init.video (video to video): the share of each segment's steps run from its source "
        "frames noised to that point (diffusers' strength: 1 redraws everything, lower keeps more of the "
        "source); per segment, a schedule",
    )
    keep_audio: bool = Field(True, description="with init.video: its audio becomes the outputs' soundtrack")
    lora_experts: list[LoraExpert] = Field(
        default_factory=list,
        description="Wan 2.2 A14B: the expert a LoRA goes into, for LoRAs that go elsewhere than the first "
        "(high-noise) transformer",
    )
    offload: Literal["auto", "none", "model", "block", "leaf"] = Field(
        "auto",
        description="keep the weights on the CPU between uses: model (each whole model on the GPU while it "
        "runs), block (diffusers' group offload: one transformer block at a time, the next copied on a CUDA "
        "stream meanwhile), leaf (one layer at a time: least memory, slowest); auto: from the GPU's memory "
        "and the model's weights (none if all fit, model if the largest fits, else block)",
    )
    fp8_storage: bool | None = Field(
        None,
        description="store the transformer's weights in float8_e4m3fn, each layer computed in the model's "
        "dtype (about half the memory of bf16; slightly different pictures); default: only where that lets "
        "the transformer fit the GPU whole (with offload auto). A transformer file already in fp8 "
        "(*_fp8_e4m3fn, *_fp8_scaled) keeps its fp8 weights as stored unless this is false (then they are "
        "upcast at load: twice the memory, a little faster per step), with the same pictures either way",
    )
    vae_tiling: bool | None = Field(
        None, description="decode in tiles (less memory for large frames); default: on GPUs under 24 GiB"
    )
    attention_backend: Literal[
        "auto", "native", "flash", "sage", "flex", "_native_cudnn", "_native_flash"
    ] = Field(
        "auto",
        description="diffusers' attention backend for the transformer and LTX-2's text connectors (auto: its "
        "default)",
    )
