"""The request fields of A1111's ``/sdapi/v1/txt2img`` and ``/img2img`` (its ``modules/api/models.py``,
built from ``StableDiffusionProcessingTxt2Img`` / ``Img2Img`` and the API's own additions, A1111 1.10).

A1111 accepts other fields and drops them without a word; flipbook accepts them too but says so once, in the
response ``info["notes"]`` (a misspelt ``negative_promt`` is then seen, not silently lost). The lists are
A1111's schema, which flipbook cannot read from anywhere, so they are kept here in one place.
"""

from __future__ import annotations

from typing import Any

COMMON = frozenset(
    [
        "prompt",
        "negative_prompt",
        "styles",
        "seed",
        "subseed",
        "subseed_strength",
        "seed_resize_from_h",
        "seed_resize_from_w",
        "sampler_name",
        "scheduler",
        "batch_size",
        "n_iter",
        "steps",
        "cfg_scale",
        "distilled_cfg_scale",
        "width",
        "height",
        "restore_faces",
        "tiling",
        "do_not_save_samples",
        "do_not_save_grid",
        "eta",
        "denoising_strength",
        "s_min_uncond",
        "s_churn",
        "s_tmax",
        "s_tmin",
        "s_noise",
        "override_settings",
        "override_settings_restore_afterwards",
        "refiner_checkpoint",
        "refiner_switch_at",
        "disable_extra_networks",
        "firstpass_image",
        "comments",
        "sampler_index",
        "script_name",
        "script_args",
        "send_images",
        "save_images",
        "alwayson_scripts",
        "force_task_id",
        "infotext",
    ]
)
TXT2IMG = COMMON | frozenset(
    [
        "enable_hr",
        "firstphase_width",
        "firstphase_height",
        "hr_scale",
        "hr_upscaler",
        "hr_second_pass_steps",
        "hr_resize_x",
        "hr_resize_y",
        "hr_checkpoint_name",
        "hr_additional_modules",
        "hr_sampler_name",
        "hr_scheduler",
        "hr_prompt",
        "hr_negative_prompt",
        "hr_cfg",
        "hr_distilled_cfg",
    ]
)
IMG2IMG = COMMON | frozenset(
    [
        "init_images",
        "resize_mode",
        "image_cfg_scale",
        "mask",
        "mask_blur_x",
        "mask_blur_y",
        "mask_blur",
        "mask_round",
        "inpainting_fill",
        "inpaint_full_res",
        "inpaint_full_res_padding",
        "inpainting_mask_invert",
        "initial_noise_multiplier",
        "latent_mask",
        "include_init_images",
    ]
)
FIELDS = {"txt2img": TXT2IMG, "img2img": IMG2IMG}


def unknown_fields(body: dict[str, Any], kind: str) -> list[str]:
    """One note naming the request's fields that A1111's ``kind`` request does not have (none: no note)."""
    unknown = sorted(str(key) for key in body if key not in FIELDS[kind])
    if not unknown:
        return []
    return [f"ignored: {', '.join(unknown)} (not fields of A1111's {kind} request)"]
