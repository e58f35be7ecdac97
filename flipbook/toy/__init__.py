"""A toy world of coloured shapes, for the built-in ``shapes`` model that shows meaning offline.

- :mod:`~flipbook.toy.world`: the scenes, their captions (a small grammar, parsed back) and their pictures,
  all deterministic from a seed (numpy and Pillow);
- :mod:`~flipbook.toy.judge`: scores a picture against a caption (pure numpy: colour, shape, position, size);
- :mod:`~flipbook.toy.train`: trains the SD-1.x-shaped model on the world (``flipbook train-toy``);
- :mod:`~flipbook.toy.evaluate`: the held-out captions sampled through the normal SD path and judged.
"""
