"""Models that sample whole clips (AnimateDiff's motion modules) see a long animation through windows of
frames; the maths of those windows lives here, without torch, so the plan can use it before any model loads.

``windows.py``: context windows, closed loops and the weights that fuse overlapping windows.
"""
