"""Orchestration above the three stages: a whole study (`python -m pipeline.study`) and the
quickstart (`python -m pipeline.quickstart`) launch datagen, training and eval as processes and
read their outputs. No stage imports this package (tests/test_layout.py)."""
