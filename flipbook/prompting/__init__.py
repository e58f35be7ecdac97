"""Prompt text as users write it, without torch: the spec, the plan and the encoders all read it from here.

``grammar.py``: A1111's prompt grammar (attention weights, ``BREAK``, ``<lora:...>`` tags, composable parts).
"""
