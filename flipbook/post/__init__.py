"""Post-processing of finished frames: frame interpolation, upscaling."""
