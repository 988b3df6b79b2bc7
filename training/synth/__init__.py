"""Synthetic garment photogrammetry captures rendered with Blender (bpy, Cycles on CPU).

Each *sequence* is one capture of one dressed subject: a ring of views around it (one or two
heights) or a turntable sequence (static camera and background, the subject rotating about z).
Garments (T-shirts, shirts, dresses, skirts, trousers, jackets, coats, hoodies) are lofted
procedurally around a body shape, worn by a dress form, mannequin or simple figure, dressed in
procedural fabrics and placed in front of studio sweeps, textured rooms, clutter or photo walls.

Foreground rule: subject (mask 255) = the garment + the form/figure wearing it + its stand
(pole and base). Everything else (floor, walls, backdrop, turntable platter, clutter, lights)
is background (mask 0). Masks come from a separate render at the same camera with every
background object as holdout, thresholded at alpha 0.5: exact, anti-aliasing aware.

Output per sequence (see ``render.render_sequence`` and ``cameras`` for the formats)::

    <out>/<seq>/images/0000.jpg   <out>/<seq>/masks/0000.png   cameras.json   meta.json

Only this package imports bpy outside the Blender add-on. Entry point: ``cli.py``.
"""

__all__ = ["spec", "render", "cli"]
