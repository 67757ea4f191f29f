"""Every command printed in README.md and docs/*.md works as written (tests/doc_commands.py).

Fast: each command's config resolves (and training's global batch fits the GPUs it asks for, a
study's dry run plans), each block is valid shell. Slow: the commands a CPU can run are run, in
the docs' order, in a scratch checkout, with the small overrides of `RUN`.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from doc_commands import (
    DATAGEN_PART,
    DOCS,
    REPO,
    RUN,
    Command,
    check,
    documented_commands,
    executable,
    fenced_blocks,
    scratch_checkout,
)

from phyworld.cli import UserError

COMMANDS = documented_commands()
CHECKED = [c for c in COMMANDS if c.not_run() is None]


def test_the_docs_show_their_commands_in_bash_blocks() -> None:
    assert len(CHECKED) >= 30
    assert {c.where.split(":")[0] for c in CHECKED} >= {"README.md", "docs/quickstart.md"}
    # the override table names commands the docs still show
    assert set(RUN) <= {c.text for c in COMMANDS}, set(RUN) - {c.text for c in COMMANDS}


@pytest.mark.parametrize("command", CHECKED, ids=str)
def test_a_documented_command_resolves(command: Command, monkeypatch, capsys) -> None:
    monkeypatch.chdir(REPO)
    check(command, dict(os.environ))


@pytest.mark.parametrize("lang", ["bash", "sh"])
def test_every_block_is_valid_shell(lang: str) -> None:
    for doc in DOCS:
        for first, body in fenced_blocks(doc, lang):
            result = subprocess.run(["bash", "-n"], input=body, capture_output=True, text=True)
            assert result.returncode == 0, f"{doc.name}:{first}: {result.stderr}"


@pytest.mark.parametrize(
    ("text", "error"),
    [  # what the docs used to print
        (
            "sbatch --nodes=3 slurm/train_xl.sh configs/train/uniform_dit_xl.yaml",
            r"global_batch_size=256 but micro_batch_size .* launch on",
        ),
        (
            "slurm/submit.sh slurm/train_xl.sh parallel.zero_stag=2",
            r"parallel.zero_stag",
        ),
        ("python -m eval.report out=report", r"expected \[out=DIR\] RUN"),
        ("python -m eval configs/eval/tiny_cpu.yaml sets.0.path=x", None),
        ("python -m pipeline.study configs/studies/uniform_scaling.yaml", None),
    ],
)
def test_the_check_finds_what_the_docs_got_wrong(text, error, monkeypatch, capsys) -> None:
    monkeypatch.chdir(REPO)
    command = Command("example", text, tuple(text.split()))
    if error is None:
        check(command, dict(os.environ))
    else:
        with pytest.raises(UserError, match=error):
            check(command, dict(os.environ))
    with pytest.raises(AssertionError, match=r"\$RUN"):
        check(
            Command(
                "example",
                "python -m eval c.yaml checkpoint=$RUN",
                ("python", "-m", "eval", "checkpoint=$RUN"),
            ),
            {},
        )


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~4 minutes on 2 idle cores; far longer on a shared, loaded machine
def test_the_documented_commands_run(s3_server, tmp_path, monkeypatch) -> None:
    """As a reader pastes them (in one scratch checkout, the docs' order), smaller where `RUN`
    says so; every `python -m datagen` writes one part of its dataset (`DATAGEN_PART`), in this
    process (its `main`, without an interpreter start per command)."""
    import boto3

    from datagen.__main__ import main as datagen

    s3 = boto3.client("s3", endpoint_url=s3_server)
    for bucket in ("bucket", "my-bucket"):  # the buckets the docs write to
        s3.create_bucket(Bucket=bucket)
    scratch = scratch_checkout(tmp_path / "checkout")
    monkeypatch.chdir(scratch)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path)}
    ran = []
    for command in CHECKED:
        module = command.module()
        if module and module[0] == "datagen":
            assert datagen([*module[1], *RUN.get(command.text, DATAGEN_PART)]) == 0, command
        elif command.text in RUN:
            argv = [executable(command.argv[0]), *command.argv[1:], *RUN[command.text]]
            result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
            assert result.returncode == 0, (
                f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        else:
            continue  # GPU-scale or cluster commands: checked by the fast stage and tests/slurm
        ran.append(command)
    assert {c.text for c in ran} >= set(RUN)
    # what the README's commands promise exists
    assert (scratch / "quickstart" / "report" / "table.md").is_file()
    assert (scratch / "runs" / "tiny_quickstart" / "checkpoints" / "latest").is_file()
    assert (scratch / "data" / "phyre_tiny" / "manifest.json").is_file()
