"""Every Deforum settings key of every era, and what flipbook does with it: the importer's table.

The keys come from the settings Deforum saves: the notebook (``DeforumArgs``/``DeforumAnimArgs`` of
deforum-stable-diffusion), the A1111 extension from October 2022 on (its ``args.py`` over its history, the
ControlNet keys of ``deforum_controlnet.py``, the prompts, model and version keys ``settings.py`` adds), and the
forks whose files people share (the Forge fork's FreeU, Kohya, Wan and shake keys; deforum-studio's
``width``/``height``/``scheduler``). Each key has one status:

- ``mapped``: read into the flipbook field named, with the same meaning;
- ``differs``: read into the field named, but flipbook reads some values otherwise (the note says which; the
  import warns when it happens);
- ``ignored``: says nothing about the animation (output folders, UI state, scratch values, debug output): not
  read, not reported;
- ``unused``: a setting flipbook has no counterpart for: reported in the import's "not used" warning unless it
  is at a value that changes nothing (``neutral``) or the switch it depends on is off (``switch``).

``docs/deforum-mapping.md`` lists this table (``tests/test_deforum_mapping_doc.py`` checks they agree).
ControlNet unit keys ``cn_1_*`` ... ``cn_5_*`` (more when A1111 allows more units) are one family, ``cn_N_*``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["mapped", "differs", "ignored", "unused"]
STATUSES: tuple[Status, ...] = ("mapped", "differs", "ignored", "unused")

NOTEBOOK, A1111, BOTH, FORGE, STUDIO = "notebook", "A1111", "notebook, A1111", "Forge fork", "deforum-studio"


@dataclass(frozen=True)
class DeforumKey:
    """One key: its status, the flipbook field(s) it maps to or why it isn't read, the Deforum that writes it,
    and for ``unused`` keys when they change nothing (values in ``neutral``; ``switch`` off)."""

    status: Status
    target: str
    era: str = A1111
    neutral: tuple[Any, ...] = ()
    switch: str | None = None


def _group(status: Status, target: str, names: str, era: str = A1111, **extra: Any) -> dict[str, DeforumKey]:
    return {name: DeforumKey(status, target, era, **extra) for name in names.split()}


_FAMILY = re.compile(r"^cn_\d+_")


def table_key(key: str) -> str:
    """The table's name for a settings key: ``cn_3_weight`` is ``cn_N_weight``."""
    return _FAMILY.sub("cn_N_", key)


def lookup(key: str) -> DeforumKey | None:
    """The table entry for a settings key (None: a key no Deforum version flipbook knows writes)."""
    return KEYS.get(table_key(key))


_OFF = (False, None, "None", "none", "", 0)

KEYS: dict[str, DeforumKey] = {
    # ---- animation, prompts, size --------------------------------------------------------------------------
    "animation_mode": DeforumKey(
        "differs", "animation.mode: None -> travel, 2D -> 2d, 3D -> 3d, Video Input -> video; missing: 2D "
        "(notebook: None); Interpolation is an error (no counterpart)", BOTH),
    "max_frames": DeforumKey("mapped", "animation.max_frames; missing: 120 (notebook stills: one per prompt)",
                             BOTH),
    "fps": DeforumKey("mapped", "animation.fps; missing: 15 (notebook: 12)", BOTH),
    "W": DeforumKey("differs", "animation.width, floored to a multiple of 8 (notebook: 64) with a warning, as "
                    "A1111's latents (the notebook's args) floor it", BOTH),
    "H": DeforumKey("differs", "animation.height, floored like W", BOTH),
    "width": DeforumKey("differs", "animation.width, as W", STUDIO),
    "height": DeforumKey("differs", "animation.height, as H", STUDIO),
    "prompts": DeforumKey("differs", "prompts (a dict of keyframes; the notebook's list of stills or "
                          "{prompt: index} batch; animation_prompts wins when both are present)", BOTH),
    "animation_prompts": DeforumKey("mapped", "prompts (a dict or its JSON text; wins over prompts)", BOTH),
    "animation_prompts_positive": DeforumKey("mapped", "positive_prompt (not with Parseq prompts)"),
    "animation_prompts_negative": DeforumKey("mapped", "negative_prompt (not with Parseq prompts)"),
    "positive_prompts": DeforumKey("ignored", "a copy of animation_prompts_positive Deforum writes"),
    "negative_prompts": DeforumKey("ignored", "a copy of animation_prompts_negative Deforum writes"),
    "strength_schedule": DeforumKey("mapped", "animation.strength; missing: 0: (0.65)", BOTH),
    "strength": DeforumKey(
        "mapped", "init.strength with use_init and an init image (1 allowed: one step, as in A1111); "
        "animation.strength in notebook stills files without strength_schedule", BOTH),
    "previous_frame_strength": DeforumKey("mapped", "animation.strength (early notebook spelling)", NOTEBOOK),
    # ---- sampling --------------------------------------------------------------------------------------------
    "seed": DeforumKey("mapped", "sampling.seed (-1: random, recorded)", BOTH),
    "seed_behavior": DeforumKey("mapped", "sampling.seed_behavior", BOTH),
    "seed_iter_N": DeforumKey("mapped", "sampling.seed_iter_n", BOTH),
    "seed_schedule": DeforumKey("mapped", 'sampling.seed_schedule (with seed_behavior "schedule")'),
    "sampler": DeforumKey(
        "differs", "sampling.sampler: notebook names (euler_ancestral) -> A1111 names; a 2022 index -> A1111's "
        "img2img list of late 2022; names flipbook lacks -> the closest it has, with a warning; with "
        "scheduler Karras -> the Karras variant", BOTH),
    "scheduler": DeforumKey(
        "differs", "sampling.sampler's Karras variant for Karras; Automatic/Simple/Normal/Uniform keep the "
        "sampler; others are read as the sampler's own with a warning", STUDIO),
    "steps": DeforumKey("mapped", "sampling.steps; missing: 25 (notebook: 50)", BOTH),
    "scale": DeforumKey("mapped", "sampling.cfg when there is no cfg_scale_schedule (or it is switched off)",
                        BOTH),
    "cfg_scale_schedule": DeforumKey("mapped", "sampling.cfg"),
    "enable_cfg_scale_scheduling": DeforumKey("mapped", "off: sampling.cfg from scale", STUDIO),
    "enable_steps_scheduling": DeforumKey("mapped", "on: sampling.steps from steps_schedule"),
    "steps_schedule": DeforumKey("mapped", "sampling.steps (a number or a schedule)"),
    "enable_sampler_scheduling": DeforumKey("mapped", "on: sampling.sampler from sampler_schedule"),
    "enable_schedule_samplers": DeforumKey("mapped", "on: sampling.sampler from sampler_schedule", NOTEBOOK),
    "sampler_schedule": DeforumKey("mapped", "sampling.sampler (a name or a schedule of names)", BOTH),
    "enable_checkpoint_scheduling": DeforumKey("mapped", "on: model.name from checkpoint_schedule"),
    "checkpoint_schedule": DeforumKey("mapped", "model.name (a name or a schedule of names)"),
    "enable_clipskip_scheduling": DeforumKey("mapped", "on: sampling.clip_skip from clipskip_schedule"),
    "clipskip_schedule": DeforumKey(
        "differs", "sampling.clip_skip when constant; a varying schedule is reported (flipbook has one clip "
        "skip per animation)"),
    "clip_skip": DeforumKey("mapped", "sampling.clip_skip", STUDIO),
    "sd_model_name": DeforumKey("ignored", "the checkpoint the run used: the import keeps model.name (use "
                                "--set model.name=...)"),
    "sd_model_hash": DeforumKey("ignored", "the hash of sd_model_name"),
    "deforum_git_commit_id": DeforumKey("mapped", "read: picks the keyframe parser (see Keyframes)"),
    # ---- [camera] ------------------------------------------------------------------------------------------
    **{name: DeforumKey("mapped", f"camera.{name} (2D/3D files)", BOTH) for name in (
        "angle", "zoom", "translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y",
        "rotation_3d_z", "perspective_flip_theta", "perspective_flip_phi", "perspective_flip_gamma",
        "perspective_flip_fv")},
    "transform_center_x": DeforumKey("mapped", "camera.transform_center_x (2D/3D files)"),
    "transform_center_y": DeforumKey("mapped", "camera.transform_center_y (2D/3D files)"),
    "enable_perspective_flip": DeforumKey("mapped", "camera.perspective_flip"),
    "flip_2d_perspective": DeforumKey("mapped", "camera.perspective_flip (old spelling)", BOTH),
    "fov_schedule": DeforumKey("mapped", "camera.fov; missing: 0: (70)"),
    "fov": DeforumKey("mapped", "camera.fov (old spelling)", BOTH),
    "near_schedule": DeforumKey("mapped", "camera.near"),
    "near_plane": DeforumKey("mapped", "camera.near (old spelling)", BOTH),
    "far_schedule": DeforumKey("mapped", "camera.far"),
    "far_plane": DeforumKey("mapped", "camera.far (old spelling)", BOTH),
    "border": DeforumKey("differs", "camera.border: wrap -> wrap, anything else -> replicate, as Deforum's "
                         "2D warp reads it (3D uses padding_mode)", BOTH),
    "padding_mode": DeforumKey("mapped", "camera.padding_mode", BOTH),
    "sampling_mode": DeforumKey("mapped", "camera.sampling_mode", BOTH),
    "diffusion_cadence": DeforumKey("mapped", "camera.cadence; missing: 2 (notebook: 1)", BOTH),
    "optical_flow_cadence": DeforumKey(
        "differs", "camera.optical_flow_cadence: DIS presets -> dis; RAFT, Farneback -> dis with a warning "
        "(flipbook has OpenCV DIS only); true/false -> DIS Fine/None as Deforum reads old files"),
    "cadence_flow_factor_schedule": DeforumKey("mapped", "camera.cadence_flow_factor"),
    "color_coherence": DeforumKey(
        "differs", "camera.color_coherence: None, RGB, HSV, LAB (and Match Frame 0 ...); Image -> lab with "
        "color_coherence_image; Video Input -> video with hybrid video, else lab (warned); any other value -> "
        "lab, as Deforum's colour match reads it", BOTH),
    "color_coherence_image_path": DeforumKey("mapped", "camera.color_coherence_image (with Image)"),
    "color_coherence_video_every_N_frames": DeforumKey("mapped", "camera.color_coherence_video_every_n", BOTH),
    "color_force_grayscale": DeforumKey("mapped", "camera.color_force_grayscale", BOTH),
    "contrast_schedule": DeforumKey("mapped", "camera.contrast", BOTH),
    "amount_schedule": DeforumKey("mapped", "camera.antiblur_amount", BOTH),
    "kernel_schedule": DeforumKey("mapped", "camera.antiblur_kernel", BOTH),
    "sigma_schedule": DeforumKey("mapped", "camera.antiblur_sigma", BOTH),
    "threshold_schedule": DeforumKey("mapped", "camera.antiblur_threshold", BOTH),
    "noise_schedule": DeforumKey("mapped", "camera.noise", BOTH),
    "noise_type": DeforumKey("differs", "camera.noise_type: uniform -> gaussian (Deforum draws it with randn), "
                             "perlin -> perlin; missing: perlin (notebook: uniform)"),
    "perlin_octaves": DeforumKey("mapped", "camera.perlin_octaves (with perlin noise)"),
    "perlin_persistence": DeforumKey("mapped", "camera.perlin_persistence (with perlin noise)"),
    "perlin_w": DeforumKey("unused", "flipbook's Perlin cells follow the frame size", neutral=(8, 8.0)),
    "perlin_h": DeforumKey("unused", "flipbook's Perlin cells follow the frame size", neutral=(8, 8.0)),
    "enable_noise_multiplier_scheduling": DeforumKey("mapped", "on: camera.noise_multiplier"),
    "noise_multiplier_schedule": DeforumKey("mapped", "camera.noise_multiplier; missing: 0: (1.05)"),
    "use_depth_warping": DeforumKey("mapped", "off: camera.depth_model = flat", BOTH),
    "depth_algorithm": DeforumKey(
        "differs", "camera.depth_model: Depth-Anything-V2-Small, Midas-3-Hybrid, Midas-3.1-BeitLarge -> their "
        "Hugging Face models; Zoe, AdaBins, LeReS are reported and the default model is kept"),
    "use_zoe_depth": DeforumKey("unused", "Zoe depth (no transformers model)", neutral=_OFF),
    "midas_weight": DeforumKey("unused", "flipbook doesn't blend two depth models", BOTH,
                               neutral=(0, 0.0, 0.2, 0.3)),
    "save_depth_maps": DeforumKey("mapped", "camera.save_depth_maps", BOTH),
    # ---- [init] --------------------------------------------------------------------------------------------
    "use_init": DeforumKey("mapped", "on: init.image from init_image", BOTH),
    "init_image": DeforumKey("differs", "init.image; a URL or a Windows path is kept with a warning naming "
                             "init.image (flipbook never downloads)", BOTH),
    "strength_0_no_init": DeforumKey("mapped", "read: frame 0 without an init image is txt2img in flipbook",
                                     BOTH),
    "use_mask": DeforumKey("mapped", "on: init.mask from mask_file", BOTH),
    "mask_file": DeforumKey("differs", "init.mask; URLs and Windows paths as for init_image", BOTH),
    "use_alpha_as_mask": DeforumKey("mapped", "init.mask = init.image with init.mask_use_alpha", BOTH),
    "invert_mask": DeforumKey("mapped", "init.mask_invert", BOTH),
    "mask_overlay_blur": DeforumKey("mapped", "init.mask_feather", BOTH),
    "overlay_mask": DeforumKey("unused", "flipbook always keeps the unmasked part", BOTH, neutral=(True,),
                               switch="use_mask"),
    "mask_contrast_adjust": DeforumKey("unused", "mask contrast", BOTH, neutral=(1, 1.0), switch="use_mask"),
    "mask_brightness_adjust": DeforumKey("unused", "mask brightness", BOTH, neutral=(1, 1.0), switch="use_mask"),
    "full_res_mask": DeforumKey("unused", "A1111's inpaint at full resolution", neutral=_OFF, switch="use_mask"),
    "full_res_mask_padding": DeforumKey("unused", "A1111's inpaint padding", switch="use_mask"),
    "fill": DeforumKey("unused", "A1111's masked content", neutral=(1, "original"), switch="use_mask"),
    "mask_schedule": DeforumKey("unused", "composable mask schedules", switch="use_mask",
                                neutral=('0: ("{video_mask}")',)),
    "use_noise_mask": DeforumKey("unused", "noise masks", neutral=_OFF),
    "noise_mask_schedule": DeforumKey("unused", "noise masks", switch="use_noise_mask"),
    "noise_mask": DeforumKey("ignored", "scratch value"),
    "mask_image": DeforumKey("ignored", "scratch value"),
    "inpaint_zeros": DeforumKey("unused", "2022 inpainting option", neutral=_OFF),
    "zeros_fill_mode": DeforumKey("unused", "2022 inpainting option", neutral=_OFF),
    "smart_border_fill_mode": DeforumKey("unused", "2022 border fill option", neutral=_OFF),
    "mask_frame_noise": DeforumKey("unused", "2022 mask option", neutral=_OFF),
    "init_image_box": DeforumKey("ignored", "a picture in the web UI, never saved in a file"),
    # ---- video input -----------------------------------------------------------------------------------------
    "video_init_path": DeforumKey("differs", "init.video (Video Input) or camera.hybrid_video (hybrid); URLs "
                                  "and Windows paths as for init_image", BOTH),
    "extract_nth_frame": DeforumKey("mapped", "video.every_nth", BOTH),
    "extract_from_frame": DeforumKey("mapped", "video.start_frame"),
    "extract_to_frame": DeforumKey("mapped", "video.end_frame (+1: flipbook's is exclusive; -1: the end)"),
    "use_mask_video": DeforumKey("mapped", "on: video.mask_video from video_mask_path", BOTH),
    "video_mask_path": DeforumKey("differs", "video.mask_video; URLs and Windows paths as for init_image", BOTH),
    "overwrite_extracted_frames": DeforumKey("ignored", "Deforum's frame-extraction cache", BOTH),
    # ---- hybrid video ------------------------------------------------------------------------------------------
    "hybrid_motion": DeforumKey("mapped", "camera.hybrid_motion (Optical Flow, Perspective, Affine)", BOTH),
    "hybrid_composite": DeforumKey("mapped", "camera.hybrid_composite (true/false: Normal/None)", BOTH),
    "hybrid_flow_method": DeforumKey("differs", "camera.hybrid_flow_method: DIS presets -> dis, Farneback; "
                                     "RAFT -> dis with a warning", BOTH),
    "hybrid_flow_factor_schedule": DeforumKey("mapped", "camera.hybrid_flow_factor"),
    "hybrid_comp_alpha_schedule": DeforumKey("mapped", "camera.hybrid_comp_alpha", BOTH),
    "hybrid_comp_mask_type": DeforumKey("mapped", "camera.hybrid_comp_mask_type (Video Depth -> depth)", BOTH),
    "hybrid_comp_mask_inverse": DeforumKey("mapped", "camera.hybrid_comp_mask_inverse", BOTH),
    "hybrid_motion_use_prev_img": DeforumKey("unused", "hybrid motion from the previous image", BOTH,
                                             neutral=_OFF, switch="hybrid_motion"),
    "hybrid_flow_consistency": DeforumKey("unused", "flow consistency masks", neutral=_OFF,
                                          switch="hybrid_motion"),
    "hybrid_consistency_blur": DeforumKey("unused", "flow consistency masks", switch="hybrid_flow_consistency"),
    "hybrid_comp_mask_equalize": DeforumKey("unused", "mask equalisation", BOTH, neutral=_OFF,
                                            switch="hybrid_comp_mask_type"),
    "hybrid_comp_mask_auto_contrast": DeforumKey("unused", "mask auto contrast", BOTH, neutral=_OFF,
                                                 switch="hybrid_comp_mask_type"),
    "hybrid_comp_mask_auto_contrast_cutoff_low_schedule": DeforumKey(
        "unused", "mask auto contrast", BOTH, switch="hybrid_comp_mask_auto_contrast"),
    "hybrid_comp_mask_auto_contrast_cutoff_high_schedule": DeforumKey(
        "unused", "mask auto contrast", BOTH, switch="hybrid_comp_mask_auto_contrast"),
    "hybrid_comp_mask_contrast_schedule": DeforumKey("unused", "mask contrast", BOTH,
                                                     neutral=("0:(1)", "0: (1)"), switch="hybrid_comp_mask_type"),
    "hybrid_comp_mask_blend_alpha_schedule": DeforumKey(
        "unused", "blend mask weights (flipbook's blend mask is the plain average)", BOTH,
        neutral=("0:(0.5)", "0: (0.5)"), switch="hybrid_comp_mask_type"),
    "hybrid_use_init_image": DeforumKey("unused", "hybrid compositing of the init image", neutral=_OFF),
    "hybrid_use_first_frame_as_init_image": DeforumKey(
        "unused", "flipbook's frame 0 has no init image from the video", BOTH, neutral=_OFF,
        switch="hybrid_motion"),
    "hybrid_generate_human_masks": DeforumKey("unused", "human masks", neutral=_OFF),
    "hybrid_generate_inputframes": DeforumKey("ignored", "Deforum's frame-extraction cache", BOTH),
    "hybrid_comp_save_extra_frames": DeforumKey("ignored", "debug images", BOTH),
    "hybrid_use_video_as_mse_image": DeforumKey("unused", "notebook init-image guidance", NOTEBOOK, neutral=_OFF),
    **_group("unused", "the notebook's hybrid video of December 2022, before hybrid_* (not read)",
             "hybrid_video_motion hybrid_video_composite hybrid_video_flow_method hybrid_video_comp_alpha_schedule "
             "hybrid_video_comp_mask_type hybrid_video_comp_mask_inverse hybrid_video_comp_mask_equalize "
             "hybrid_video_comp_mask_auto_contrast hybrid_video_comp_mask_auto_contrast_cutoff_high_schedule "
             "hybrid_video_comp_mask_auto_contrast_cutoff_low_schedule hybrid_video_comp_mask_blend_alpha_schedule "
             "hybrid_video_comp_mask_contrast_schedule hybrid_video_use_first_frame_as_init_image "
             "hybrid_video_use_video_as_mse_image", NOTEBOOK, neutral=_OFF),
    **_group("ignored", "Deforum's frame-extraction cache and debug output",
             "hybrid_video_generate_inputframes hybrid_video_comp_save_extra_frames", NOTEBOOK),
    # ---- ControlNet ------------------------------------------------------------------------------------------
    "cn_N_enabled": DeforumKey("mapped", "on: a [[controlnet]] unit"),
    "cn_N_model": DeforumKey("differs", "controlnet[i].model, the name without Deforum's [hash]; None: the unit "
                             "is skipped with a warning"),
    "cn_N_module": DeforumKey("differs", "controlnet[i].preprocessor: canny, depth_*, lineart_*, openpose*, "
                              "tile_*, shuffle, none; others: none with a warning naming the module"),
    "cn_N_weight": DeforumKey("mapped", "controlnet[i].weight (a number or a schedule)"),
    "cn_N_guidance_start": DeforumKey("differs", "controlnet[i].guidance_start (a varying schedule: its frame-0 "
                                      "value, warned)"),
    "cn_N_guidance_end": DeforumKey("differs", "controlnet[i].guidance_end (as guidance_start)"),
    "cn_N_threshold_a": DeforumKey("mapped", "controlnet[i].low_threshold (canny)"),
    "cn_N_threshold_b": DeforumKey("mapped", "controlnet[i].high_threshold (canny)"),
    "cn_N_vid_path": DeforumKey("mapped", "controlnet[i].image for a picture, controlnet[i].video for a video "
                                "(frame N controls frame N; in Video Input mode Deforum follows extract_nth_frame "
                                "and extract_from_frame, flipbook does not: a warning says so)"),
    "cn_N_mask_vid_path": DeforumKey("unused", "ControlNet masks (not working in Deforum either)", neutral=_OFF, switch="cn_N_enabled"),
    "cn_N_loopback_mode": DeforumKey("mapped", "on: the unit controls with each frame's own input image "
                                     "(flipbook's default)", neutral=_OFF),
    "cn_N_control_mode": DeforumKey("unused", "ControlNet's control modes (flipbook's is Balanced)",
                                    neutral=("Balanced", 0), switch="cn_N_enabled"),
    "cn_N_resize_mode": DeforumKey("unused", "control images are resized to the frame (Just Resize)",
                                   neutral=("Inner Fit (Scale to Fit)", "Just Resize", "Scale to Fit (Inner Fit)"), switch="cn_N_enabled"),
    "cn_N_pixel_perfect": DeforumKey("ignored", "preprocessor resolution: flipbook preprocesses at frame size"),
    "cn_N_processor_res": DeforumKey("ignored", "preprocessor resolution: flipbook preprocesses at frame size"),
    "cn_N_low_vram": DeforumKey("ignored", "memory option"),
    "cn_N_lowvram": DeforumKey("ignored", "memory option"),
    "cn_N_overwrite_frames": DeforumKey("ignored", "Deforum's frame-extraction cache"),
    "cn_N_input_video_chosen_file": DeforumKey("ignored", "a web UI upload box"),
    "cn_N_input_video_mask_chosen_file": DeforumKey("ignored", "a web UI upload box"),
    "cn_N_guess_mode": DeforumKey("unused", "ControlNet guess mode", neutral=_OFF, switch="cn_N_enabled"),
    "cn_N_invert_image": DeforumKey("unused", "inverted control images", neutral=_OFF, switch="cn_N_enabled"),
    "cn_N_rgbbgr_mode": DeforumKey("unused", "BGR control images", neutral=_OFF, switch="cn_N_enabled"),
    "controlnet_enabled": DeforumKey("mapped", "on: one [[controlnet]] unit (early 2023 single-unit keys, read as "
                                     "cn_1_*)"),
    **{f"controlnet_{name}": DeforumKey("mapped", f"as cn_N_{name}")
       for name in ("model", "module", "weight", "guidance_start", "guidance_end", "threshold_a", "threshold_b",
                    "vid_path")},
    "controlnet_guidance_strength": DeforumKey("differs", "controlnet[0].guidance_end (ControlNet's name for it "
                                               "then)"),
    **_group("unused", "as cn_N_*", "controlnet_mask_vid_path controlnet_guess_mode controlnet_invert_image "
             "controlnet_rgbbgr_mode controlnet_scribble_mode controlnet_resize_mode", switch="controlnet_enabled",
             neutral=(*_OFF, "Inner Fit (Scale to Fit)", "Scale to Fit (Inner Fit)", "Just Resize")),
    **_group("ignored", "as cn_N_*", "controlnet_lowvram controlnet_processor_res controlnet_overwrite_frames "
             "controlnet_input_video_chosen_file controlnet_input_video_mask_chosen_file"),
    # ---- Parseq ------------------------------------------------------------------------------------------------
    "parseq_manifest": DeforumKey("mapped", "non-empty: schedules, prompts and seeds from the Parseq manifest "
                                  "(inline JSON or a local file; see Parseq)"),
    "parseq_use_deltas": DeforumKey("mapped", "Parseq motion from its _delta values (on, the default) or its "
                                    "absolute values"),
    "parseq_non_schedule_overrides": DeforumKey("mapped", "Parseq's frame count, fps and cadence win (on, the "
                                                "default)"),
    "fetched_parseq_manifest_summary": DeforumKey("ignored", "Deforum's record of a manifest it downloaded"),
    # ---- schedules flipbook has no counterpart for ------------------------------------------------------------
    "enable_subseed_scheduling": DeforumKey("unused", "subseeds", neutral=_OFF),
    "subseed_schedule": DeforumKey("unused", "subseeds", switch="enable_subseed_scheduling"),
    "subseed_strength_schedule": DeforumKey("unused", "subseeds", switch="enable_subseed_scheduling"),
    "subseed": DeforumKey("unused", "subseeds", neutral=(-1, 0, 1)),
    "subseed_strength": DeforumKey("unused", "subseeds", neutral=(0, 0.0)),
    "seed_enable_extras": DeforumKey("unused", "subseeds", neutral=_OFF),
    "seed_resize_from_w": DeforumKey("unused", "seed resizing", neutral=(0, -1)),
    "seed_resize_from_h": DeforumKey("unused", "seed resizing", neutral=(0, -1)),
    "enable_ddim_eta_scheduling": DeforumKey("unused", "sampler eta", neutral=_OFF),
    "ddim_eta_schedule": DeforumKey("unused", "sampler eta", switch="enable_ddim_eta_scheduling"),
    "enable_ancestral_eta_scheduling": DeforumKey("unused", "sampler eta", neutral=_OFF),
    "ancestral_eta_schedule": DeforumKey("unused", "sampler eta", switch="enable_ancestral_eta_scheduling"),
    "ddim_eta": DeforumKey("unused", "sampler eta", BOTH, neutral=(0, 0.0)),
    "pix2pix_img_cfg_scale_schedule": DeforumKey("unused", "instruct-pix2pix checkpoints",
                                                 neutral=("0:(1.5)", "0: (1.5)")),
    "pix2pix_img_cfg_scale": DeforumKey("unused", "instruct-pix2pix checkpoints", neutral=(1.5,)),
    "distilled_cfg_scale_schedule": DeforumKey("unused", "Flux distilled guidance", FORGE),
    "enable_scheduler_scheduling": DeforumKey("unused", "scheduler schedules", FORGE, neutral=_OFF),
    "scheduler_schedule": DeforumKey("unused", "scheduler schedules", FORGE, switch="enable_scheduler_scheduling"),
    "sampler_name": DeforumKey("ignored", "deforum-studio's ComfyUI copy of sampler", STUDIO),
    "aspect_ratio_schedule": DeforumKey("unused", "3D aspect ratio", neutral=("0: (1)", "0:(1)")),
    "aspect_ratio_use_old_formula": DeforumKey("unused", "3D aspect ratio", neutral=_OFF),
    "optical_flow_redo_generation": DeforumKey("unused", "flow redo generation", neutral=_OFF),
    "redo_flow_factor_schedule": DeforumKey("unused", "flow redo generation", switch="optical_flow_redo_generation"),
    "diffusion_redo": DeforumKey("unused", "redo generation", neutral=(0, "0")),
    "legacy_colormatch": DeforumKey("unused", "flipbook matches colours before img2img, as the legacy match",
                                    neutral=(True,)),
    "color_correction_factor": DeforumKey("unused", "looper (guided images)", switch="use_looper"),
    "reroll_blank_frames": DeforumKey("unused", "blank frame rerolls", neutral=("ignore", None)),
    "reroll_patience": DeforumKey("unused", "blank frame rerolls", switch="reroll_blank_frames"),
    "histogram_matching": DeforumKey("unused", "removed by Deforum in 2023", neutral=_OFF),
    "normalize_depth": DeforumKey("unused", "depth normalisation (February 2023)", neutral=_OFF),
    "center_x": DeforumKey("unused", "early spelling of transform_center_x (March 2023, two days)"),
    "center_y": DeforumKey("unused", "early spelling of transform_center_y"),
    "rotation_center_x": DeforumKey("unused", "early spelling of transform_center_x (March 2023, one day)"),
    "rotation_center_y": DeforumKey("unused", "early spelling of transform_center_y"),
    "interpolate_key_frames": DeforumKey("unused", "Deforum's Interpolation mode", BOTH, neutral=_OFF),
    "interpolate_x_frames": DeforumKey("ignored", "Deforum's Interpolation mode (unused without it)", BOTH),
    "restore_faces": DeforumKey("unused", "face restoration", neutral=_OFF),
    "tiling": DeforumKey("unused", "seamless tiling", neutral=_OFF),
    "enable_hr": DeforumKey("unused", "A1111 hires fix", neutral=_OFF),
    "firstphase_width": DeforumKey("ignored", "A1111 hires fix (unused without it)"),
    "firstphase_height": DeforumKey("ignored", "A1111 hires fix (unused without it)"),
    "dynamic_threshold": DeforumKey("unused", "notebook thresholding", BOTH, neutral=(None,)),
    "static_threshold": DeforumKey("unused", "notebook thresholding", BOTH, neutral=(None,)),
    "prompt_weighting": DeforumKey("ignored", "flipbook always reads A1111 prompt weights", BOTH),
    "normalize_prompt_weights": DeforumKey("ignored", "flipbook always reads A1111 prompt weights", BOTH),
    "force_color_with_webui": DeforumKey("unused", "2022 colour option", neutral=_OFF),
    "enable_colormatch_image": DeforumKey("unused", "2022 colour match image", neutral=_OFF),
    "colormatch_image": DeforumKey("unused", "notebook colour guidance", BOTH, switch="enable_colormatch_image"),
    **_group("unused", "the notebook's image guidance (gradients of CLIP, aesthetics, colour and MSE losses)",
             "clip_name clip_scale aesthetics_scale cutn cut_pow init_mse_scale init_mse_image colormatch_scale "
             "colormatch_n_colors ignore_sat_weight mean_scale var_scale exposure_scale exposure_target "
             "blue_scale gradient_wrt gradient_add_to decode_method grad_threshold_type clamp_grad_threshold "
             "clamp_start clamp_stop grad_inject_timing cond_uncond_sync", NOTEBOOK,
             neutral=(0, 0.0, None, "", "none", "None", "ViT-L/14", 1, 0.5)),
    "add_init_noise": DeforumKey("unused", "notebook init noise", NOTEBOOK, neutral=_OFF),
    "init_noise": DeforumKey("unused", "notebook init noise", NOTEBOOK, switch="add_init_noise"),
    **_group("ignored", "notebook prompt scratch values", "cond_prompt cond_prompts uncond_prompt uncond_prompts",
             NOTEBOOK),
    **_group("unused", "looper (guided images)", "use_looper", neutral=_OFF),
    **_group("unused", "looper (guided images)", "init_images image_strength_schedule blendFactorMax "
             "blendFactorSlope tweening_frames_schedule", switch="use_looper"),
    **_group("unused", "keyframe distribution (Forge fork)", "keyframe_distribution", FORGE,
             neutral=("Off", "off", None)),
    **_group("unused", "keyframe distribution (Forge fork)", "keyframe_strength_schedule "
             "image_keyframe_strength_schedule", FORGE, switch="keyframe_distribution"),
    **_group("unused", "camera shake (Forge fork)", "shake_name", FORGE, neutral=("None", None, "")),
    **_group("unused", "camera shake (Forge fork)", "shake_intensity shake_speed", FORGE, switch="shake_name"),
    **_group("unused", "FreeU (Forge fork)", "freeu_enabled", FORGE, neutral=_OFF),
    **_group("unused", "FreeU (Forge fork)", "freeu_b1 freeu_b2 freeu_s1 freeu_s2", FORGE,
             switch="freeu_enabled"),
    **_group("unused", "Kohya HR fix (Forge fork)", "kohya_hrfix_enabled", FORGE, neutral=_OFF),
    **_group("unused", "Kohya HR fix (Forge fork)", "kohya_hrfix_block_number kohya_hrfix_downscale_factor "
             "kohya_hrfix_start_percent kohya_hrfix_end_percent kohya_hrfix_downscale_after_skip "
             "kohya_hrfix_downscale_method kohya_hrfix_upscale_method", FORGE, switch="kohya_hrfix_enabled"),
    **_group("unused", "Wan video models (Forge fork): no counterpart", "wan_prompts", FORGE,
             neutral=(None, "", {})),
    **_group("ignored", "Wan video models (Forge fork): used only with Wan", "wan_auto_download "
             "wan_enable_interpolation wan_fixed_strength wan_flash_attention_mode wan_frame_overlap "
             "wan_guidance_override wan_guidance_scale wan_i2v_model wan_inference_steps wan_interpolation_strength "
             "wan_model_path wan_motion_strength wan_preferred_size wan_resolution wan_seed wan_strength_override "
             "wan_t2v_model", FORGE),
    "live_edit_look_at_enabled": DeforumKey("unused", "live editing (April 2023)", neutral=_OFF),
    **_group("ignored", "live editing (April 2023)",
             "live_edit_look_at_pause_after_move live_edit_look_at_transition_millis"),
    # ---- output: flipbook has its own [output] and [post] ---------------------------------------------------
    **_group("unused", "Deforum's output options: set flipbook's [output] and [post] instead",
             "add_soundtrack make_gif r_upscale_video frame_interpolation_engine "
             "frame_interpolation_slow_mo_enabled", neutral=(*_OFF, "None")),
    **_group("ignored", "output options (unused when the option above is off)",
             "soundtrack_path r_upscale_factor r_upscale_model r_upscale_keep_imgs frame_interpolation_x_amount "
             "frame_interpolation_slow_mo_amount frame_interpolation_keep_imgs frame_interpolation_use_upscaled "
             "make_gifski"),
    **_group("ignored", "output files and folders", "skip_video_creation delete_imgs delete_input_frames "
             "store_frames_in_ram max_video_frames ffmpeg_crf ffmpeg_preset ffmpeg_location ffmpeg_output_location "
             "resize_mode"),
    **_group("ignored", "output files and folders", "skip_video_for_run_all image_path mp4_path "
             "use_manual_settings render_steps path_name_modifier", BOTH),
    # ---- bookkeeping ---------------------------------------------------------------------------------------------
    **_group("ignored", "run and web UI bookkeeping", "batch_name outdir timestring filename_format "
             "save_settings save_samples display_samples save_sample_per_step show_sample_per_step n_batch "
             "n_samples make_grid grid_rows resume_from_timestring resume_timestring log_weighted_subprompts "
             "override_settings_with_file custom_settings_file", BOTH),
    **_group("ignored", "run and web UI bookkeeping", "motion_preview_mode show_info_on_ui keep_3d_models_in_vram"),
    **_group("ignored", "run and web UI bookkeeping", "settings_file bit_depth_output bitdepth_extension "
             "skip_disconnect_for_run_all", NOTEBOOK),
    **_group("ignored", "scratch values the old versions saved", "seed_internal init_latent init_sample init_c "
             "prompt precision C f", BOTH),
    **_group("ignored", "scratch values the notebook saved", "init_sample_raw mask_sample", NOTEBOOK),
}  # fmt: skip


# Deforum's values for keys a file leaves out, where flipbook's default differs: the A1111 extension's current
# defaults (what it uses when it loads an older file) and the notebook's (whose animation files hold every
# animation key; its stills files have no animation keys and render one frame per prompt). Applied before
# mapping.
EXTENSION_DEFAULTS: dict[str, Any] = {
    "animation_mode": "2D", "max_frames": 120, "fps": 15, "steps": 25, "strength_schedule": "0: (0.65)",
    "zoom": "0: (1.0025+0.002*sin(1.25*3.14*t/30))", "translation_z": "0: (1.75)", "fov_schedule": "0: (70)",
    "diffusion_cadence": 2, "noise_type": "perlin", "noise_multiplier_schedule": "0: (1.05)",
    "enable_noise_multiplier_scheduling": True, "depth_algorithm": "Midas-3-Hybrid",
}  # fmt: skip
NOTEBOOK_DEFAULTS: dict[str, Any] = {
    "animation_mode": "None", "fps": 12, "zoom": "0:(1.04)", "translation_x": "0:(10*sin(2*3.14*t/10))",
    "translation_z": "0:(10)", "perspective_flip_phi": "0:(t%15)", "noise_schedule": "0: (0.02)",
    "amount_schedule": "0: (0.2)", "color_coherence": "Match Frame 0 LAB", "diffusion_cadence": 1,
    "noise_type": "uniform", "enable_noise_multiplier_scheduling": False,
}  # fmt: skip


DEFAULT_ALIASES: dict[str, tuple[str, ...]] = {
    "fov_schedule": ("fov",), "near_schedule": ("near_plane",), "far_schedule": ("far_plane",),
    "strength_schedule": ("previous_frame_strength",), "enable_perspective_flip": ("flip_2d_perspective",),
}  # fmt: skip
"""Older spellings of keys with a default: a file with the old spelling keeps its value, not the default."""


def notebook_keys() -> frozenset[str]:
    """Keys only the notebook writes: a file with one of them was written by the notebook."""
    return frozenset(key for key, entry in KEYS.items() if entry.era == NOTEBOOK)


def unknown_keys(keys: Iterable[str]) -> list[str]:
    """The keys no Deforum version in the table writes, sorted."""
    return sorted(key for key in keys if lookup(key) is None)


def markdown_table() -> str:
    """The table as the Markdown rows ``docs/deforum-mapping.md`` lists (one row per key, by key)."""
    rows = ["| Deforum key | written by | status | flipbook field, or why not |", "|---|---|---|---|"]
    for key in sorted(KEYS, key=str.casefold):
        entry = KEYS[key]
        rows.append(f"| `{key}` | {entry.era} | {entry.status} | {entry.target} |")
    return "\n".join(rows)
