"""Offline prompt inspiration: keyframed prompts built from vocabularies shipped in the package.

:func:`flipbook.inspire.vocabulary.inspire` turns a few topics ("ocean", "city", ...) and a seed into
``FRAME: prompt`` lines ready for a spec's prompts (Deforum keyframes or AnimateDiff prompt travel lines).
The word lists live in ``data/`` as plain text, one entry per line: ``data/topics/<topic>/`` holds each
topic's subjects, scenes and details; ``data/*.txt`` the shared styles, lighting, palettes, camera words and
quality words. No network and no model are involved.
"""
