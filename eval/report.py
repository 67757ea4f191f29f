"""usage: python -m eval.report [out=DIR] RUN [RUN ...]

Gather evaluated training runs into the paper's table and figure. For each run the newest
evaluated checkpoint is taken; a run with no metrics yet is left out with a note (no run with
metrics at all is an error), and so is a row the figure cannot place (unknown training-set size,
no velocity error). The table has one row per (model, data, eval set): kinematic velocity errors
with their GT and VAE floors, combinatorial FVD / SSIM / PSNR / LPIPS / abnormal ratio
(in-template and out-of-template side by side, as Table 2).
The figure is the paper's figure 3: velocity error against training-set size (log-log), one line
per model size, one panel for in-distribution and one for out-of-distribution (a line per model
and OOD level, named), the ground-truth parser floor as a dashed line.

Writes DIR/table.md, DIR/table.csv, DIR/fig3_velocity_error.png and, when combinatorial sets
were evaluated, DIR/table2.md (DIR: ./report).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import defaultdict
from pathlib import Path

import yaml

from eval.watch import read_metrics
from phyworld.cli import UserError, run_cli

COLUMNS = (
    "model", "data", "data_size", "set", "level", "step",
    "vel_error", "vel_error_gt", "vel_error_vae",
    "fvd", "ssim", "psnr", "lpips", "abnormal",
)  # fmt: skip
SIZE_ORDER = {"micro": 0, "tiny": 1, "mini": 2, "S": 3, "B": 4, "L": 5, "XL": 6}


class ReportError(UserError):
    """Runs that cannot be reported; the message says what to do."""


def data_size(path: str) -> int | None:
    """Videos in a training set (its manifest), or None when it cannot be read."""
    try:
        from phyworld.data.shards import read_manifest

        return int(read_manifest(path)["count"])
    except Exception:  # a moved or remote dataset: the table shows its name only
        return None


def run_rows(run: Path) -> list[dict]:
    """Rows of one run: its newest evaluated checkpoint's records."""
    if not run.is_dir():
        raise ReportError(f"run {run} does not exist: pass training run directories (output_dir)")
    records = read_metrics(run)
    if not records:
        raise ReportError(
            f"run {run} has no eval/metrics.jsonl yet: evaluate it with "
            f"`python -m eval configs/eval/NAME.yaml checkpoint={run}`"
        )
    step = max(r["step"] for r in records)
    cfg = (
        yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else {}
    )
    data_path = cfg.get("data", {}).get("path", "")
    size = data_size(data_path) if data_path else None
    rows = []
    for r in records:
        if r["step"] != step:
            continue
        row = {k: r.get(k) for k in COLUMNS}
        row.update(
            model=r.get("model_size", "?"), data=Path(data_path).name or run.name, data_size=size
        )
        rows.append(row)
    return rows


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_table(rows: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in COLUMNS) + " |" for r in rows]
    (out / "table.md").write_text("\n".join(lines) + "\n")


TABLE2 = ("fvd", "ssim", "psnr", "lpips", "abnormal")


def write_table2(rows: list[dict], out: Path) -> str:
    """The paper's Table 2: combinatorial metrics, in-template / out-of-template side by side."""
    cells: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)
    for r in rows:
        if r["level"] in ("in_template", "out_template"):
            cells[(r["model"], r["data"])][r["level"]] = r
    lines = ["| model | data | " + " | ".join(f"{m} (in / out)" for m in TABLE2) + " |"]
    lines.append("|" + "---|" * (2 + len(TABLE2)))
    for (model, data), by_level in cells.items():
        pairs = [
            f"{_fmt(by_level.get('in_template', {}).get(m))} / {_fmt(by_level.get('out_template', {}).get(m))}"
            for m in TABLE2
        ]
        lines.append(f"| DiT-{model} | {data} | " + " | ".join(pairs) + " |")
    text = "\n".join(lines) + "\n"
    if cells:
        (out / "table2.md").write_text(text)
    return text


def figure3_left_out(rows: list[dict]) -> list[str]:
    """The kinematic rows figure 3 cannot place, each with the reason (printed by the report)."""
    notes = []
    for r in rows:
        where = f"DiT-{r['model']} {r['data']} {r['set']}"
        if r.get("vel_error") is None and r.get("fvd") is None:
            notes.append(f"{where}: no velocity error (no ball was found in the generated videos)")
        elif r.get("vel_error") is not None and r.get("data_size") is None:
            notes.append(
                f"{where}: training-set size unknown (the manifest of its data.path cannot be read)"
            )
    return notes


def figure3_series(rows: list[dict]) -> tuple[dict, float | None]:
    """{(panel, model, level): [(data_size, error), ...]} and the mean GT floor, from kinematic
    rows; the OOD panel keeps each OOD level (v_out, r_out, ...) as its own line."""
    points: dict[tuple[str, str, str, int], list[float]] = defaultdict(list)
    floors = []
    for r in rows:
        if r.get("vel_error") is None or r.get("data_size") is None:
            continue
        panel = "ID" if r["level"] == "id" else "OOD"
        points[(panel, r["model"], r["level"], r["data_size"])].append(r["vel_error"])
        if r.get("vel_error_gt") is not None:
            floors.append(r["vel_error_gt"])
    series: dict[tuple[str, str, str], list[tuple[int, float]]] = defaultdict(list)
    for (panel, model, level, size), errs in sorted(points.items()):
        series[(panel, model, level)].append((size, sum(errs) / len(errs)))
    return dict(series), (sum(floors) / len(floors) if floors else None)


def plot_figure3(rows: list[dict], path: Path):
    """The paper's figure 3 as PNG; returns the matplotlib Figure (for inspection)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series, floor = figure3_series(rows)
    models = sorted({m for _, m, _ in series}, key=lambda m: SIZE_ORDER.get(m, 9))
    colours = {m: f"C{i}" for i, m in enumerate(models)}  # a model keeps its colour in both panels
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, panel in zip(axes, ("ID", "OOD")):
        lines = sorted(
            (k for k in series if k[0] == panel), key=lambda k: (SIZE_ORDER.get(k[1], 9), k[2])
        )
        levels = sorted({level for _, _, level in lines})
        for _, model, level in lines:
            xs, ys = zip(*series[(panel, model, level)])
            label = f"DiT-{model}" if panel == "ID" else f"DiT-{model} {level}"
            marker = "os^Dv"[levels.index(level) % 5]  # an OOD level keeps its marker
            ax.plot(xs, ys, marker=marker, color=colours[model], label=label)
        if floor is not None:
            ax.axhline(floor, linestyle="--", color="gray", label="GT (parser floor)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{panel} velocity error")
        ax.set_xlabel("training videos")
        if ax.get_lines():
            ax.legend()
    axes[0].set_ylabel("velocity error (world units / s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return fig


def parse_args(argv: list[str]) -> tuple[list[Path], Path]:
    """`[out=DIR] RUN [RUN ...]` -> (runs, out)."""
    parser = argparse.ArgumentParser(prog="python -m eval.report", add_help=False)
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, default=Path("report"))
    argv = [f"--out={a[4:]}" if a.startswith("out=") else a for a in argv]
    args, unknown = parser.parse_known_args(argv)
    if unknown or not args.runs:
        raise ReportError(f"expected [out=DIR] RUN [RUN ...], got {' '.join(argv) or 'nothing'}")
    return args.runs, args.out


def report(argv: list[str]) -> None:
    """The command: read the runs, write the tables and the figure, say what was left out."""
    runs, out = parse_args(argv)
    rows, left_out = [], []
    for run in runs:
        try:
            rows += run_rows(run)
        except ReportError as err:
            if not run.is_dir():
                raise
            left_out.append(str(err))
    if not rows:
        raise ReportError("no run has metrics yet: " + "; ".join(left_out))
    rows.sort(key=lambda r: (SIZE_ORDER.get(r["model"], 9), r["data_size"] or 0, r["set"]))
    write_table(rows, out)
    write_table2(rows, out)
    plot_figure3(rows, out / "fig3_velocity_error.png")
    print((out / "table.md").read_text())
    print(f"wrote {out}/table.md, table.csv, fig3_velocity_error.png")
    for note in left_out:
        print(f"left out of the report: {note}")
    for note in figure3_left_out(rows):
        print(f"left out of figure 3: {note}")


def main(argv: list[str] | None = None) -> int:
    """`python -m eval.report`: 0 when written, 2 (with a one-line error) on a user error."""
    return run_cli("eval.report", report, __doc__, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
