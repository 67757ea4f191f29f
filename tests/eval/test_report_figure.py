"""Figure 3 of `python -m eval.report`: a line per model, and per OOD level in the OOD panel."""

from __future__ import annotations

import numpy as np

from eval.report import plot_figure3


def test_each_ood_level_is_its_own_named_line(tmp_path) -> None:
    rows = [
        {
            "model": m,
            "data_size": n,
            "level": level,
            "set": level,
            "vel_error": err,
            "vel_error_gt": 0.01,
        }
        for m, scale in (("tiny", 2.0), ("mini", 1.0))
        for n in (8, 256)
        for level, err in (("id", scale * 8 / n), ("v_out", scale * 3.0), ("r_out", scale * 0.5))
    ]
    fig = plot_figure3(rows, tmp_path / "fig.png")
    id_ax, ood_ax = fig.axes
    assert [line.get_label() for line in id_ax.get_lines()] == [
        "DiT-tiny",
        "DiT-mini",
        "GT (parser floor)",
    ]
    ood = {line.get_label(): line for line in ood_ax.get_lines()}
    assert set(ood) == {
        "DiT-tiny r_out", "DiT-tiny v_out", "DiT-mini r_out", "DiT-mini v_out", "GT (parser floor)"
    }  # fmt: skip
    np.testing.assert_allclose(ood["DiT-mini v_out"].get_ydata(), [3.0, 3.0])
    np.testing.assert_allclose(ood["DiT-tiny r_out"].get_ydata(), [1.0, 1.0])
    np.testing.assert_allclose(id_ax.get_lines()[0].get_ydata(), [2.0, 2.0 / 32])
    # a model keeps its colour across panels; OOD levels differ by marker
    assert ood["DiT-tiny v_out"].get_color() == id_ax.get_lines()[0].get_color()
    assert ood["DiT-tiny v_out"].get_marker() != ood["DiT-tiny r_out"].get_marker()
    assert (tmp_path / "fig.png").stat().st_size > 0
