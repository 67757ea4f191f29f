"""Training of the phyworld video DiT: stream -> encode -> denoise, under DeepSpeed and Slurm.

Importing `training` imports `phyworld` first (the torchvision shim that `import streaming`
needs on some machines; see `phyworld.compat`).
"""

import phyworld  # noqa: F401
