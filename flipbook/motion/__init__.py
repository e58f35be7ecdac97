"""How pixels move from frame to frame, no diffusion: camera paths (2D homographies, 3D rigid motions, composed
over runs of frames), the motion preview, dense optical flow, hybrid-video motion and the temporal-consistency
score built on the flow. Per-image pixel operations (colour, filters, masks, depth maps) are in
:mod:`flipbook.imaging`."""
