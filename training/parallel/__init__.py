"""Parallelism for training: process groups (`groups`), sequence parallelism (`sequence`), and the
CUDA->CPU shim for megatron-core (`device_shim`). The model itself knows nothing of them."""
