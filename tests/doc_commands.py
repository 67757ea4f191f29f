"""The commands printed in README.md and docs/*.md, and how the tests check each one.

How the docs show commands, so that they can be checked:
- A ```bash block holds commands run from the repository root, one per line: a trailing `\\`
  continues a line, `# ...` ends it with a comment, `&&` chains commands. A file excerpt (a part
  of slurm/site.sh, say) goes in a ```sh block: only its shell syntax is checked.
- A command names real paths and values, never placeholders (`$RUN`, `DATA/...`): pasted as is,
  it works.

The fast stage (tests/docs) checks every command without running it: its shell syntax, its
config (the YAML and every `key=value` resolve, `--help`-listed choices and ranges hold), for
training the global batch on the GPUs the command asks for, and a study's dry run. The slow
stage runs the ones a CPU can run (`RUN`), in the docs' order, in a scratch checkout, each with
the arguments of its `RUN` entry appended so it takes seconds; tests/slurm submits every
`slurm/submit.sh` command with `--test-only` to the local Slurm cluster. A command that none of
this covers must be listed in `NOT_RUN` with the reason: a new kind of command fails the test
until it is.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# What the slow stage appends to a command (keyed by the command as written, continuation lines
# joined, comment dropped) so that it runs in seconds on a CPU; [] runs it as written. Extend it
# when you document a command a CPU can run.
QUICK = ["steps=30", "grid_v=8", "grid_r=2", "eval_videos=8", "sample_steps=2"]
RUN: dict[str, list[str]] = {
    # README: the quickstart, smaller (tests/pipeline/test_quickstart.py runs it at full size)
    ".venv/bin/python -m pipeline.quickstart": QUICK,
    "python -m training configs/train/quickstart.yaml data.path=quickstart/data/uniform_train "
    "output_dir=runs/tiny_quickstart": ["max_steps=20"],
    # docs/datagen_phyre.md
    "python -m datagen configs/data/phyre_tiny.yaml": [],
    # docs/quickstart.md: the README's quickstart again, which finds every stage done
    "python -m pipeline.quickstart": QUICK,
    # docs/training.md
    ".venv/bin/python -m datagen configs/data/uniform_base.yaml output=data/uniform_tiny "
    "sampling=random count=64 frames=8 resolution=32": [],
    ".venv/bin/python -m training configs/train/quickstart.yaml data.path=data/uniform_tiny "
    "output_dir=runs/tiny max_steps=100": [],
}
# Every other `python -m datagen` command: one part of 8 videos of the dataset (its config,
# simulation, rendering and storage, local or on the S3 test server), not the whole dataset.
DATAGEN_PART = ["part_size=8", "workers=1000000", "worker=0", "mode=generate", "progress=false"]

# Commands that are not run, by how they start, with the reason.
NOT_RUN: dict[str, str] = {
    "python3 -m venv": "the install: .ci/run runs it from a fresh clone",
    ".venv/bin/pip install": "the install: .ci/run runs it from a fresh clone",
    ".venv/bin/python -m pytest": "the test suite itself",
    "pytest ": "the test suite itself",
    "apt-get install": "system packages: .ci/run installs them",
    "python bench/": "a benchmark: minutes of CPU, results in bench/RESULTS.md",
    ".venv/bin/python bench/": "a benchmark: minutes of CPU, results in bench/RESULTS.md",
    ".venv/bin/tensorboard": "a server; its log directory is checked by the training tests",
    "source slurm/site.sh": "exports the site's settings into the shell (tests/slurm/test_slurm_scripts)",
    "squeue": "reads the cluster's queue",
    "PHYWORLD_NETNS_DIR=/tmp/pwnetns tests/slurm/netns_cluster.sh": "the two-node cluster (root, "
    "network namespaces): tests/slurm/test_multinode.py starts and stops it the same way",
    "tests/slurm/cluster.sh": "the one-node test cluster: tests/slurm/conftest.py starts and "
    "stops it the same way",
    "scancel ": "cancels a job: tests/slurm/test_study_run.py kills a study's training job and "
    "submits the study again",
    "export ": "sets the shell's environment for the commands after it",
    "grep ": "reads a job's log",
    "bench/gpu_check.sh": "the GPU check; tests/training/test_gpu_check.py runs its --dry-run",
}

# slurm/SCRIPT.sh -> the `python -m` command it runs, and the arguments it adds first.
SLURM_SCRIPTS = {
    "slurm/train_s.sh": ("training", ["model.size=S"]),
    "slurm/train_b.sh": ("training", ["model.size=B"]),
    "slurm/train_l.sh": ("training", ["model.size=L"]),
    "slurm/train_xl.sh": ("training", ["model.size=XL"]),
    "slurm/eval.sh": ("eval", []),
    "slurm/vae.sh": ("training.vae", []),
    "slurm/report.sh": ("eval.report", []),
    "slurm/encode.sh": ("training.encode", []),
}
PYTHONS = {"python", "python3", ".venv/bin/python"}


@dataclass(frozen=True)
class Command:
    """One documented command: where it is, its text as written and its words."""

    where: str  # README.md:42
    text: str
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"

    def not_run(self) -> str | None:
        """Why the command is not run (None: it is checked)."""
        return next((why for start, why in NOT_RUN.items() if self.text.startswith(start)), None)

    def module(self) -> tuple[str, list[str]] | None:
        """`python -m MODULE ARGS` (also torchrun's) -> (MODULE, ARGS)."""
        argv = list(self.argv)
        if (argv[0] in PYTHONS or argv[0].endswith("torchrun")) and "-m" in argv:
            i = argv.index("-m")
            return argv[i + 1], argv[i + 2 :]
        return None

    def torchrun_procs(self) -> int:
        """Processes torchrun starts (1 for a plain python)."""
        for i, word in enumerate(self.argv):
            if word.startswith(("--nproc-per-node", "--nproc_per_node")):
                return int(word.split("=", 1)[1] if "=" in word else self.argv[i + 1])
        return 1

    def slurm(self) -> tuple[list[str], str, list[str]] | None:
        """`slurm/submit.sh|sbatch [sbatch options] SCRIPT ARGS` -> (options, SCRIPT, ARGS)."""
        if self.argv[0] not in ("slurm/submit.sh", "sbatch"):
            return None
        script = next(i for i, w in enumerate(self.argv) if w.endswith(".sh") and i > 0)
        return list(self.argv[1:script]), self.argv[script], list(self.argv[script + 1 :])

    def datagen_array(self) -> list[str] | None:
        """`[bash] slurm/datagen.sh [--workers N ...] CONFIG ARGS` -> [CONFIG, ARGS...]."""
        argv = list(self.argv[1:] if self.argv[0] == "bash" else self.argv)
        if argv[0] != "slurm/datagen.sh":
            return None
        rest, i = argv[1:], 0
        while i < len(rest) and rest[i].startswith("--"):
            i += 2
        return rest[i:]


def fenced_blocks(doc: Path, lang: str) -> list[tuple[int, str]]:
    """(first line number, body) of every ```LANG block of `doc`."""
    text = doc.read_text()
    return [
        (text[: m.start(1)].count("\n") + 1, m.group(1))
        for m in re.finditer(rf"^```{lang}\n(.*?)^```", text, re.M | re.S)
    ]


def documented_commands() -> list[Command]:
    """Every command of the ```bash blocks of README.md and docs/*.md, in the docs' order."""
    out = []
    for doc in DOCS:
        for first, body in fenced_blocks(doc, "bash"):
            pending, start = "", None
            for offset, raw in enumerate(body.split("\n")):
                start = first + offset if start is None else start
                if raw.endswith("\\"):
                    pending += raw[:-1] + " "
                    continue
                words, where = (
                    shlex.split(pending + raw, comments=True),
                    f"{doc.relative_to(REPO)}:{start}",
                )
                pending, start = "", None
                while words:
                    chain = words[: words.index("&&")] if "&&" in words else words
                    out.append(Command(where, shlex.join(chain), tuple(chain)))
                    words = words[len(chain) + 1 :]
    return out


def expand(argv: list[str], env: dict[str, str]) -> list[str]:
    """Environment variables as a shell expands them; an unset one is an error in the docs."""
    out = []
    for word in argv:
        for name in re.findall(r"\$\{?(\w+)\}?", word):
            if name not in env:
                raise AssertionError(f"uses ${name}, which a reader's shell has not set")
        out.append(os.path.expandvars(word) if "$" in word else word)
    return out


def sbatch_gpus(script: str, options: list[str]) -> list[int]:
    """GPU counts a slurm/train_*.sh job may start on: its #SBATCH header, then the command's
    options (`--nodes=2-4`: each count of the range)."""
    from pipeline.study import _sbatch_values

    values = _sbatch_values(REPO / script, options)
    per_node = int(values.get("gpus-per-node", 1))
    return [n * per_node for n in node_counts(values.get("nodes", "1"))]


def node_counts(nodes: str) -> range:
    """The node counts an sbatch `--nodes` value allows: `4`, or each count of a range `2-4`."""
    low, _, high = nodes.partition("-")
    return range(int(low), int(high or low) + 1)


def default_config(script: str) -> str | None:
    """What a slurm script runs when given no config (its `PHYWORLD_DEFAULT_CONFIG`), if any."""
    found = re.search(r"^PHYWORLD_DEFAULT_CONFIG=(\S+)$", (REPO / script).read_text(), re.M)
    return found.group(1) if found else None


def script_args(script: str, args: list[str]) -> list[str]:
    """The arguments a slurm script passes on: a training script's default config when the
    command gives none."""
    if args and "=" not in args[0]:
        return args
    default = default_config(script)
    return [default, *args] if default else args


def check_config(module: str, args: list[str], gpus: list[int] = (1,)) -> None:
    """Resolve the config a command gives MODULE (raising the entry point's error), and for
    training what it checks at start on each count of `gpus` processes (harness.launched_shape)."""
    from datagen.config import DatagenConfig
    from eval.config import EvalConfig
    from eval.report import parse_args
    from eval.vae import VAEEvalConfig
    from phyworld.config import load_config
    from pipeline.quickstart import QuickstartConfig
    from pipeline.study import main
    from training.config import TrainConfig
    from training.encode import EncodeConfig
    from training.vae import VAETrainConfig

    schemas = {
        "datagen": DatagenConfig,
        "training": TrainConfig,
        "eval": EvalConfig,
        "training.vae": VAETrainConfig,
        "eval.vae": VAEEvalConfig,
        "training.encode": EncodeConfig,
        "pipeline.quickstart": QuickstartConfig,
    }
    if module == "eval.report":
        parse_args(args)
    elif module == "pipeline.study":
        main([*args, "dry_run=true"])  # the plan: every dataset, VAE and run config resolves
    elif module in schemas:
        load_config(schemas[module], args)
        if module == "training":
            from harness import launched_shape

            for count in gpus:
                launched_shape(args, count)
    else:
        raise AssertionError(f"no check for `python -m {module}`: add one to tests/doc_commands.py")


def check(command: Command, env: dict[str, str]) -> None:
    """The fast check of one command (see the module docstring)."""
    argv = expand(list(command.argv), env)
    if (called := command.module()) is not None:
        module, args = called
        check_config(module, expand(args, env), [command.torchrun_procs()])
    elif (submitted := command.slurm()) is not None:
        options, script, args = submitted
        assert script in SLURM_SCRIPTS, f"{script}: add it to SLURM_SCRIPTS"
        module, first = SLURM_SCRIPTS[script]
        subprocess.run(["bash", "-n", str(REPO / script)], check=True)
        args = script_args(script, expand(args, env))
        check_config(module, [*args[:1], *first, *args[1:]], sbatch_gpus(script, options))
    elif (array := command.datagen_array()) is not None:
        check_config("datagen", array)
    else:
        raise AssertionError(f"{argv[0]}: neither checked nor listed in NOT_RUN")


def scratch_checkout(root: Path) -> Path:
    """A directory to run commands in as if it were the checkout: configs/ and slurm/ linked."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("configs", "slurm"):
        if not (root / name).exists():
            (root / name).symlink_to(REPO / name)
    return root


def executable(word: str) -> str:
    """The program a documented command names, in this test's environment."""
    if word in PYTHONS:
        return sys.executable
    if word.startswith(".venv/bin/"):
        return str(Path(sys.executable).parent / word.removeprefix(".venv/bin/"))
    return word
