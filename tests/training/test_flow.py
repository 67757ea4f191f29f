"""Rectified flow: conditioning, the masked loss, overfitting, and the sampler."""

import pytest
import torch

from training import diffusion
from training.config import ModelConfig
from training.model import build_dit


def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_dit(ModelConfig(size="tiny"), latent_channels=3)


def video(B=2, C=3, T=4, H=8, W=8, seed=0):
    return torch.randn(B, C, T, H, W, generator=torch.Generator().manual_seed(seed))


def test_condition_pads_with_zeros_and_masks_the_given_frames():
    x0 = video()
    cond, mask = diffusion.condition(x0, 3)
    assert cond.shape == x0.shape and mask.shape == (2, 1, 4, 8, 8)
    assert torch.equal(cond[:, :, :3], x0[:, :, :3]) and torch.count_nonzero(cond[:, :, 3:]) == 0
    assert torch.all(mask[:, :, :3] == 1) and torch.all(mask[:, :, 3:] == 0)
    with pytest.raises(ValueError, match="cond_frames"):
        diffusion.condition(x0, 4)


def test_flow_inputs_keep_given_frames_clean_and_noise_the_rest():
    x0 = video()
    inp = diffusion.flow_inputs(x0, 1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(inp.x_t[:, :, :1], x0[:, :, :1])
    noise = inp.target + x0
    t = inp.t.view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(inp.x_t[:, :, 1:], ((1 - t) * x0 + t * noise)[:, :, 1:])
    assert torch.all((inp.t > 0) & (inp.t < 1))


def test_loss_ignores_condition_frames_only():
    target, mask = video(), diffusion.condition(video(), 2)[1]
    pred = target.clone()
    pred[:, :, :2] += 5.0  # wrong where the answer was given: not counted
    total, count = diffusion.loss_terms(pred, target, mask)
    assert total.item() == 0 and count.item() == 2 * 3 * 2 * 8 * 8
    pred[:, :, 3] += 1.0  # wrong on a predicted frame: counted
    total, count = diffusion.loss_terms(pred, target, mask)
    assert (total / count).item() == pytest.approx(0.5)


@pytest.mark.parametrize("prediction", diffusion.PREDICTIONS)
def test_loss_decreases_when_overfitting_one_batch(prediction):
    model = tiny()
    x0 = video(seed=1).clamp(-1, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):  # the same noise and t every step: one fixed batch to memorise
        g = torch.Generator().manual_seed(0)
        loss = diffusion.loss(model, x0, 1, "uniform", generator=g, prediction=prediction)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.4 * first, f"loss went from {first:.3f} to {last:.3f}"


def test_sampler_keeps_condition_frames_and_shape():
    model = tiny()
    with torch.no_grad():  # nonzero output layer, so sampling actually moves x
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x0 = video()
    out = diffusion.sample(
        model, x0[:, :, :3], 3, steps=4, generator=torch.Generator().manual_seed(0), frames=6
    )
    assert out.shape == (2, 3, 6, 8, 8)
    assert torch.equal(out[:, :, :3], x0[:, :, :3])
    again = diffusion.sample(
        model, x0, 3, steps=4, generator=torch.Generator().manual_seed(0), frames=6
    )
    assert torch.equal(out, again)  # frames after c in the input are ignored; seeded
    other = diffusion.sample(
        model, x0, 3, steps=4, generator=torch.Generator().manual_seed(1), frames=6
    )
    assert not torch.allclose(out[:, :, 3:], other[:, :, 3:])


def test_sampler_follows_an_exact_velocity_field():
    """With the true velocity of a straight path to a fixed video, Euler lands on that video."""
    target = video()

    def oracle(x_t, t, cond, mask):
        # x_t = (1 - t) x0 + t e and v = e - x0  =>  v = (x_t - x0) / t
        return (x_t - target) / t.view(-1, 1, 1, 1, 1)

    out = diffusion.sample(oracle, target, 1, steps=3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, target, rtol=1e-5, atol=1e-5)


def test_sampler_with_x0_prediction_lands_on_the_predicted_video():
    """A network that outputs the clean video (prediction=x0) is turned into the same velocity."""
    target = video()

    def oracle(x_t, t, cond, mask):
        return target

    for steps in (1, 3):
        out = diffusion.sample(
            oracle, target, 1, steps, torch.Generator().manual_seed(0), prediction="x0"
        )
        torch.testing.assert_close(out, target, rtol=1e-5, atol=1e-5)


def test_x0_prediction_of_the_truth_has_zero_loss_above_min_t():
    x0 = video(seed=2)
    inputs = diffusion.flow_inputs(x0, 1, "uniform", torch.Generator().manual_seed(0))
    velocity = diffusion.predicted_velocity(x0, inputs.x_t, inputs.t, "x0")
    above = inputs.t >= diffusion.MIN_T
    assert above.any()
    scored = (slice(None), slice(None), slice(1, None))  # after the condition frame
    torch.testing.assert_close(
        velocity[scored][above], inputs.target[scored][above], rtol=1e-4, atol=1e-4
    )
    # a wrong x0 by d costs d / t in velocity: the loss weights early (clean) times most
    wrong = diffusion.predicted_velocity(x0 + 0.1, inputs.x_t, inputs.t, "x0")
    t = inputs.t.clamp(min=diffusion.MIN_T).view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(
        (inputs.target - wrong)[scored][above], (0.1 / t).expand_as(x0)[scored][above]
    )


def test_an_unknown_prediction_names_the_choices():
    x = video()
    with pytest.raises(ValueError, match=r"diffusion.prediction.*velocity.*x0"):
        diffusion.predicted_velocity(x, x, torch.ones(2), "eps")
