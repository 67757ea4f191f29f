"""Shared plumbing of the phyworld pipeline: typed configs, storage paths, dependency shims.

Importing this package makes `import streaming` safe and silences megatron-core's import-time
warnings about Transformer Engine and Apex, which we do not use (see `phyworld.compat`).
"""

from phyworld.compat import ensure_torchvision_importable, silence_known_warnings

ensure_torchvision_importable()
silence_known_warnings()
