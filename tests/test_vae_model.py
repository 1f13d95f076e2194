import math

import pytest
import torch

from common import InputError
from VAE.model import VAE


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 32, 32), (1, 64, 64), (3, 64, 64)])
def test_shapes(arch, shape):
    torch.manual_seed(0)
    model = VAE(shape, latent_dim=8, arch=arch)
    x = torch.rand(4, *shape)
    decoded, mu, logvar = model(x)
    assert decoded.shape == x.shape and mu.shape == logvar.shape == (4, 8)
    assert model.sample(3).shape == (3, *shape)
    assert set(model.loss(x)) == {"total", "recon", "kl"}


@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 64, 64)])
def test_a_deeper_decoder_adds_size_keeping_convs_and_depth_1_mirrors_the_encoder(shape):
    from torch import nn
    from common.blocks import UpBlock
    deep, plain = VAE(shape, arch="conv", decoder_depth=3), VAE(shape, arch="conv")
    convs = [m for m in deep.decoder.blocks if isinstance(m, nn.Conv2d)]
    # 4x4, then one more resolution per UpBlock
    resolutions = 1 + len([m for m in deep.decoder.blocks if isinstance(m, UpBlock)])
    assert resolutions == (3 if shape[1] == 32 else 4)
    assert len(convs) == 2 * resolutions
    assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in convs)
    x = torch.rand(2, *shape)
    assert deep(x)[0].shape == x.shape
    assert [type(m) for m in plain.decoder.blocks] == [UpBlock] * (resolutions - 1)


def test_conv_refuses_an_image_size_it_cannot_halve():
    with pytest.raises(InputError, match="image size 28 is not supported"):
        VAE((1, 28, 28), arch="conv")
    assert VAE((1, 28, 28), arch="mlp").sample(1).shape == (1, 1, 28, 28)  # the MLP takes any size


def test_analytic_kl_matches_monte_carlo():
    torch.manual_seed(0)
    model = VAE((1, 32, 32), latent_dim=4)
    x = torch.rand(2, 1, 32, 32)
    mu, logvar = model.encode(x)
    analytic = model.loss(x)["kl"]  # the batch mean of the closed form
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    z = q.sample((200_000,))
    monte_carlo = (q.log_prob(z) - torch.distributions.Normal(0.0, 1.0).log_prob(z)).sum(-1).mean()
    assert torch.allclose(analytic, monte_carlo, rtol=0.02, atol=0.01)


def test_gaussian_likelihood_is_the_normal_log_density():
    torch.manual_seed(0)
    model = VAE((3, 32, 32), arch="conv", likelihood="gaussian")
    with torch.no_grad():
        model.log_sigma.fill_(-1.5)
    x, means = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    expected = torch.distributions.Normal(means, math.exp(-1.5)).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(model.log_px_given_z(x, means), expected, rtol=1e-5)


def test_bernoulli_likelihood_is_the_bernoulli_log_probability():
    model = VAE((1, 32, 32))
    x, logits = torch.bernoulli(torch.full((2, 1, 32, 32), 0.3)), torch.randn(2, 1, 32, 32)
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(model.log_px_given_z(x, logits), expected, rtol=1e-5)


def test_beta_and_recon_weight_ablations():
    x = torch.rand(4, 1, 32, 32)
    torch.manual_seed(0)
    no_kl = VAE(beta=0.0).loss(x)
    assert no_kl["total"] == no_kl["recon"]
    torch.manual_seed(0)
    kl_only = VAE(recon_weight=0.0).loss(x)
    assert kl_only["total"] == kl_only["kl"]
    torch.manual_seed(0)
    weighted = VAE(beta=4.0, recon_weight=0.5).loss(x)
    assert torch.allclose(weighted["total"], 0.5 * weighted["recon"] + 4 * weighted["kl"])


def test_importance_weighted_bound_tightens_with_k():
    torch.manual_seed(0)
    model = VAE((1, 32, 32), latent_dim=4).eval()
    x = torch.bernoulli(torch.rand(64, 1, 32, 32))
    bounds = []
    for k in (1, 10, 100):
        torch.manual_seed(1)
        bounds.append(model.log_likelihood(x, samples=k, chunk=50).mean().item())
    assert bounds[0] < bounds[1] < bounds[2]
    torch.manual_seed(2)  # k = 1 is the ELBO: its mean matches -loss up to sampling noise
    elbo = -model.loss(x)["total"].item()
    assert abs(bounds[0] - elbo) < 0.02 * abs(elbo)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_overfits_one_batch(arch):
    torch.manual_seed(0)
    model = VAE((1, 32, 32), latent_dim=8, arch=arch)
    x = torch.bernoulli(torch.rand(16, 1, 32, 32) * 0.6)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = model.loss(x)["total"].item()
    for _ in range(150):
        loss = model.loss(x)["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # It memorises the 16 images: the loss falls to under half of where it started.
    assert loss.item() < 0.5 * first


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_output_bias_starts_the_decoder_at_the_mean_image(likelihood):
    images = torch.randint(26, 230, (5000, 1, 32, 32), dtype=torch.uint8)  # more than one chunk
    mean_image = images.double().mean(0) / 255
    model = VAE((1, 32, 32), likelihood=likelihood)
    model.init_output_bias(images)
    with torch.no_grad():
        model.decoder.to_pixels.weight.zero_()  # leave only the bias
    assert torch.allclose(model.sample(2), mean_image.float().expand(2, 1, 32, 32), atol=1e-5)
    conv = VAE((3, 32, 32), arch="conv")
    conv.init_output_bias(torch.full((4, 3, 32, 32), 64, dtype=torch.uint8))  # 64 / 255 each
    expected = torch.logit(torch.tensor(64 / 255)).expand(3)
    assert torch.allclose(conv.decoder.to_pixels.bias, expected)
