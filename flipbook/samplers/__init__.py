"""Samplers by their A1111 names.

``names.py`` is the table as data (no torch, no diffusers): what a spec is validated against.
``schedulers.py`` builds diffusers schedulers from it (with ``dpmpp_2s_ancestral.py``, the one sampler
diffusers lacks); it imports diffusers, so only sampling code imports it.
"""
