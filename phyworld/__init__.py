"""Shared plumbing of the phyworld pipeline: typed configs, storage paths, dependency shims.

Importing this package makes `import streaming` safe (see `phyworld.compat`).
"""

from phyworld.compat import ensure_torchvision_importable

ensure_torchvision_importable()
