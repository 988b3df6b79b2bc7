"""Developer tools driven by ``build.py``: the demo, the speed and the reconstruction benchmarks.

They write into ``docs/`` and ``out/`` and read the repository's examples, so they live beside
the library, not in it (the Blender add-on does not ship them).
"""
