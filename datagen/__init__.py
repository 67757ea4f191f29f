"""Physics videos for the phyworld study: simulate (pymunk) -> render -> MDS shards.

Importing `datagen` imports `phyworld` first, which makes `import streaming` work on machines
whose torchvision cannot load its compiled ops (see `phyworld.compat`); every datagen module
can then import mosaicml-streaming directly.
"""

import phyworld  # noqa: F401
