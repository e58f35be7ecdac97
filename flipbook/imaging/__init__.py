"""Per-image pixel operations, no diffusion: colour coherence, filters and noise, animation masks, monocular
depth maps (and the depth models that make them), and ordering independent images into a loop. How pixels move
between frames (camera paths, optical flow) is in :mod:`flipbook.motion`."""
