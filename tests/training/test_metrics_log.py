"""The step log: throughput is never measured over the first step (it includes start-up)."""

from __future__ import annotations

import re
import time

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from training.metrics import Metrics


def test_the_first_step_reports_no_throughput(tmp_path, capsys) -> None:
    metrics = Metrics(tmp_path, 0, 1, flops_per_sample=1e9, tokens_per_sample=64,
                      peak_tflops_per_device=1.0)  # fmt: skip
    time.sleep(0.3)  # start-up: building the model, the loader, the first batch
    metrics.step(1, loss=1.0, lr=1e-3, grad_norm=0.5, samples=8, log=True)
    first = capsys.readouterr().out
    assert first.startswith("step       1 | loss 1.00000") and "samples/s" not in first, first
    for step in (2, 3):
        time.sleep(0.05)
        metrics.step(step, loss=1.0, lr=1e-3, grad_norm=0.5, samples=8, log=step == 3)
    line = capsys.readouterr().out
    rate = float(re.search(r"\| ([\d.]+) samples/s \| (\d+) tokens/s mfu", line)[1])
    assert 0 < rate <= 16 / 0.1  # steps 2 and 3: 16 samples in at least 0.1 s
    metrics.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("perf/samples_per_s")] == [3]
    assert [e.step for e in events.Scalars("train/loss")] == [1, 3]
