"""Evaluation of the phyworld study: parse generated videos -> score -> report.

Importing `eval` imports `phyworld` first: mosaicml-streaming and diffusers import
torchvision, which needs the shim of `phyworld.compat` on machines whose torchvision cannot load
its compiled ops.
"""

import phyworld  # noqa: F401
