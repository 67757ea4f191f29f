"""`python -m eval.vae`: the paper's "GT / VAE" row for any autoencoder."""

import json

from eval.vae import main


def test_eval_vae_measures_an_existing_autoencoder(tmp_path):
    """`eval.vae` on real uniform-motion videos: the lossless pixel autoencoder reconstructs
    exactly, so its velocity error equals the ground truth's (the parser's floor)."""
    from pathlib import Path

    from datagen.config import DatagenConfig
    from datagen.generate import run
    from phyworld.config import load_config

    repo = Path(__file__).resolve().parents[2]
    data = tmp_path / "uniform"
    gen = [str(repo / "configs/data/uniform_base.yaml"), f"output={data}", "sampling=random"]
    run(
        load_config(
            DatagenConfig,
            [*gen, "count=4", "frames=8", "resolution=32", "workers=1", "progress=false"],
        )
    )
    main(
        [
            f"data={data}",
            f"output_dir={tmp_path / 'out'}",
            "resolution=32",
            "vae.kind=pixel",
        ]
    )

    metrics = json.loads((tmp_path / "out" / "vae_eval.json").read_text())
    assert metrics["videos"] == 4 and metrics["psnr_db"] > 100 and metrics["vae"]["kind"] == "pixel"
    assert metrics["vel_error_recon"] == metrics["vel_error_gt"]
    assert metrics["vel_error_paper_recon"] == metrics["vel_error_paper_gt"]
    assert 0 < metrics["vel_error_gt"]["alpha"] < 0.3
