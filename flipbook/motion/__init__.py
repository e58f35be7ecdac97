"""Camera motion, depth, colour and noise: pure functions on arrays, no diffusion."""
