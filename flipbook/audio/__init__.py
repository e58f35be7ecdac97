"""Audio analysis for audio-reactive animations: onsets as keyframes, per-frame feature curves, Deforum
schedules and interpolation easing from a song, all computed with librosa and aligned to video frames."""
