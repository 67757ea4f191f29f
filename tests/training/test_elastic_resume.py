"""Elastic resume: a run continued on another number of ranks, or another sequence-parallel size,
keeps its global batch, every step's samples and their noise, and its optimizer state.

Fast: every step's samples are the same on any layout (streaming's own partitioning over
simulated nodes x ranks x workers x micro-batch x accumulation, resumed after every step); a
sample's noise depends only on (seed, step, sample index); the resume plan (accumulation and
micro-batch recomputed, clear errors). Slow: three real chains of launches over gloo, ZeRO-1
4 -> 2 -> 4 processes, ZeRO-2 4 (SP 2) -> 2 (SP 1) -> 4 (SP 2), ZeRO-3 2 -> 4 -> 2 (micro-batch
lowered on 4), each matching one uninterrupted 1-process run: losses within 1e-5 relative, the
same sample ids at every step, final weights within float rounding.
"""

from __future__ import annotations

import gc
import json
import types
from pathlib import Path

import pytest
import torch
from harness import TINY_CONFIG, flip, logged_losses, run_training

from phyworld.config import load_config
from phyworld.data.runs import LATEST, META, step_dir
from training.checkpoint import CheckpointError, fit_layout
from training.checkpoint_files import write_manifest
from training.config import TrainConfig
from training.diffusion import flow_inputs, sample_generators

# ---------------------------------------------------------------------------------------------
#                      The sample order of a step does not depend on the layout
# ---------------------------------------------------------------------------------------------

GLOBAL_BATCH = 24  # 64 samples -> epochs of 48: 2 steps each, 6 steps = 3 epochs
# (nodes, ranks per node, loader workers, micro-batch, accumulation); nodes x ranks = data parallel
FIRST = [(1, 4, 1, 3, 2), (2, 2, 2, 3, 2), (4, 2, 1, 3, 1)]
OTHERS = [
    (1, 1, 1, 6, 4),
    (1, 2, 3, 4, 3),
    (2, 4, 1, 3, 1),
    (3, 2, 2, 2, 2),
    (3, 2, 1, 4, 1),
    (6, 1, 1, 2, 2),
    (8, 1, 2, 3, 1),
]


def step_samples(dataset, layout, first_nodes: int | None, start: int, steps: int) -> list:
    """The sorted sample ids of steps start+1.. as training draws them on `layout`, resumed at
    step `start`: streaming's partition of each epoch, each rank's DataLoader taking its workers'
    micro-batches in turn (partial ones dropped), `accum` micro-batches per step."""
    from streaming.base.batching import generate_work
    from streaming.base.world import World

    nodes, ranks, workers, micro, accum = layout
    dataset.batch_size, dataset.initial_physical_nodes = micro, first_nodes
    per_epoch = dataset.epoch_size // GLOBAL_BATCH
    out: list[list[int]] = []
    while len(out) < steps:
        epoch, done = divmod(start + len(out), per_epoch)
        world = World(num_nodes=nodes, ranks_per_node=ranks, workers_per_rank=workers, worker=0)
        work = generate_work("random", dataset, world, epoch, done * GLOBAL_BATCH)
        rank_batches = work.reshape(nodes * ranks, workers, -1, micro).transpose(0, 2, 1, 3)
        rank_batches = rank_batches.reshape(nodes * ranks, -1, micro)
        full = (rank_batches != -1).all(axis=2)
        assert (full == full[0]).all()  # every rank has as many micro-batches
        batches = rank_batches[:, full[0]]
        assert batches.shape[1] % accum == 0  # no step straddles two epochs
        for k in range(batches.shape[1] // accum):
            out.append(sorted(batches[:, k * accum : (k + 1) * accum].flatten().tolist()))
    return out[:steps]


@pytest.mark.parametrize("first", FIRST, ids=lambda f: f"first_on_{f[0]}_nodes")
def test_every_step_has_the_same_samples_on_any_layout(
    tiny_dataset: Path, tmp_path: Path, first: tuple
) -> None:
    from training.data import build_dataloader, keeps_sample_order

    canonical = first[0]  # data.num_canonical_nodes=0: the first launch's node count
    args = ["output_dir=/unused", f"data.path={tiny_dataset}", "data.num_workers=0"]
    cfg = load_config(TrainConfig, [*args, f"data.num_canonical_nodes={canonical}"]).data
    loader = build_dataloader(cfg, 3, 1, str(tmp_path), global_batch_size=GLOBAL_BATCH)
    dataset = loader.dataset
    assert dataset.epoch_size == 48  # 64 samples cut to whole global batches
    dataset.shuffle_block_size = 1 << 18  # what streaming sets at the first epoch (few nodes)
    try:
        straight = step_samples(dataset, first, None, 0, 6)
        assert len({i for s in straight[:2] for i in s}) == 48  # an epoch: each sample once
        for layout in OTHERS:
            for start in range(1, 6):
                if keeps_sample_order(canonical, first[0], layout[0], layout[3]):
                    resumed = step_samples(dataset, layout, first[0], start, 6 - start)
                    assert resumed == straight[start:], (layout, start)
                else:  # streaming itself refuses: the resume plan picks another micro-batch
                    with pytest.raises(ValueError, match="not evenly divisible"):
                        step_samples(dataset, layout, first[0], start, 1)
    finally:
        del loader, dataset
        gc.collect()


def test_a_samples_noise_depends_on_seed_step_and_index_only() -> None:
    x0 = torch.randn(4, 2, 5, 4, 4)
    ids = torch.tensor([7, 3, 11, 5])
    cpu = torch.device("cpu")
    whole = flow_inputs(x0, 1, "logit_normal", sample_generators(0, 9, ids, cpu))
    # The same samples in another order, split into two micro-batches (another layout).
    for part in ([2, 0], [3, 1]):
        half = flow_inputs(x0[part], 1, "logit_normal", sample_generators(0, 9, ids[part], cpu))
        assert torch.equal(half.t, whole.t[part])
        assert torch.equal(half.target + x0[part], whole.target[part] + x0[part])  # the noise
    for seed, step in ((0, 10), (1, 9)):
        other = flow_inputs(x0, 1, "logit_normal", sample_generators(seed, step, ids, cpu))
        assert not torch.equal(other.t, whole.t)


# ---------------------------------------------------------------------------------------------
#                                       The resume plan
# ---------------------------------------------------------------------------------------------


def fake_checkpoint(run: Path, step: int, **meta) -> Path:
    """A checkpoint directory holding only meta.json (what `fit_layout` reads), complete."""
    path = step_dir(run, step)
    path.mkdir(parents=True)
    (path / META).write_text(json.dumps({"step": step, **meta}))
    write_manifest(path, {})
    (path.parent / LATEST).write_text(path.name)
    return path


def layout(world: int, sp: int = 1):
    return types.SimpleNamespace(world_size=world, sp_size=sp, dp_size=world // sp)


@pytest.mark.usefixtures("process_group")
def test_resume_plan_keeps_the_global_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = {"epoch": 0, "sample_in_epoch": 24, "num_canonical_nodes": 2}
    order["initial_physical_nodes"] = 2
    saved = dict(world_size=4, sp_size=1, dp_size=4, global_batch_size=12, loader=order)
    fake_checkpoint(tmp_path, 2, micro_batch_size=3, grad_accum_steps=1, **saved)
    cfg = load_config(
        TrainConfig, [str(TINY_CONFIG), f"output_dir={tmp_path}", "parallel.micro_batch_size=3"]
    )

    same, notes = fit_layout(cfg, layout(4))
    assert notes == [] and same.data.num_canonical_nodes == 2  # the data order's nodes, pinned
    assert same.parallel.grad_accum_steps == 1

    fewer, notes = fit_layout(cfg, layout(2))
    assert (fewer.parallel.micro_batch_size, fewer.parallel.grad_accum_steps) == (3, 2)
    assert fewer.parallel.global_batch_size == 12
    assert "global batch 12 kept as micro-batch 3 x accumulation 2" in notes[0]
    assert "Not bit for bit" in notes[-1] and "reseeded" in notes[-1]

    big = load_config(TrainConfig, [str(TINY_CONFIG), f"output_dir={tmp_path}"])  # micro 8
    monkeypatch.setenv("WORLD_SIZE", "8")  # what streaming reads: one node of 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    sp, notes = fit_layout(big, layout(8, sp=2))  # data parallel 4: 3 samples per rank
    assert (sp.parallel.micro_batch_size, sp.parallel.grad_accum_steps) == (3, 1)
    assert "micro-batch 8 -> 3" in notes[1]

    with pytest.raises(CheckpointError, match=r"5 data-parallel ranks .* among \[1, 2, 3, 4, 6"):
        fit_layout(cfg, layout(5))

    # A newer checkpoint whose meta.json is corrupt is passed over (resume sets it aside).
    newer = fake_checkpoint(tmp_path, 3, **{**saved, "global_batch_size": 24})
    flip(newer / "meta.json", count=4)
    assert fit_layout(cfg, layout(2))[0].parallel.grad_accum_steps == 2


@pytest.mark.usefixtures("process_group")
def test_first_launch_splits_an_explicit_global_batch(tmp_path: Path) -> None:
    """A job submitted with a node range may start on any count: parallel.global_batch_size is
    split over the ranks it got, like a resumed run's."""
    args = [str(TINY_CONFIG), f"output_dir={tmp_path}", "parallel.micro_batch_size=4"]
    cfg = load_config(TrainConfig, [*args, "parallel.global_batch_size=24"])
    fitted, notes = fit_layout(cfg, layout(2))
    assert (fitted.parallel.micro_batch_size, fitted.parallel.grad_accum_steps) == (4, 3)
    assert notes == [
        "parallel.global_batch_size=24 on 2 data-parallel ranks: micro-batch 4 x accumulation 3"
    ]
    assert fit_layout(cfg, layout(6))[0].parallel.micro_batch_size == 4  # 4 x 1 x 6 already
    assert fit_layout(cfg, layout(5)) == (cfg, [])  # no split: engine.global_batch_size refuses
    derived = load_config(TrainConfig, args)  # global_batch_size=0: micro x accum x DP, as is
    assert fit_layout(derived, layout(3)) == (derived, [])


@pytest.mark.usefixtures("process_group")
def test_resume_plan_refuses_a_node_count_streaming_cannot_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """First launch on 3 nodes (3 canonical nodes), resumed on 2 nodes of 2 ranks with 2 samples
    per rank: streaming's relaxed partition needs 2 x micro-batch to be a multiple of 3."""
    order = {"epoch": 0, "sample_in_epoch": 0, "num_canonical_nodes": 3}
    order["initial_physical_nodes"] = 3
    meta = dict(world_size=3, sp_size=1, dp_size=3, global_batch_size=12, loader=order)
    fake_checkpoint(tmp_path, 1, micro_batch_size=4, grad_accum_steps=1, **meta)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # what streaming reads: 2 nodes
    cfg = load_config(TrainConfig, [str(TINY_CONFIG), f"output_dir={tmp_path}"])
    with pytest.raises(CheckpointError, match=r"3 canonical nodes .* cannot keep it on 2 nodes"):
        fit_layout(cfg, layout(6))  # 2 samples per rank: micro 2 or 1, neither fits
    fitted, _ = fit_layout(cfg, layout(4))  # 3 per rank: micro 3, 2 x 3 = 6
    assert fitted.parallel.micro_batch_size == 3


# ---------------------------------------------------------------------------------------------
#                           Real runs: chains of launches on other layouts
# ---------------------------------------------------------------------------------------------

SEGMENT = 2  # steps per launch: a resumed launch's second step uses the resharded optimizer
STEPS = 3 * SEGMENT  # 64 samples, global batch 12: epochs of 60, so the chain crosses one
COMMON = [
    "logging.every_steps=1",
    "logging.video_every_steps=0",
    "logging.sample_ids=true",
    f"checkpoint.every_steps={SEGMENT}",
    "data.num_workers=0",
]
# Each chain: ZeRO stage, then (processes, overrides added) per launch; global batch 12 set by
# the first launch (micro x accumulation x data parallel), kept by the others.
SP2 = "parallel.sequence_parallel_size=2"
CHAINS = {
    "zero1": (1, [(4, ["parallel.micro_batch_size=3"]), (2, ["data.num_workers=1"]), (4, [])]),
    "zero2_sp": (
        2,
        [
            (4, [SP2, "parallel.micro_batch_size=3", "parallel.grad_accum_steps=2"]),
            (2, ["parallel.sequence_parallel_size=1"]),
            (4, [SP2]),
        ],
    ),
    "zero3": (3, [(2, ["parallel.micro_batch_size=6"]), (4, []), (2, [])]),
}


def sample_ids(run: Path) -> dict[int, list[int]]:
    """step -> sample ids from RUN/sample_ids.jsonl (a step logged twice: the last line)."""
    lines = (run / "sample_ids.jsonl").read_text().splitlines()
    return {e["step"]: e["samples"] for e in map(json.loads, lines)}


@pytest.fixture(scope="module")
def uninterrupted(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: one process, micro-batch 3 x accumulation 4, all steps in one launch."""
    run = tmp_path_factory.mktemp("elastic") / "uninterrupted"
    args = [str(TINY_CONFIG), f"data.path={tiny_dataset}", f"output_dir={run}", *COMMON]
    args += ["parallel.micro_batch_size=3", "parallel.grad_accum_steps=4", f"max_steps={STEPS}"]
    run_training(args)
    return run


@pytest.mark.slow
@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_resume_on_other_layouts_matches_an_uninterrupted_run(
    tmp_path: Path, tiny_dataset: Path, uninterrupted: Path, chain: str
) -> None:
    from training.checkpoint import _load_deepspeed
    from training.reshard import read_zero_state

    stage, launches = CHAINS[chain]
    run = tmp_path / chain
    args = [str(TINY_CONFIG), f"data.path={tiny_dataset}", f"output_dir={run}", *COMMON]
    args.append(f"parallel.zero_stage={stage}")
    overrides: list[str] = []
    for i, (nproc, more) in enumerate(launches):
        overrides += more  # as a user would: the same command, another node count
        out = run_training([*args, *overrides, f"max_steps={(i + 1) * SEGMENT}"], nproc=nproc)
        if i:
            written = f"step_{i * SEGMENT:08d}"
            assert f"resuming {written} on another layout" in out.stdout
            assert (
                f"resumed from {run / 'checkpoints' / written} at step {i * SEGMENT}" in out.stdout
            )
        if chain == "zero3" and i == 1:
            assert "micro-batch 6 -> 3" in out.stdout

    expected, got = logged_losses(uninterrupted), logged_losses(run)
    assert sorted(got) == sorted(expected) == list(range(1, STEPS + 1))
    for step, loss in expected.items():
        assert abs(got[step] - loss) <= 1e-5 * abs(loss), (step, got[step], loss)
    assert sample_ids(run) == sample_ids(uninterrupted)  # and epoch 2 starts at step 6

    final = step_dir(run, STEPS)
    a = torch.load(final / "weights.pt", weights_only=True)
    b = torch.load(step_dir(uninterrupted, STEPS) / "weights.pt", weights_only=True)
    for part in ("model", "ema"):
        for name in a[part]:
            torch.testing.assert_close(a[part][name], b[part][name], rtol=0, atol=1e-6)
    # Putting the final partitions back together gives the saved fp32 weights, bit for bit.
    whole = read_zero_state(final / "deepspeed", _load_deepspeed).tensors["fp32"]
    assert all(torch.equal(whole[name], a["model"][name]) for name in a["model"])
