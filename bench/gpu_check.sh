#!/usr/bin/env bash
# bench/gpu_check.sh -- is training right and fast on a GPU? One H100/H200, under 8 minutes.
#
#   bench/gpu_check.sh                   on the GPU machine, from anywhere in the checkout
#   bench/gpu_check.sh --dry-run         every step at toy size on the CPU (what the test runs:
#                                        tests/training/test_gpu_check.py)
#   bench/gpu_check.sh --list-wheels     the packages .whl/ must hold (from this checkout's .venv)
#   bench/gpu_check.sh --download-wheels fill .whl/ with them, where a package registry is reachable
#
# Python: the GPU machine's own torch (a CUDA build, >= 2.4: a lower bound, never replaced). The
# other packages are used as installed; whatever is missing is installed without a registry from
# the wheels in .whl/ (ignored by git) into a folder put first on PYTHONPATH. Wheels of torch,
# triton and nvidia-* are never installed. --download-wheels gets wheels for the GPU machine's
# Python (GPU_PYTHON_VERSION, default 3.12) and the torchvision of its torch (GPU_TORCHVISION,
# default 0.26.0, for torch 2.11).
#
# Each result line also goes to $OUT/summary.txt (OUT defaults to ${TMPDIR:-/tmp}/gpucheck):
#   1. device, driver, torch / CUDA / NCCL versions, bf16
#   2. which SDPA backends (flash, cuDNN, efficient, math) take the model's own q/k/v in bf16
#      (head dim 64: DiT-S/B/L, 72: DiT-XL), and one attention layer's forward + backward time
#   3. bf16 MFU of the whole training step (bench/train_step.py: forward, backward, fused AdamW)
#      for DiT-S/B/L/XL at 2048 tokens (128x128x32 videos, batch 8) and 8192 (256x256x32, batch 4)
#   4. the sequence-parallel code path's overhead at SP=1, on NCCL (bench/sequence_parallel.py)
#   5. `python -m training` under torchrun on NCCL: DiT-S on 2048-token latents, 30 steps in fp32
#      and in bf16 (loss parity), and an exact resume of the bf16 run from its step-15 checkpoint
#      (losses of steps 16-30 and the final weights, bit for bit)
#   6. as 3 with compiled blocks (parallel.compile), DiT-S at 2048 tokens and DiT-XL at 8192
# Steps that would run past GPU_CHECK_BUDGET_S (default 420 s) are skipped and say so.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

mode=gpu
case "${1:-}" in
  "") ;;
  --dry-run) mode=dry ;;
  --list-wheels) mode=list ;;
  --download-wheels) mode=download ;;
  *)
    sed -n '2,30p' "$0" >&2
    exit 2
    ;;
esac

PY=${PYTHON:-python3}
[ "$mode" != gpu ] && [ -x .venv/bin/python ] && PY=${PYTHON:-.venv/bin/python}
base_path=${PYTHONPATH:-}
export PYTHONPATH=$PWD${base_path:+:$base_path} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

# --- wheels for a machine without a package registry -------------------------------------------
wheel_list() {
  # The closure of phyworld's requirements as installed here, without torch and the CUDA stack.
  "$PY" - "${GPU_TORCHVISION:-0.26.0}" <<'EOF'
import importlib.metadata as md, re, sys
from packaging.requirements import Requirement
skip = re.compile(r"^(torch|torchvision|triton|nvidia-.*|phyworld)$")
canon = lambda name: re.sub(r"[-_.]+", "-", name).lower()
pins, todo = {}, ["phyworld"]
while todo:
    for text in md.distribution(todo.pop()).requires or []:
        req = Requirement(text)
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        name = canon(req.name)
        if name in pins or skip.match(name):
            continue
        try:
            pins[name] = md.version(req.name)
        except md.PackageNotFoundError:
            continue
        todo.append(req.name)
pins["torchvision"] = sys.argv[1]  # must match the GPU machine's torch, not this one's
print("\n".join(f"{name}=={version}" for name, version in sorted(pins.items())))
EOF
}

if [ "$mode" = list ]; then
  wheel_list
  exit $?
fi
if [ "$mode" = download ]; then
  mkdir -p .whl
  target=(--python-version "${GPU_PYTHON_VERSION:-3.12}" --implementation cp --platform
    manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
  failed=0
  for req in $(wheel_list); do
    # A binary wheel for the GPU machine's Python, else a wheel built here (pure-Python sdists).
    "$PY" -m pip download -q --no-deps --only-binary=:all: "${target[@]}" -d .whl "$req" 2>/dev/null ||
      "$PY" -m pip wheel -q --no-deps -w .whl "$req" || { echo "no wheel for $req" >&2; failed=1; }
  done
  du -sh .whl
  exit "$failed"
fi

# --- the check ----------------------------------------------------------------------------------
OUT=${OUT:-${TMPDIR:-/tmp}/gpucheck}
WORK=${TMPDIR:-/tmp}/phyworld-gpucheck  # data, runs, installed wheels: not under $OUT
BUDGET=${GPU_CHECK_BUDGET_S:-420}
rm -rf "$WORK" && mkdir -p "$OUT" "$WORK"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
start=$SECONDS
say() { echo "=== [$((SECONDS - start)) s] $*" | tee -a "$SUMMARY"; }
note() { tee -a "$SUMMARY"; }
# in_budget SECONDS_NEEDED: true if the step fits in what is left of the budget
in_budget() {
  if [ $((SECONDS - start + $1)) -le "$BUDGET" ]; then return 0; fi
  say "skipped (needs ~$1 s, $((BUDGET - SECONDS + start)) s left of GPU_CHECK_BUDGET_S=$BUDGET)"
  return 1
}
if [ "$mode" = dry ]; then
  export DS_ACCELERATOR=cpu CUDA_VISIBLE_DEVICES=""
  DEVICE=cpu
else
  DEVICE=cuda
fi

say "1. device and stack (mode $mode)"
command -v nvidia-smi >/dev/null &&
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | note
"$PY" - "$DEVICE" <<'EOF' 2>&1 | note || exit 1
import sys
import torch
from training.distributed import select_device
major, minor = (int(v) for v in torch.__version__.split(".")[:2])
assert (major, minor) >= (2, 4), f"torch {torch.__version__}: phyworld needs torch >= 2.4"
device = select_device(sys.argv[1])  # on a GPU machine: the fix if CUDA is unusable
line = f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), device {device}"
if device == "cuda":
    cap = torch.cuda.get_device_capability()
    line += (f": {torch.cuda.get_device_name()} sm_{cap[0]}{cap[1]}, bf16 "
             f"{torch.cuda.is_bf16_supported()}, NCCL {'.'.join(map(str, torch.cuda.nccl.version()))}")
print(line)
EOF

# Packages: as installed, else from .whl/ into $WORK/site (first on PYTHONPATH).
missing() {
  "$PY" - <<'EOF'
import importlib
import phyworld  # noqa: F401  (before streaming: makes torchvision importable where it is broken)
for name in ("numpy", "omegaconf", "yaml", "megatron.core", "deepspeed", "streaming", "tensorboard", "zstandard"):
    try:
        importlib.import_module(name)
    except Exception:
        print(name)
EOF
}
lacking=$(missing | tr '\n' ' ')
if [ -n "$lacking" ] && [ "$mode" = gpu ] && compgen -G ".whl/*.whl" >/dev/null; then
  say "installing from .whl/ (no registry) for: $lacking"
  mapfile -t wheels < <(ls .whl/*.whl | grep -v -E '/(torch|triton|nvidia_[a-z0-9_]+)-[0-9]')
  "$PY" -m pip install -q --no-index --no-deps --target "$WORK/site" "${wheels[@]}" \
    >"$OUT/pip.txt" 2>&1 || say "pip install from .whl/ failed: see $OUT/pip.txt"
  # after the checkout, before the machine's own packages: numpy and friends at our versions
  export PYTHONPATH=$PWD:$WORK/site${base_path:+:$base_path}
  lacking=$(missing | tr '\n' ' ')
fi
[ -n "$lacking" ] && say "cannot import: $lacking(steps 4-5 need them: fill .whl/, see --download-wheels)"

say "2. SDPA backends on the model's q/k/v layout, one attention layer forward + backward"
if in_budget 40; then
  timeout 120 "$PY" - "$mode" <<'EOF' 2>&1 | note
import sys, time
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from training.model import Attention, rope_cos_sin
dry = sys.argv[1] == "dry"
device = torch.device("cpu" if dry else "cuda")
dtype = torch.float32 if dry else torch.bfloat16
grid = (2, 4, 4) if dry else (32, 8, 8)  # 2048 tokens on the GPU
positions = torch.stack(torch.meshgrid(*[torch.arange(n) for n in grid], indexing="ij"), -1)
positions = positions.reshape(-1, 3).to(device)
def timed(fn, n):
    fn()
    if not dry: torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n): fn()
    if not dry: torch.cuda.synchronize()
    return (time.perf_counter() - t) / n * 1e3
for hidden, heads in ((64, 4),) if dry else ((384, 6), (1152, 16)):
    attn = Attention(hidden, heads).to(device, dtype)
    x = torch.randn(8, positions.shape[0], hidden, device=device, dtype=dtype, requires_grad=True)
    cos, sin = rope_cos_sin(positions, hidden // heads, dtype=dtype)
    step = lambda: attn(x, cos, sin).float().square().mean().backward()
    results = [f"default {timed(step, 2 if dry else 10):.2f} ms"]
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION,
                    SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH):
        try:
            with sdpa_kernel([backend]):
                results.append(f"{backend.name} {timed(step, 2 if dry else 10):.2f} ms")
        except RuntimeError as err:
            results.append(f"{backend.name} refused ({str(err).splitlines()[0][:60]})")
    print(f"head dim {hidden // heads}, {x.shape[1]} tokens, {dtype}: " + "; ".join(results))
EOF
fi

say "3. bf16 MFU of the whole step (forward, backward, fused AdamW) against 989 TFLOP/s"
if [ "$mode" = dry ]; then
  shapes=("--sizes tiny --resolution 32 --frames 4 --downsample 4 --batch 1 --steps 1 --warmup 1")
  compiled=()
else
  shapes=("--sizes S,B,L,XL --resolution 128 --frames 32 --downsample 8 --batch 8"
    "--sizes S,B,L,XL --resolution 256 --frames 32 --downsample 8 --batch 4")
  compiled=("--sizes S --resolution 128 --frames 32 --downsample 8 --batch 8 --compile"
    "--sizes XL --resolution 256 --frames 32 --downsample 8 --batch 4 --compile")
fi
run=0
mfu() { # bench/train_step.py with these arguments, its results to the summary
  in_budget "$1" || return 1
  run=$((run + 1))
  # shellcheck disable=SC2086
  timeout 240 "$PY" bench/train_step.py --steps 5 --warmup 3 $2 --no-comparisons \
    >"$OUT/train_step_$run.txt" 2>&1
  echo "rc=$?" >>"$OUT/train_step_$run.txt"
  grep -E "^(device|DiT)|Error|rc=[1-9]" "$OUT/train_step_$run.txt" | note
}
for args in "${shapes[@]}"; do mfu 60 "$args" || break; done

say "4. the SP code path at SP=1 against the plain model (process group on $([ "$mode" = dry ] && echo gloo || echo NCCL))"
if in_budget 60; then
  steps=$([ "$mode" = dry ] && echo 1 || echo 10)
  timeout 180 "$PY" bench/sequence_parallel.py --overhead-only --steps "$steps" >"$OUT/sp.txt" 2>&1
  echo "rc=$?" >>"$OUT/sp.txt"
  grep -E "ratio|Error|rc=" "$OUT/sp.txt" | note
fi

say "5. python -m training on $([ "$mode" = dry ] && echo gloo || echo NCCL): fp32 vs bf16, checkpoint, exact resume"
if [ "$mode" = dry ]; then
  size=tiny steps=6 every=3 shape="12 4 8" workers=0 extra=(parallel.device=cpu)
else
  size=S steps=30 every=15 shape="12 32 16" workers=2 extra=()
fi
if [ -n "$lacking" ]; then
  say "skipped: cannot import $lacking"
elif in_budget 150; then
  # Latents as training.encode writes them: (C, T, h, w) float16; C = 12 is the pixel VAE at 2x.
  # shellcheck disable=SC2086
  "$PY" - "$WORK/latents" $shape <<'EOF' 2>&1 | note
import sys
import numpy as np
import phyworld  # noqa: F401  (before streaming)
from streaming import MDSWriter
root, c, t, hw = sys.argv[1], *map(int, sys.argv[2:])
rng = np.random.default_rng(0)
with MDSWriter(out=root, columns={"id": "str", "latents": "ndarray:float16"}) as writer:
    for i in range(256):
        writer.write({"id": f"gpucheck-{i:09d}", "latents": rng.standard_normal((c, t, hw, hw)).astype(np.float16)})
print(f"256 latent samples {c} x {t} x {hw} x {hw} ({t * (hw // 2) ** 2} tokens) in {root}")
EOF
  read -r _ frames _ <<<"$shape"
  common=(configs/train/tiny_cpu.yaml "model.size=$size" vae.kind=pixel vae.downsample=2
    data.kind=latents "data.path=$WORK/latents" "data.frames=$frames" data.verify_manifest=false
    "data.num_workers=$workers" parallel.micro_batch_size=8 optim.warmup_steps=10
    logging.every_steps=1 logging.video_every_steps=0 "max_steps=$steps"
    "checkpoint.every_steps=$every" checkpoint.keep_last=2 "${extra[@]}")
  train() { # NAME PRECISION: one process under torchrun, its log in $OUT/train_NAME.txt
    timeout 150 "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 -m training \
      "${common[@]}" "output_dir=$WORK/$1" "parallel.precision=$2" >"$OUT/train_$1.txt" 2>&1
    local rc=$?
    echo "train $1 ($2): rc=$rc, $(grep -c '^step ' "$OUT/train_$1.txt") step lines," \
      "$(grep -o 'mfu [0-9.]*%' "$OUT/train_$1.txt" | tail -1)" \
      "$(grep -m1 -E '^[A-Za-z]*Error|error:' "$OUT/train_$1.txt")" | note
    return "$rc"
  }
  train fp32 fp32
  in_budget 100 && train bf16 bf16 && {
    # The bf16 run again from its step-`every` checkpoint: a copy whose newest checkpoint is that.
    cp -r "$WORK/bf16" "$WORK/resumed"
    rm -rf "$WORK/resumed/tb" "$WORK/resumed/checkpoints/step_$(printf %08d "$steps")"
    printf 'step_%08d' "$every" >"$WORK/resumed/checkpoints/latest"
    in_budget 50 && train resumed bf16
  }
  "$PY" - "$WORK" "$steps" "$every" <<'EOF' 2>&1 | note
import sys
from pathlib import Path
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
work, steps, every = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def losses(run):
    out = {}
    for events in sorted((work / run / "tb").glob("events.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        out.update({e.step: e.value for e in acc.Scalars("train/loss")})
    return out
fp32, bf16, resumed = (losses(r) if (work / r / "tb").is_dir() else {} for r in ("fp32", "bf16", "resumed"))
if len(fp32) == len(bf16) == steps:
    rel = [abs(bf16[s] - fp32[s]) / abs(fp32[s]) for s in range(1, steps + 1)]
    print(f"loss parity bf16 vs fp32 over {steps} steps: max rel diff {max(rel):.2%}, mean "
          f"{sum(rel) / steps:.2%}; loss {fp32[1]:.4f} -> {fp32[steps]:.4f} (fp32), "
          f"{bf16[1]:.4f} -> {bf16[steps]:.4f} (bf16)")
else:
    print(f"loss parity: not measured (steps logged: fp32 {len(fp32)}, bf16 {len(bf16)})")
after = list(range(every + 1, steps + 1))
if sorted(resumed) == after:
    same = all(resumed[s] == bf16[s] for s in after)
    worst = max(abs(resumed[s] - bf16[s]) for s in after)
    final = f"checkpoints/step_{steps:08d}/weights.pt"
    a, b = (torch.load(work / r / final, weights_only=True) for r in ("bf16", "resumed"))
    diff = max((a[p][k].float() - b[p][k].float()).abs().max().item() for p in a for k in a[p])
    print(f"exact resume from step {every}: losses of steps {every + 1}-{steps} identical: "
          f"{same} (max diff {worst:.2e}); final weights and EMA identical: {diff == 0} "
          f"(max abs diff {diff:.2e})")
else:
    print(f"exact resume: not measured (resumed run logged steps {sorted(resumed)})")
EOF
fi
say "6. bf16 MFU with compiled blocks (parallel.compile: the first steps compile)"
[ ${#compiled[@]} -eq 0 ] && echo "(not on the CPU)" | note
for args in "${compiled[@]}"; do mfu 90 "$args" || break; done
say "done in $((SECONDS - start)) s; logs in $OUT"
