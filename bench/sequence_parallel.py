"""Ulysses sequence parallelism: what the all-to-alls move, and what the SP code path costs at SP=1.

    python bench/sequence_parallel.py                  # CPU (gloo): SP 1, 2, 4 + overhead, tiny shapes
    python bench/sequence_parallel.py --sizes 1 2 4 8  # more processes (one per SP rank)
    python bench/sequence_parallel.py --overhead-only  # on a GPU: DiT-XL, 32 x 32 x 32 latents

1. Bytes per rank per training step (forward + backward), measured by counting what our code
   hands to `all_to_all_single` and megatron's all-gather, next to the formula

       all-to-all:  depth x 2 (fwd, bwd) x 4 (q, k, v out; attention back) x B x N/SP x D x (SP-1)/SP
       all-gather:  B x N/SP x P x (SP-1)         (the output patches, forward only)

   (times bytes per element; with activation checkpointing the forward all-to-alls run twice:
   x 3 instead of x 2). Two sweeps: weak scaling (N grows with SP: Ulysses's claim is that the
   bytes per rank then stay constant, up to the (SP-1)/SP factor) and fixed N (bytes per rank fall
   as 1/SP). The printed ratio is each row against the SP=2 row of the same sweep.
2. Overhead of the SP code path at SP=1 (class swap, layout copies around the no-op exchanges),
   timed against the plain DiT in the same process: on CUDA if present, else on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.model import DIT_CONFIGS, DiT

LATENT_CHANNELS = 4
PATCH = 2


def build(size: str, device: torch.device, dtype: torch.dtype) -> DiT:
    s = DIT_CONFIGS[size]
    torch.manual_seed(0)
    model = DiT(LATENT_CHANNELS, s.depth, s.hidden_size, s.num_heads, patch_hw=PATCH)
    with torch.no_grad():  # live weights everywhere (DiT zero-inits its output layers)
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    return model.to(device=device, dtype=dtype)


def batch(
    b: int, frames: int, latent: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, LATENT_CHANNELS, frames, latent, latent, generator=g).to(device, dtype)
    mask = torch.zeros(b, 1, frames, latent, latent, device=device, dtype=dtype)
    mask[:, :, :1] = 1
    return x, torch.rand(b, generator=g).to(device), x * mask, mask


def train_step(model: DiT, inputs: tuple[torch.Tensor, ...]) -> None:
    model(*inputs).float().square().mean().backward()


# ---------------------------------------------------------------------------------------------
#                       1. Bytes moved per step, counted at the collectives
# ---------------------------------------------------------------------------------------------


def formula_bytes(
    depth: int, b: int, n: int, d: int, p: int, sp: int, elem: int
) -> dict[str, float]:
    all_to_all = depth * 2 * 4 * b * (n / sp) * d * (sp - 1) / sp * elem
    all_gather = b * (n / sp) * p * (sp - 1) * elem
    return {"all_to_all": all_to_all, "all_gather": all_gather}


def _count_bytes(counts: dict[str, int]) -> None:
    """Wrap the two collectives our SP code calls, counting the bytes that leave this rank."""
    from megatron.core.tensor_parallel import mappings

    a2a, gather = dist.all_to_all_single, mappings.dist_all_gather_func

    def counted_a2a(output, input, *args, group=None, **kwargs):
        sp = dist.get_world_size(group)
        counts["all_to_all"] += input.numel() * input.element_size() * (sp - 1) // sp
        return a2a(output, input, *args, group=group, **kwargs)

    def counted_gather(output, input, group=None, **kwargs):
        sp = dist.get_world_size(group)
        counts["all_gather"] += input.numel() * input.element_size() * (sp - 1)  # ring: SP-1 sends
        return gather(output, input, group=group, **kwargs)

    dist.all_to_all_single = counted_a2a
    mappings.dist_all_gather_func = counted_gather


def _comm_rank(
    rank: int, sp: int, port: int, size: str, frames: int, latent: int, out: str
) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=sp)
    from training.parallel.groups import destroy_parallel, init_parallel
    from training.parallel.sequence import apply_sequence_parallel

    groups = init_parallel(sp)
    cpu = torch.device("cpu")
    model = apply_sequence_parallel(build(size, cpu, torch.float32), groups)
    inputs = batch(1, frames, latent, cpu, torch.float32)
    train_step(model, inputs)  # warm-up (and the one-off check that SP ranks agree on inputs)
    counts = {"all_to_all": 0, "all_gather": 0}
    _count_bytes(counts)
    start = time.perf_counter()
    train_step(model, inputs)
    seconds = time.perf_counter() - start
    if rank == 0:
        Path(out).write_text(json.dumps({**counts, "seconds": seconds}))
    destroy_parallel()
    dist.barrier()
    dist.destroy_process_group()


def comm_sweep(sizes: list[int], size: str, frames_per_rank: int, latent: int, weak: bool) -> None:
    s = DIT_CONFIGS[size]
    p = LATENT_CHANNELS * PATCH * PATCH
    rows = []
    for sp in sizes:
        if s.num_heads % sp:
            print(f"  skip SP={sp}: {s.num_heads} heads do not divide")
            continue
        frames = frames_per_rank * (sp if weak else max(sizes))
        n = frames * (latent // PATCH) ** 2
        with tempfile.TemporaryDirectory() as tmp:
            out = str(Path(tmp) / "result.json")
            mp.spawn(
                _comm_rank, args=(sp, _free_port(), size, frames, latent, out), nprocs=sp, join=True
            )
            measured = json.loads(Path(out).read_text())
        expected = formula_bytes(s.depth, 1, n, s.hidden_size, p, sp, 4)
        rows.append((sp, n, measured, expected))
    base = next((r[2]["all_to_all"] for r in rows if r[0] == 2), None)
    print(
        f"  {'SP':>3} {'tokens':>7} {'a2a MB/rank':>12} {'formula':>9} {'gather KB':>10} "
        f"{'formula':>9} {'vs SP=2':>8} {'step s':>7}"
    )
    for sp, n, m, e in rows:
        vs = f"{m['all_to_all'] / base:8.3f}" if base else "       -"
        print(
            f"  {sp:>3} {n:>7} {m['all_to_all'] / 1e6:>12.3f} {e['all_to_all'] / 1e6:>9.3f} "
            f"{m['all_gather'] / 1e3:>10.1f} {e['all_gather'] / 1e3:>9.1f} {vs} {m['seconds']:>7.2f}"
        )
        for key in ("all_to_all", "all_gather"):
            if abs(m[key] - e[key]) > 1e-6 * max(1.0, e[key]):
                raise SystemExit(f"measured {key} bytes {m[key]} differ from the formula {e[key]}")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------
#                           2. Overhead of the SP code path at SP=1
# ---------------------------------------------------------------------------------------------


def overhead(size: str, frames: int, latent: int, batch_size: int, steps: int) -> None:
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    dist.init_process_group("nccl" if cuda else "gloo", rank=0, world_size=1)
    from training.parallel.groups import destroy_parallel, init_parallel
    from training.parallel.sequence import apply_sequence_parallel

    groups = init_parallel(1)
    plain = build(size, device, dtype)
    sp_path = apply_sequence_parallel(build(size, device, dtype), groups, force=True)
    inputs = batch(batch_size, frames, latent, device, dtype)

    def timed(model: DiT) -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        train_step(model, inputs)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for model in (plain, sp_path):  # warm-up
        timed(model)
    times: dict[str, list[float]] = {"plain": [], "sp": []}
    for _ in range(steps):  # interleaved, so drift in machine load hits both alike
        times["plain"].append(timed(plain))
        times["sp"].append(timed(sp_path))
    # The minimum: on a shared machine, load only ever adds time.
    t_plain, t_sp = min(times["plain"]), min(times["sp"])
    n = frames * (latent // PATCH) ** 2
    name = torch.cuda.get_device_name() if cuda else "CPU"
    print(
        f"  DiT-{size}, B={batch_size}, {n} tokens, {dtype}, {name}: plain {t_plain * 1e3:.1f} ms, "
        f"SP path at SP=1 {t_sp * 1e3:.1f} ms, ratio {t_sp / t_plain:.3f} (best of {steps})"
    )
    destroy_parallel()
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--model", choices=list(DIT_CONFIGS), help="overhead run; default XL on CUDA, tiny on CPU"
    )
    parser.add_argument("--comm-model", default="tiny", choices=list(DIT_CONFIGS))
    parser.add_argument(
        "--frames", type=int, help="latent frames of the overhead run (32 on CUDA, 4 on CPU)"
    )
    parser.add_argument("--latent", type=int, default=16, help="latent height = width (comm sweep)")
    parser.add_argument(
        "--overhead-latent",
        type=int,
        help="latent size of the overhead run (32 on CUDA, 16 on CPU)",
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--overhead-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(max(1, (os.cpu_count() or 1)))

    if not args.overhead_only:
        s = DIT_CONFIGS[args.comm_model]
        print(
            f"all-to-all bytes per rank per step, DiT-{args.comm_model} (D={s.hidden_size}, "
            f"depth {s.depth}), fp32, B=1, {args.latent}x{args.latent} latents, patch {PATCH}"
        )
        print("weak scaling (frames = 2 x SP):")
        comm_sweep(args.sizes, args.comm_model, 2, args.latent, weak=True)
        print(f"fixed sequence (frames = 2 x {max(args.sizes)}):")
        comm_sweep(args.sizes, args.comm_model, 2, args.latent, weak=False)
    print("overhead of the SP code path at SP=1 (ratio = SP path / plain):")
    cuda = torch.cuda.is_available()  # 256x256x32 videos through an 8x VAE on a GPU
    model = args.model or ("XL" if cuda else "tiny")
    frames = args.frames or (32 if cuda else 4)
    latent = args.overhead_latent or (32 if cuda else 16)
    overhead(model, frames, latent, args.batch, args.steps)


if __name__ == "__main__":
    main()
