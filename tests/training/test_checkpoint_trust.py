"""Checkpoints written by a real tiny run are trusted only as far as they are checked: the manifest
holds the sha256 of every file, flipped bytes are found in any of them, every `.pt` (DeepSpeed's
too) loads weights-only, a crafted pickle runs no code even with a forged manifest, and
`init_from` a checkpoint of another model size is a clear error."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from harness import TINY_CONFIG, craft_pickle, flip, run_training

from phyworld.data.runs import step_dir
from training.checkpoint import _VerifiedIO, _weights_only_everywhere, init_weights
from training.checkpoint_files import (
    COMPLETE,
    CheckpointError,
    is_complete,
    read_manifest,
    torch_load,
    verify,
)
from training.config import ModelConfig

OPTIM_SHARD = "deepspeed/zero_pp_rank_0_mp_rank_00_optim_states.pt"


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path) -> tuple[Path, list]:
    """A one-process ZeRO-2 run that checkpointed at steps 1 and 2, and its arguments."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    args = [
        str(TINY_CONFIG),
        f"data.path={tiny_dataset}",
        f"output_dir={run}",
        "max_steps=2",
        "checkpoint.every_steps=1",
        "logging.video_every_steps=0",
        "parallel.micro_batch_size=2",
    ]
    run_training(args)
    return run, args


def step(run: Path, n: int) -> Path:
    return step_dir(run, n)


def forge_manifest(ckpt: Path, rel: str) -> None:
    """What an attacker who can write the directory also does: make COMPLETE agree."""
    files = json.loads((ckpt / COMPLETE).read_text())
    data = (ckpt / rel).read_bytes()
    files[rel] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (ckpt / COMPLETE).write_text(json.dumps(files))


def test_manifest_holds_the_sha256_of_every_file(saved_run) -> None:
    ckpt = step(saved_run[0], 2)
    files = read_manifest(ckpt)
    on_disk = sorted(
        p.relative_to(ckpt).as_posix()
        for p in ckpt.rglob("*")
        if p.is_file() and p.name != COMPLETE
    )
    assert sorted(files) == on_disk and OPTIM_SHARD in files and "rank_00000.pt" in files
    for rel, entry in files.items():
        assert entry["sha256"] == hashlib.sha256((ckpt / rel).read_bytes()).hexdigest(), rel
    assert verify(ckpt) == []


@pytest.mark.parametrize("rel", ["weights.pt", OPTIM_SHARD, "rank_00000.pt"])
def test_64_flipped_bytes_are_found_in_any_file(saved_run, tmp_path: Path, rel: str) -> None:
    ckpt = shutil.copytree(step(saved_run[0], 2), tmp_path / "step_00000002")
    flip(ckpt / rel)
    assert is_complete(ckpt)  # sizes alone (the old COMPLETE) miss it
    (problem,) = verify(ckpt)
    assert problem.startswith(f"{rel}: content differs from COMPLETE")


def test_every_file_loads_weights_only(saved_run) -> None:
    ckpt = step(saved_run[0], 2)
    for file in ckpt.rglob("*.pt"):
        # Ours hold tensors and plain containers only; DeepSpeed's need its three allowlisted classes.
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(file)
        assert unsafe == [] or file.parent.name == "deepspeed", (file, unsafe)
    rank = torch_load(ckpt / "rank_00000.pt")
    assert set(rank) == {"rng", "ema", "loader"}
    io = _VerifiedIO(inner=None)
    assert "optimizer_state_dict" in io.load(str(ckpt / OPTIM_SHARD))


def test_a_crafted_pickle_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    live = tmp_path / "live.pt"
    craft_pickle(live, tmp_path / "proof")
    torch.load(live, weights_only=False)  # the payload is real: the old rank-file load ran it
    assert (tmp_path / "proof").exists()

    marker = tmp_path / "pwned"
    craft_pickle(tmp_path / "rank_00000.pt", marker)
    with pytest.raises(CheckpointError, match=r"refusing to load .*rank_00000.pt.*system"):
        torch_load(tmp_path / "rank_00000.pt")
    with pytest.raises(CheckpointError, match=r"refusing to load"):
        _VerifiedIO(inner=None).load(str(tmp_path / "rank_00000.pt"))  # DeepSpeed's loads
    with _weights_only_everywhere(), pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "rank_00000.pt", weights_only=False)  # as zero_to_fp32 calls it
    assert not marker.exists()


def test_init_from_checks_the_model_and_the_bytes(saved_run, tmp_path: Path, process_group) -> None:
    ckpt = step(saved_run[0], 2)
    weights = init_weights(ckpt, ModelConfig(size="tiny"))
    assert set(weights) == {"model", "ema"}
    with pytest.raises(
        CheckpointError,
        match=r"another model \(model.size: checkpoint 'tiny', config 'S'\).*model.size=tiny",
    ):
        init_weights(ckpt, ModelConfig(size="S"))
    with pytest.raises(CheckpointError, match=r"nowhere/step_00000002 does not exist"):
        init_weights(tmp_path / "nowhere" / "step_00000002", ModelConfig(size="tiny"))
    copy = shutil.copytree(ckpt, tmp_path / "step_00000002")
    flip(copy / "weights.pt")
    with pytest.raises(CheckpointError, match=r"is corrupt \(weights.pt: content differs"):
        init_weights(copy / "weights.pt", ModelConfig(size="tiny"))


@pytest.mark.slow
def test_cli_init_from_another_size_is_one_line(saved_run, tmp_path: Path) -> None:
    _, args = saved_run
    ckpt = step(saved_run[0], 2)
    new = [*args, f"output_dir={tmp_path / 'new'}", f"checkpoint.init_from={ckpt}", "model.size=S"]
    result = run_training(new, check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "training: error: checkpoint.init_from=" in result.stderr
    assert "model.size: checkpoint 'tiny', config 'S'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("rel", ["rank_00000.pt", OPTIM_SHARD])
def test_a_forged_checkpoint_stops_resume_without_running_code(
    saved_run, tmp_path: Path, rel: str
) -> None:
    """Hashes cannot stop someone who rewrites COMPLETE too: weights-only loading does."""
    run, args = saved_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    marker = tmp_path / "pwned"
    ckpt = step(copy, 2)
    craft_pickle(ckpt / rel, marker)
    forge_manifest(ckpt, rel)
    result = run_training([*args, f"output_dir={copy}", "max_steps=3"], check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"training: error: refusing to load {ckpt / rel}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()
