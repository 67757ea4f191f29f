"""`preemption.requeue`: the answers of `scontrol requeue` it must tell apart."""

import pytest

from training.preemption import requeue


@pytest.mark.parametrize(
    ("stderr", "code", "expected"),
    [
        ("", 0, True),
        # Requeued already from outside (scontrol requeue by an admin, partition preemption).
        ("scontrol_requeue error: Job is pending execution", 1, True),
        ("scontrol_requeue error: Requested operation is presently disabled", 1, False),
    ],
)
def test_requeue_reads_scontrol_answers(tmp_path, monkeypatch, stderr, code, expected):
    scontrol = tmp_path / "scontrol"
    scontrol.write_text(f"#!/bin/sh\necho '{stderr}' >&2\nexit {code}\n")
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert requeue() is expected


def test_requeue_outside_slurm_does_nothing(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert requeue() is False
