"""The encode job: a datagen dataset -> a latent dataset in the same layout, by parallel parts."""

import numpy as np
import pytest
import torch

from datagen.config import DatagenConfig
from datagen.generate import run
from phyworld.config import load_config
from phyworld.data.shards import DatasetError, iter_samples, verify_manifest
from training import encode
from training.data import video_tensor

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "uniform"
    cfg = load_config(
        DatagenConfig,
        [
            str(REPO / "configs/data/uniform_base.yaml"),
            f"output={root}",
            "sampling=random",
            "count=5",
            "frames=4",
            "resolution=16",
            "workers=1",
            "progress=false",
        ],
    )
    run(cfg)
    return str(root)


def test_two_workers_encode_and_the_last_merges(videos, tmp_path):
    out = str(tmp_path / "latents")
    common = [f"data={videos}", f"output={out}", "frames=4", "resolution=16", "dtype=float32"]
    common += ["vae.kind=pixel", "vae.downsample=4", "num_parts=2", "batch_size=2"]
    encode.main([*common, "part=1"])
    with pytest.raises(DatasetError):  # one part of two: not a dataset yet
        verify_manifest(out)
    encode.main([*common, "part=0"])
    assert verify_manifest(out)["count"] == 5

    originals = {s["id"]: s for s in iter_samples(videos)}
    encoded = list(iter_samples(out))
    assert sorted(s["id"] for s in encoded) == sorted(originals)
    for sample in encoded:
        src = originals[sample["id"]]
        assert sample["level"] == src["level"] and sample["params"] == src["params"]
        np.testing.assert_array_equal(sample["positions"], src["positions"])
        z = torch.from_numpy(np.array(sample["latents"]))
        assert z.shape == (48, 4, 4, 4) and "frames" not in sample
        # The pixel autoencoder is exact: the latents decode to the stored video.
        video = torch.nn.functional.pixel_shuffle(z.transpose(0, 1), 4).transpose(0, 1)
        torch.testing.assert_close(video, video_tensor(src["frames"], 4, 16))

    # Re-running a finished part skips it (a resubmitted array does no work twice).
    before = sorted(p.stat().st_mtime_ns for p in (tmp_path / "latents/parts").rglob("*.mds*"))
    encode.main([*common, "part=0"])
    after = sorted(p.stat().st_mtime_ns for p in (tmp_path / "latents/parts").rglob("*.mds*"))
    assert before == after


def test_float16_latents_and_bad_part(videos, tmp_path):
    out = str(tmp_path / "half")
    encode.main(
        [f"data={videos}", f"output={out}", "frames=2", "resolution=16", "vae.downsample=2"]
    )
    sample = next(iter_samples(out))
    assert sample["latents"].dtype == np.float16 and sample["latents"].shape == (12, 2, 8, 8)
    with pytest.raises(ValueError, match="num_parts"):
        encode.main([f"data={videos}", f"output={out}", "part=3", "num_parts=2"])


def test_training_loader_reads_encoded_latents(videos, tmp_path):
    from training.config import DataConfig
    from training.data import build_dataloader

    out = str(tmp_path / "for_training")
    encode.main([f"data={videos}", f"output={out}", "frames=4", "resolution=16", "dtype=float32"])
    data = DataConfig(path=out, kind="latents", frames=3, num_workers=0, shuffle=False)
    batch = next(iter(build_dataloader(data, 2, 1, str(tmp_path / "run"))))
    assert batch["latents"].shape == (2, 48, 3, 4, 4) and batch["latents"].dtype == torch.float32


@pytest.mark.slow
def test_encode_to_s3(videos, s3_url):
    """Latents written to a real S3 server (moto) by two workers read back like local ones."""
    common = [f"data={videos}", f"output={s3_url}", "frames=4", "resolution=16", "num_parts=2"]
    encode.main([*common, "part=0"])
    encode.main([*common, "part=1"])
    assert verify_manifest(s3_url, checksums=True)["count"] == 5
    samples = list(iter_samples(s3_url))
    assert sorted(s["id"] for s in samples) == sorted(s["id"] for s in iter_samples(videos))
    assert samples[0]["latents"].shape == (48, 4, 4, 4)
