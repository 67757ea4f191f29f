"""ZeRO state moved onto another layout: a checkpoint written by W ranks, loaded by W' ranks.

DeepSpeed 0.19 loads a ZeRO checkpoint only into the data-parallel size that wrote it. Its own
answer, the universal checkpoint, is an offline conversion (`ds_to_universal`) whose files it then
reads with `weights_only=False`, outside the checkpoint engine we verify through. Here instead:

1. `read_zero_state`: every partition file of the checkpoint (already verified against its
   `COMPLETE`, loaded weights-only) is put back together into full per-parameter tensors, one set
   per optimizer quantity: the fp32 master weights and each per-element state of AdamW
   (`exp_avg`, `exp_avg_sq`), plus the per-partition scalars (`step`), the optimizer settings and
   the engine's own counters and LR schedule. The concatenation rules are those of DeepSpeed's
   `zero_to_fp32`: ZeRO-1/2 split one flat vector of all parameters (padded at the end) into equal
   partitions; ZeRO-3 splits each parameter into ceil(numel / W) pieces, one per rank.
2. `load_zero_state`: a freshly initialised engine of any world size takes its own partition of
   each tensor, at the place DeepSpeed gave it in this layout (ZeRO-1/2: each parameter's
   `_hp_mapping` fragment; ZeRO-3: its `grad_position`), into the fp32 flat partitions, the AdamW
   state and the model weights.

The numbers are copied, never recomputed, so the state after loading is bit-identical to the saved
one; what differs on another layout is only the order of floating-point sums in later steps.
Memory: every rank holds the full fp32 weights and optimizer state once while loading (3x the fp32
model: 5.5 GB for DiT-XL), then frees them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from training.checkpoint_files import CheckpointError

FP32 = "fp32"  # the master weights, beside the optimizer's own per-element states


@dataclass
class ZeroState:
    """A ZeRO checkpoint's optimizer and engine state, whole (no longer partitioned)."""

    stage: int
    tensors: dict[str, dict[str, torch.Tensor]]  # "fp32" | "exp_avg" | ... -> parameter -> full
    scalars: dict[str, Any]  # per-partition values that are the same everywhere (AdamW's step)
    settings: dict[str, Any]  # the optimizer's param-group settings as saved (lr, betas, ...)
    engine: dict[str, Any]  # lr_scheduler, global_steps, global_samples, skipped_steps


# ---------------------------------------------------------------------------------------------
#                          Read: partition files -> full tensors
# ---------------------------------------------------------------------------------------------


def _by_rank(paths: list[Path]) -> list[Path]:
    return sorted(paths, key=lambda p: int(re.search(r"zero_pp_rank_(\d+)_", p.name).group(1)))


def read_zero_state(ds_dir: Path, load: Callable[[Path], Any]) -> ZeroState:
    """Put the ZeRO-1/2/3 partitions of DeepSpeed checkpoint `ds_dir` back together; `load`
    reads one file (weights-only, after verification)."""
    optim_files = _by_rank(list(ds_dir.glob("*zero_pp_rank_*_mp_rank_00_optim_states.pt")))
    model_file = ds_dir / "mp_rank_00_model_states.pt"  # ZeRO-1/2; ZeRO-3 has one per rank
    if not model_file.exists():
        model_file = next(iter(_by_rank(list(ds_dir.glob("zero_pp_rank_*_model_states.pt")))), None)
    if not optim_files or model_file is None:
        raise CheckpointError(f"{ds_dir} holds no ZeRO partition files to reshard")
    model = load(model_file)
    parts = [load(f)["optimizer_state_dict"] for f in optim_files]
    count = parts[0]["partition_count"]
    count = max(count) if isinstance(count, list) else count
    if count != len(parts):
        raise CheckpointError(f"{ds_dir}: {len(parts)} ZeRO partition files for {count} partitions")
    stage = int(parts[0]["zero_stage"])
    if stage == 3:
        torch_states = [p["optimizer_state_dict"] for p in parts]
        flats = [_zero3_rank_vectors(p, s) for p, s in zip(parts, torch_states)]
        tensors = _zero3_merge(flats, model["param_shapes"])
    else:
        if not isinstance(parts[0]["base_optimizer_state"], dict):
            raise CheckpointError(
                f"{ds_dir} was saved with zero_optimization.elastic_checkpoint=true, a layout "
                "phyworld does not reshard; resume it on the layout that wrote it"
            )
        torch_states = [p["base_optimizer_state"] for p in parts]
        tensors = _zero12_merge(parts, model["param_shapes"])
    first = torch_states[0]["state"][0]
    settings = {k: v for k, v in torch_states[0]["param_groups"][0].items() if k != "params"}
    keys = ("lr_scheduler", "global_steps", "global_samples", "skipped_steps")
    return ZeroState(
        stage=stage,
        tensors=tensors,
        scalars={k: v for k, v in first.items() if not _per_element(v)},
        settings=settings,
        engine={k: model[k] for k in keys},
    )


def _per_element(value: Any) -> bool:
    """An optimizer state with one value per parameter element (exp_avg), not a scalar (step)."""
    return torch.is_tensor(value) and value.dim() > 0


def _split(flat: torch.Tensor, shapes: dict[str, Any], gaps: list[int]) -> dict[str, torch.Tensor]:
    """Cut one group's full flat vector into its parameters (`gaps`: alignment padding after each)."""
    out, offset = {}, 0
    for (name, shape), gap in zip(shapes.items(), gaps):
        numel = math.prod(shape)
        out[name] = flat.narrow(0, offset, numel).view(shape).clone()
        offset += numel + gap
    return out


def _zero12_merge(
    parts: list[dict], param_shapes: list[dict]
) -> dict[str, dict[str, torch.Tensor]]:
    """ZeRO-1/2: each group is one flat vector cut into equal partitions, rank order, the last one
    padded (`group_paddings`; the fp32 copy is saved without it)."""
    gaps = parts[0].get("param_alignment_paddings") or [[0] * len(s) for s in param_shapes]
    keys = [FP32] + [
        k for k, v in parts[0]["base_optimizer_state"]["state"][0].items() if _per_element(v)
    ]
    out: dict[str, dict[str, torch.Tensor]] = {k: {} for k in keys}
    for i, shapes in enumerate(param_shapes):
        for key in keys:
            pieces = []
            for part in parts:
                if key == FP32:
                    pieces.append(part["single_partition_of_fp32_groups"][i])
                else:
                    saved = part["base_optimizer_state"]["state"][i][key]
                    pieces.append(saved.narrow(0, 0, saved.numel() - part["group_paddings"][i]))
            out[key].update(_split(torch.cat(pieces), shapes, gaps[i]))
    return out


def _zero3_rank_vectors(part: dict, torch_state: dict) -> dict[str, torch.Tensor]:
    """ZeRO-3: one rank's pieces of every parameter, its sub-groups concatenated, per quantity."""
    out = {FP32: torch.cat(list(part["fp32_flat_groups"]))}
    groups = [torch_state["state"][i] for i in range(len(part["fp32_flat_groups"]))]
    for key, value in groups[0].items():
        if _per_element(value):
            out[key] = torch.cat([g[key] for g in groups])
    return out


def _zero3_merge(
    ranks: list[dict[str, torch.Tensor]], param_shapes: list[dict]
) -> dict[str, dict[str, torch.Tensor]]:
    """ZeRO-3: parameter p of numel n is ceil(n / W) values on each of the W ranks, in order."""
    world = len(ranks)
    out: dict[str, dict[str, torch.Tensor]] = {k: {} for k in ranks[0]}
    offset = 0
    for shapes in param_shapes:
        for name, shape in shapes.items():
            numel = math.prod(shape)
            piece = math.ceil(numel / world)
            for key in out:
                full = torch.cat([r[key].narrow(0, offset, piece) for r in ranks])
                out[key][name] = full[:numel].view(shape).clone()
            offset += piece
    if offset != ranks[0][FP32].numel():
        raise CheckpointError(
            f"ZeRO-3 partitions hold {ranks[0][FP32].numel()} values per rank, the parameters "
            f"need {offset}: the checkpoint does not match its own parameter list"
        )
    return out


# ---------------------------------------------------------------------------------------------
#                       Load: full tensors -> this rank's partitions
# ---------------------------------------------------------------------------------------------


@dataclass
class _Slot:
    """Where this rank keeps part of a parameter: values [start, start + numel) of the flattened
    parameter go to [at, at + numel) of flat partition `group`."""

    group: int
    at: int
    name: str
    start: int
    numel: int


def _zero12_slots(engine: Any) -> list[_Slot]:
    """ZeRO-1/2: DeepSpeed links each parameter to its fragment of this rank's fp32 partition."""
    slots = []
    for name, p in engine.module.named_parameters():
        frag = getattr(p, "_hp_mapping", None)
        if frag is not None:  # None: no element of this parameter lives on this rank
            slots.append(
                _Slot(
                    frag.param_group_index,
                    frag.hp_fragment_address.start,
                    name,
                    frag.lp_fragment_address.start,
                    frag.lp_fragment_address.numel,
                )
            )
    return slots


def _zero3_slots(engine: Any) -> list[_Slot]:
    """ZeRO-3: each parameter's piece sits at its `grad_position` in its sub-group's partition."""
    opt = engine.optimizer
    names = {id(p): n for n, p in engine.module.named_parameters()}
    slots = []
    for group in opt.fp16_groups:
        for p in group:
            index, at, numel = opt.grad_position[opt.get_param_id(p)]
            start = dist.get_rank(group=p.ds_process_group) * numel
            valid = max(0, min(numel, p.ds_numel - start))  # the last piece is padded with zeros
            slots.append(_Slot(index, at, names[id(p)], start, valid))
    return slots


def load_zero_state(engine: Any, state: ZeroState) -> None:
    """Give a freshly initialised DeepSpeed engine (ZeRO 1-3, any world size) its partitions of
    `state`: fp32 master weights, AdamW state, model weights, LR schedule and counters."""
    if engine.zero_optimization_stage() != state.stage:
        raise CheckpointError(
            f"cannot load ZeRO-{state.stage} state into a ZeRO-{engine.zero_optimization_stage()} engine"
        )
    opt = engine.optimizer
    inner = opt.optimizer  # the torch AdamW stepping on the flat fp32 partitions
    if state.stage == 3:
        flats, slots = list(opt.fp32_partitioned_groups_flat), _zero3_slots(engine)
    else:
        flats, slots = [g["params"][0] for g in inner.param_groups], _zero12_slots(engine)
    values = {key: [torch.zeros_like(f) for f in flats] for key in state.tensors}
    for s in slots:
        for key, full in state.tensors.items():
            piece = full[s.name].flatten().narrow(0, s.start, s.numel)
            values[key][s.group].narrow(0, s.at, s.numel).copy_(piece)
    with torch.no_grad():
        for flat, value in zip(flats, values[FP32]):
            flat.copy_(value)
        for i, flat in enumerate(flats):
            per_element = {k: v[i] for k, v in values.items() if k != FP32}
            scalars = {k: v.clone() if torch.is_tensor(v) else v for k, v in state.scalars.items()}
            inner.state[flat] = {**scalars, **per_element}  # `step` stays where AdamW keeps it
        for group in inner.param_groups:
            group.update(state.settings)
        _copy_model_weights(engine, state, values[FP32], slots)
    engine.lr_scheduler.load_state_dict(state.engine["lr_scheduler"])
    engine.global_steps = state.engine["global_steps"]
    engine.global_samples = state.engine["global_samples"]
    engine.skipped_steps = state.engine["skipped_steps"]


def _copy_model_weights(
    engine: Any, state: ZeroState, fp32: list[torch.Tensor], slots: list[_Slot]
) -> None:
    """The weights the forward pass uses (bf16 or fp32) from the fp32 masters: the whole
    parameter under ZeRO-1/2, this rank's piece (`ds_tensor`) under ZeRO-3."""
    if state.stage != 3:
        for name, p in engine.module.named_parameters():
            p.data.copy_(state.tensors[FP32][name])
        return
    params = {n: p for n, p in engine.module.named_parameters()}
    for s in slots:
        piece = params[s.name].ds_tensor
        piece.data.copy_(fp32[s.group].narrow(0, s.at, piece.numel()))
