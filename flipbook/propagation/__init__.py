"""Restyling a video from a few stylised keyframes (the EbSynth workflow): choosing the keyframes where the
source changes (``keyframes.py``: numpy and OpenCV, no torch, so ``validate`` and ``plan`` can call it) and
carrying each keyframe's style to the frames around it along the source's motion, blended across the span
(``span.py``: torch, on the GPU when there is one). Pure functions on arrays: the ``restyle`` mode wires them.
"""
