"""The contract the three stages share: sample schema, frame codec, pixels, shards, run layout.

datagen writes it, training and eval read it; nothing else is shared between the stages. Each
module is imported by name (`from phyworld.data.shards import iter_samples`): this package
imports none of them, so a stage pays only for what it uses.
"""
