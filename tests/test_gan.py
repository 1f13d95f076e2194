"""GAN/model.py, GAN/train.py, GAN/sample.py, GAN/evaluate.py and GAN/fid.py: shapes, the losses' math, FID, and the command line."""
import itertools
import math
import re
import subprocess
import sys

import pytest
import torch
from torch import nn

from common import InputError
from common.data import split_training_set
from GAN import evaluate as gan_evaluate
from GAN.evaluate import SampleScorer, features, frechet_distance, load_classifier
from common.utils import read_csv
from conftest import ROOT
from GAN import model as gan_model
from GAN import sample as gan_sample
from GAN import train as gan_train
from GAN.model import ACGAN, CGAN, GAN, MODELS, InfoGAN, make_gan
from test_vae_train import error_of, run_main, straight_and_resumed


@pytest.mark.parametrize("channels, size", [(1, 32), (3, 32), (1, 64), (3, 64)])
@pytest.mark.parametrize("loss", gan_model.LOSSES)
def test_shapes(channels, size, loss):
    model = GAN((channels, size, size), latent_dim=8, width=8, loss=loss)
    images = model.generator(model.noise(5))
    assert images.shape == (5, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1  # Tanh
    score, head = model.discriminator(images)
    assert score.shape == (5,) and head is None
    assert model.sample(3).min() >= 0  # sample() maps to [0, 1]


def test_generator_hidden_layer_comes_before_the_convolutions():
    plain, hidden = GAN(latent_dim=8, width=8), InfoGAN(latent_dim=8, width=8, generator_hidden=16)
    assert not any(isinstance(m, nn.Linear) for m in plain.generator.modules())
    first, norm = hidden.generator.net[:2]
    assert isinstance(first, nn.Linear) and (first.in_features, first.out_features) == (8 + 10 + 2, 16)  # z, c1, c2, c3
    assert isinstance(norm, nn.BatchNorm1d) and hidden.generator.net[4].in_channels == 16
    assert hidden.sample(3).shape == (3, 1, 32, 32)
    assert abs(first.weight.std().item() - 0.02) < 0.005  # DCGAN's initialisation reaches it too


@pytest.mark.parametrize("loss", gan_model.LOSSES)
def test_discriminator_hidden_layer_is_shared_by_the_score_and_q(loss):
    model = InfoGAN(width=8, loss=loss, discriminator_hidden=16)
    layer = model.discriminator.features[-2 if loss == "wgan-gp" else -3]
    assert isinstance(layer, nn.Linear) and layer.out_features == 16
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.discriminator.features) == (loss != "wgan-gp")  # per-sample penalty
    assert model.discriminator.score.in_features == 16 and model.discriminator.auxiliary[1].in_features == 16
    score, q = model.discriminator(model.sample(3) * 2 - 1)
    assert score.shape == (3,) and q.shape == (3, 12)
    assert layer.weight in set(model.discriminator.critic_parameters())  # clipped, for wgan, like the rest of the body


def test_maxpool_discriminator_and_critic_without_batchnorm():
    model = GAN((1, 32, 32), width=8, downsample="maxpool", loss="wgan-gp")
    assert any(isinstance(m, nn.MaxPool2d) for m in model.discriminator.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.discriminator.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in GAN(loss="gan", width=8).discriminator.modules())
    assert model.discriminator(torch.zeros(2, 1, 32, 32))[0].shape == (2,)


def test_unsupported_image_size_is_a_clear_error():
    with pytest.raises(InputError, match="image size 48"):
        GAN((1, 48, 48))


def test_weights_start_from_dcgan_initialisation():
    torch.manual_seed(0)
    conv_weights = torch.cat([m.weight.flatten() for m in GAN(width=32).modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert abs(conv_weights.std().item() - 0.02) < 0.001 and abs(conv_weights.mean().item()) < 0.001


class LinearCritic(nn.Module):
    """f(x) = w . x + b, whose gradient is w everywhere: the penalty's closed form is (||w|| - 1)^2."""

    def __init__(self, pixels):
        super().__init__()
        self.linear = nn.Linear(pixels, 1)

    def forward(self, x, labels=None, detach_auxiliary=False):
        return self.linear(x.flatten(1)).flatten(), None  # (score, no code head), as Discriminator returns


def test_gradient_penalty_equals_its_closed_form_for_a_linear_critic():
    model = GAN((1, 32, 32), width=8, loss="wgan-gp", gp_weight=10.0)
    model.discriminator = LinearCritic(32 * 32)
    real, fake = torch.rand(6, 1, 32, 32), torch.rand(6, 1, 32, 32)
    expected = (model.discriminator.linear.weight.norm() - 1) ** 2
    assert torch.allclose(model.gradient_penalty(real, fake), expected, rtol=1e-5)
    parts = model.discriminator_loss(real, fake)
    critic = model.discriminator
    wasserstein = critic(real)[0].mean() - critic(fake)[0].mean()
    assert torch.allclose(parts["wasserstein"], wasserstein)
    assert torch.allclose(parts["total"], -wasserstein + 10.0 * expected, rtol=1e-5)
    # The penalty is differentiable (create_graph): its gradient reaches the critic's weights.
    model.gradient_penalty(real, fake).backward()
    assert critic.linear.weight.grad.abs().sum() > 0


def test_gan_losses_match_their_equations():
    model = GAN((1, 32, 32), width=8, loss="gan")
    model.discriminator = LinearCritic(32 * 32)
    real, fake = torch.rand(4, 1, 32, 32), torch.rand(4, 1, 32, 32)
    d_real, d_fake = torch.sigmoid(model.discriminator(real)[0]), torch.sigmoid(model.discriminator(fake)[0])
    parts = model.discriminator_loss(real, fake)
    assert torch.allclose(parts["total"], -(d_real.log().mean() + (1 - d_fake).log().mean()), rtol=1e-5)
    assert torch.allclose(parts["d_real"], d_real.mean()) and torch.allclose(parts["d_fake"], d_fake.mean())
    assert torch.allclose(model.generator_loss(fake)["total"], -d_fake.log().mean(), rtol=1e-5)


def test_weight_clipping_keeps_every_critic_weight_within_c():
    model = GAN(width=16, loss="wgan", clip=0.01)
    assert max(p.abs().max() for p in model.discriminator.parameters()) > 0.01  # N(0, 0.02) init exceeds c
    model.clip_critic_weights()
    assert max(p.abs().max() for p in model.discriminator.parameters()) <= 0.01
    assert max(p.abs().max() for p in model.generator.parameters()) > 0.01  # the generator is left alone


@pytest.mark.parametrize("variant", ["acgan", "infogan"])
def test_weight_clipping_leaves_the_extra_heads_alone(variant):
    # Clipping bounds the critic f; ACGAN's class head and InfoGAN's Q are not part of f's score.
    torch.manual_seed(0)
    model = MODELS[variant](width=8, loss="wgan", clip=0.01)
    head_before = [p.clone() for p in model.discriminator.auxiliary.parameters()]
    assert max(p.abs().max() for p in head_before) > 0.01
    model.clip_critic_weights()
    assert all(torch.equal(before, after) for before, after in zip(head_before, model.discriminator.auxiliary.parameters()))
    assert max(p.abs().max() for p in model.discriminator.critic_parameters()) <= 0.01
    critic = {id(p) for p in model.discriminator.critic_parameters()}
    head = {id(p) for p in model.discriminator.auxiliary.parameters()}
    assert critic | head == {id(p) for p in model.discriminator.parameters()} and not critic & head


def test_cgan_discriminator_forward_is_the_path_the_losses_use():
    # The one forward takes the labels: the score the GAN loss sees is the score the discriminator returns.
    torch.manual_seed(0)
    model = CGAN((1, 32, 32), width=8).eval()
    real, fake, labels = torch.rand(3, 1, 32, 32), torch.rand(3, 1, 32, 32), torch.tensor([1, 4, 7])
    parts = model.discriminator_loss(real, fake, labels, {"labels": labels})
    real_score, fake_score = model.discriminator(real, labels)[0], model.discriminator(fake, labels)[0]
    expected = torch.nn.functional.softplus(-real_score).mean() + torch.nn.functional.softplus(fake_score).mean()
    assert torch.allclose(parts["total"], expected)


def test_frechet_distance_is_zero_for_a_set_with_itself_and_grows_with_a_mean_shift():
    features = torch.randn(500, 8, dtype=torch.float64) @ torch.randn(8, 8, dtype=torch.float64)
    assert abs(frechet_distance(features, features)) < 1e-6
    shifts = [frechet_distance(features, features + shift) for shift in (0.1, 0.5, 1.0)]
    assert shifts == sorted(shifts)
    # A constant shift moves only the means: FID = ||shift||^2 = 8 * shift^2.
    assert shifts[2] == pytest.approx(8.0, rel=1e-6)


def test_frechet_distance_of_diagonal_gaussians_has_the_closed_form():
    # For diagonal covariances the matrix square root is elementwise: FID = |mu1 - mu2|^2 + sum (s1 - s2)^2.
    mean_1, mean_2 = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64), torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    std_1, std_2 = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64), torch.tensor([3.0, 1.0, 0.5], dtype=torch.float64)
    fid = frechet_distance((mean_1, torch.diag(std_1 ** 2)), (mean_2, torch.diag(std_2 ** 2)))
    assert fid == pytest.approx(5.0 + 4.0 + 1.0)


def test_classifier_is_trained_once_then_loaded_from_its_cache(mnist_root, capsys):
    classifier, info = load_classifier("mnist", mnist_root, epochs=1)
    assert "training the mnist classifier" in capsys.readouterr().out
    assert gan_evaluate.classifier_path("mnist", mnist_root, 32).is_file()
    assert sorted(p.name for p in mnist_root.iterdir()) == ["MNIST"]  # nothing written into the data folder
    assert 0 <= info["test_accuracy"] <= 1 and info["fit_images"] == 42 and info["held_out_images"] == 8
    again, info_again = load_classifier("mnist", mnist_root)
    assert capsys.readouterr().out == ""
    assert info_again == info
    assert all(torch.equal(a, b) for a, b in zip(classifier.state_dict().values(), again.state_dict().values()))


def test_a_classifier_that_cannot_be_cached_is_a_warning(mnist_root, user_cache, capsys):
    gan_evaluate.classifier_path("mnist", mnist_root, 32).parent.parent.mkdir(parents=True, exist_ok=True)
    gan_evaluate.classifier_path("mnist", mnist_root, 32).parent.write_text("a file where the cache folder would go")
    load_classifier("mnist", mnist_root, epochs=1)
    assert "warning: could not cache the classifier" in capsys.readouterr().out
    assert not list(user_cache.rglob("*.tmp"))

def test_scorer_histogram_and_28_pixel_samples(mnist_root):
    scorer = SampleScorer("mnist", mnist_root)
    from common.data import load_dataset
    test_images, test_labels = load_dataset("mnist", mnist_root, image_size=28, train=False)
    result = scorer.score(test_images.float() / 255)  # 28x28 samples get the loader's padding
    assert result["fid"] == pytest.approx(0.0, abs=1e-4)  # the test set against itself
    assert len(result["shares"]) == 10 and sum(result["shares"]) == pytest.approx(1.0)
    assert "accuracy" not in result
    asked = scorer.score(test_images.float() / 255, test_labels)  # the test set, requested as its own labels
    assert asked["accuracy"] == pytest.approx(scorer.info["test_accuracy"])  # what the classifier scored on it
    class_sizes = torch.bincount(test_labels, minlength=10).double()
    assert (torch.tensor(asked["class_accuracy"]) * class_sizes).sum() / len(test_labels) == pytest.approx(asked["accuracy"])


def test_classifier_never_sees_the_held_out_images_and_the_floor_uses_as_many_of_them(mnist_root, monkeypatch):
    from GAN import evaluate as fid_module
    from common.data import load_dataset
    seen = []
    real_batches = fid_module.Batches
    monkeypatch.setattr(fid_module, "Batches", lambda images, *rest, **options: seen.append(images) or
                        real_batches(images, *rest, **options))
    scorer = SampleScorer("mnist", mnist_root)
    train_images, train_labels = load_dataset("mnist", mnist_root, train=True)
    (fit_images, _), (held_out, _) = split_training_set(train_images, train_labels)
    assert len(held_out) == 8 and torch.equal(held_out, train_images[-8:])    # a sixth of 50 images, the last ones
    assert len(seen) == 1 and torch.equal(seen[0], fit_images)                # what the classifier trained on
    test_images, _ = load_dataset("mnist", mnist_root, train=False)
    for count in (5, 8, 100):                                                 # 100: all 8 there are
        floor, used = scorer.floor(count)
        expected = frechet_distance(features(scorer.classifier, held_out[:min(count, 8)].float() / 255),
                                    features(scorer.classifier, test_images.float() / 255))
        assert used == min(count, 8) and floor == pytest.approx(expected)
    result = scorer.score(test_images[:5].float() / 255)
    assert (result["floor"], result["floor_images"]) == scorer.floor(5)
    # against the validation split (to choose settings on): the held-out images score 0, the test images are its floor
    assert scorer.score(held_out.float() / 255, against="validation")["fid"] == pytest.approx(0.0, abs=1e-4)
    floor, used = scorer.floor(5, against="validation")
    assert used == 5 and floor == pytest.approx(frechet_distance(features(scorer.classifier, test_images[:5].float() / 255),
                                                                 features(scorer.classifier, held_out.float() / 255)))
    assert scorer.score(test_images[:5].float() / 255, against="validation")["fid"] == pytest.approx(floor)


def test_training_the_classifier_touches_no_global_random_state(mnist_root, monkeypatch):
    # torch.manual_seed would reseed every CUDA device too (and fork_rng(devices=[]) restores only the CPU),
    # so a run on a GPU that trained the classifier first would draw all its noise from that seed.
    reseeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: reseeded.append(seed))
    cpu_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    load_classifier("mnist", mnist_root, epochs=1)
    assert reseeded == []
    assert torch.equal(torch.get_rng_state(), cpu_state)
    assert all(torch.equal(a, b) for a, b in zip(torch.cuda.get_rng_state_all() if cuda_states else [], cuda_states))
    # and the weights do not depend on the global stream
    torch.manual_seed(123)
    gan_evaluate.classifier_path("mnist", mnist_root, 32).unlink()
    again, _ = load_classifier("mnist", mnist_root, epochs=1)
    first = torch.load(gan_evaluate.classifier_path("mnist", mnist_root, 32), weights_only=True)["model"]
    assert all(torch.equal(first[name], value) for name, value in again.state_dict().items())


def test_a_classifier_cached_by_the_older_version_is_trained_again(mnist_root, capsys):
    load_classifier("mnist", mnist_root, epochs=1)
    path = gan_evaluate.classifier_path("mnist", mnist_root, 32)
    saved = torch.load(path, weights_only=True)
    del saved["version"]            # as version 1 wrote it: trained on the whole training set
    torch.save(saved, path)
    capsys.readouterr()
    load_classifier("mnist", mnist_root, epochs=1)
    assert "older version" in capsys.readouterr().out
    assert torch.load(path, weights_only=True)["version"] == 2


def test_corrupt_cached_classifier_is_a_clear_error(mnist_root):
    path = gan_evaluate.classifier_path("mnist", mnist_root, 32)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="delete it"):
        load_classifier("mnist", mnist_root)


def initial_weights(config, seed=0):
    torch.manual_seed(seed)  # train.py seeds before it builds the model
    return make_gan(**config).state_dict()


@pytest.mark.parametrize("loss", gan_model.LOSSES)
def test_one_epoch_of_each_loss_changes_both_networks(loss, tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_main(gan_train, monkeypatch, "--dataset", "fake", "--data-root", str(tmp_path), "--epochs", "1", "--loss", loss,
             "--batch-size", "32", "--width", "8", "--out", str(out), "--device", "cpu", "--fid-every", "0",
             "--fid-samples", "0")
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    before = initial_weights(checkpoint["model_config"])
    for network in ("generator", "discriminator"):
        changed = [not torch.equal(value, before[name]) for name, value in checkpoint["model"].items()
                   if name.startswith(network) and value.is_floating_point()]
        assert any(changed), network
    if loss == "wgan":
        assert max(v.abs().max() for k, v in checkpoint["model"].items()
                   if k.startswith("discriminator") and v.is_floating_point() and "running" not in k) <= 0.01


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    """One data root for the smoke runs on --dataset fake, so the FID classifier is trained once for all."""
    return tmp_path_factory.mktemp("fake")


def smoke_run(root, out, capsys, monkeypatch, *flags):
    """GAN/train.py on the fake data for 2 epochs with FID every epoch, in this process; returns what it printed."""
    capsys.readouterr()
    run_main(gan_train, monkeypatch, "--dataset", "fake", "--data-root", str(root), "--epochs", "2", "--batch-size", "32",
             "--width", "8", "--fid-every", "1", "--fid-samples", "200", "--out", str(out), "--device", "cpu", *flags)
    return capsys.readouterr().out


def learning_rates(out):
    """D's and G's learning rates, as the run's checkpoint saved them with the optimizers."""
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    return tuple(checkpoint[name]["param_groups"][0]["lr"] for name in ["d_optimizer", "g_optimizer"])


def test_command_line_runs_from_another_directory(tmp_path, fake_root):
    # The one subprocess run: the command exactly as a user types it, from a folder that is not the repository.
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, str(ROOT / "GAN" / "train.py"), "--dataset", "fake", "--data-root", str(fake_root),
                             "--epochs", "1", "--batch-size", "32", "--width", "8", "--fid-every", "1",
                             "--fid-samples", "200", "--out", str(out), "--device", "cpu"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "FID of 200 samples" in result.stdout and (out / "checkpoint.pt").is_file()


@pytest.mark.parametrize("loss", gan_model.LOSSES)
def test_smoke_run_of_each_loss(loss, tmp_path, fake_root, capsys, monkeypatch):
    out = tmp_path / "run"
    ema = [] if loss == "gan" else ["--ema", "0"]  # the averaged G's extra FID once is enough
    assert "FID of 200 samples" in smoke_run(fake_root, out, capsys, monkeypatch, "--loss", loss, *ema)
    d_lr, g_lr = learning_rates(out)
    assert (d_lr, g_lr) == {"gan": (2e-4, 4e-4), "wgan": (5e-5, 5e-5), "wgan-gp": (1e-4, 1e-4)}[loss]  # G at twice D's lr: gan only
    for name in ["log.csv", "fid.csv", "checkpoint.pt", "frames/samples_002.png", "samples.png", "training.gif",
                 "loss_curves.png", "fid_curve.png"]:
        assert (out / name).is_file(), name
    header = (out / "log.csv").read_text().splitlines()[0].split(",")
    # log.csv has a column for each part the loss returns, and no empty ones for parts it does not have
    parts = {"gan": [], "wgan": ["wasserstein"], "wgan-gp": ["wasserstein", "gradient_penalty"]}[loss]
    live = ["fid_2k_live"] if loss == "gan" else []  # the live G's FID beside the averaged G's
    assert header == ["epoch", "d_loss", "g_loss", "d_real", "d_fake", *parts, "fid_2k", *live, "seconds", "images_per_second"]


def test_the_fid_curve_counts_epochs(tmp_path, fake_root, capsys, monkeypatch):
    drawn = {}
    monkeypatch.setattr(gan_train, "save_curves", lambda path, curves, **labels: drawn.update({path.name: curves}))
    smoke_run(fake_root, tmp_path / "run", capsys, monkeypatch, "--fid-every", "2", "--fid-samples", "0")
    assert list(drawn["fid_curve.png"]) == ["averaged G", "live G"]
    assert drawn["fid_curve.png"]["averaged G"][0] == [2]  # measured after epoch 2 only: x is 2, not the 1st point


def test_every_epochs_fid_draws_the_same_noise(tmp_path, fake_root, capsys, monkeypatch):
    # Fresh noise each epoch would move the FID of an unchanged G (by up to 30% at 2,000 MNIST samples)
    seeds = []
    watch = gan_train.watch
    monkeypatch.setattr(gan_train, "watch", lambda model, scorer, batch_size, seed, *rest: seeds.append(seed) or
                        watch(model, scorer, batch_size, seed, *rest))
    smoke_run(fake_root, tmp_path / "run", capsys, monkeypatch, "--fid-samples", "0", "--seed", "7")
    assert seeds == [7, 7]  # epochs 1 and 2: measure() draws its noise from this seed alone, not from the epoch


def test_the_averaged_generator_is_the_moving_average_of_the_live_one():
    model = gan_model.make_gan("dcgan", image_shape=(1, 32, 32), width=8, ema_decay=0.5)
    with torch.no_grad():
        for parameter in model.generator.parameters():
            parameter.add_(1.0)
        model.generator.net[2].running_mean.fill_(3.0)  # a BatchNorm statistic is averaged like a weight
    before = {name: value.clone() for name, value in model.averaged_generator.state_dict().items()}
    live = model.generator.state_dict()
    for updates in (1, 2):
        model.update_averaged_generator()
        beta = min(0.5, (1 + updates) / (10 + updates))  # the first steps are not averaged with the start
        for name, value in model.averaged_generator.state_dict().items():
            if value.is_floating_point():
                before[name] = beta * before[name] + (1 - beta) * live[name]
                assert torch.allclose(value, before[name]), name
    x = model.noise(4)
    assert not torch.equal(model.sample(z=x), model.sample(z=x, averaged=False))
    assert gan_model.make_gan("dcgan", width=8).averaged_generator is None  # ema_decay 0: no copy at all


def test_ema_changes_what_is_sampled_not_how_the_networks_train(tmp_path, monkeypatch):
    common = ["--dataset", "fake", "--data-root", str(tmp_path), "--batch-size", "32", "--width", "8", "--epochs", "1",
              "--device", "cpu", "--fid-every", "0", "--fid-samples", "0"]
    run_main(gan_train, monkeypatch, *common, "--out", str(tmp_path / "averaged"))
    run_main(gan_train, monkeypatch, *common, "--ema", "0", "--out", str(tmp_path / "live"))
    averaged, live = (torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)["model"] for name in ("averaged", "live"))
    assert any(name.startswith("averaged_generator.") for name in averaged)
    assert not any(name.startswith("averaged_generator.") for name in live)
    assert all(torch.equal(averaged[name], live[name]) for name in live)  # the same training, step for step
    weight = "generator.net.1.weight"
    assert not torch.equal(averaged["averaged_" + weight], averaged[weight])


def test_resume_continues_exactly_where_the_run_stopped(tmp_path, monkeypatch):
    common = ["--dataset", "fake", "--data-root", str(tmp_path), "--loss", "wgan-gp", "--batch-size", "32", "--width", "8",
              "--device", "cpu", "--fid-every", "0", "--fid-samples", "0"]
    run_main(gan_train, monkeypatch, *common, "--epochs", "2", "--out", str(tmp_path / "straight"))
    run_main(gan_train, monkeypatch, *common, "--epochs", "1", "--out", str(tmp_path / "resumed"))
    run_main(gan_train, monkeypatch, "--resume", str(tmp_path / "resumed" / "checkpoint.pt"), "--epochs", "2")
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert resumed["epoch"] == 2
    assert all(torch.equal(straight["model"][name], resumed["model"][name]) for name in straight["model"])


def test_cosine_schedule_anneals_both_learning_rates_and_a_resumed_run_follows_it(tmp_path, monkeypatch):
    common = ["--dataset", "fake", "--data-root", str(tmp_path), "--batch-size", "32", "--width", "8", "--device", "cpu",
              "--fid-every", "0", "--fid-samples", "0", "--epochs", "2", "--lr", "2e-4", "--g-lr", "4e-4",
              "--lr-schedule", "cosine"]
    straight, resumed = straight_and_resumed(gan_train, monkeypatch, tmp_path, *common)
    d_lr = straight["d_optimizer"]["param_groups"][0]["lr"]
    assert 0 < d_lr < 2e-4 * 0.05  # the last step's, near the end of the curve
    assert straight["g_optimizer"]["param_groups"][0]["lr"] == pytest.approx(2 * d_lr)  # G keeps its own lr's ratio
    assert all(torch.equal(straight["model"][name], resumed["model"][name]) for name in straight["model"])


def test_a_checkpoint_older_than_a_flag_resumes_as_it_was_trained(tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_main(gan_train, monkeypatch, "--model", "infogan", "--dataset", "fake", "--data-root", str(tmp_path), "--epochs", "1",
             "--batch-size", "32", "--width", "8", "--out", str(out), "--device", "cpu", "--fid-every", "0", "--fid-samples", "0",
             "--continuous-weight", "0.5", "--g-hidden", "0", "--d-hidden", "0")
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["model_config"]["continuous_weight"] == 0.5  # the flag reaches the model
    # as written before these flags existed
    for flag in ("category_scale", "q_trains_body", "g_hidden", "d_hidden", "noise"):
        del checkpoint["args"][flag]
    del checkpoint["model_config"]["generator_hidden"], checkpoint["model_config"]["discriminator_hidden"]
    del checkpoint["model_config"]["noise"]
    torch.save(checkpoint, out / "checkpoint.pt")
    run_main(gan_train, monkeypatch, "--resume", str(out / "checkpoint.pt"), "--epochs", "2")
    resumed = torch.load(out / "checkpoint.pt", weights_only=True)
    # Before its flag, InfoGAN used the plain one-hot, Q trained D's body, and neither network had a hidden layer
    assert resumed["epoch"] == 2 and resumed["args"]["category_scale"] == 1.0 and resumed["args"]["q_trains_body"] is True
    assert resumed["args"]["g_hidden"] == resumed["model_config"]["generator_hidden"] == 0
    assert resumed["args"]["d_hidden"] == resumed["model_config"]["discriminator_hidden"] == 0
    assert resumed["args"]["continuous_weight"] == resumed["model_config"]["continuous_weight"] == 0.5
    assert resumed["args"]["noise"] == resumed["model_config"]["noise"] == "normal"  # z ~ N(0, I), as it always was


def test_sample_script_writes_images_in_zero_one(tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_main(gan_train, monkeypatch, "--dataset", "fake", "--data-root", str(tmp_path), "--epochs", "1", "--width", "8",
             "--out", str(out), "--device", "cpu", "--fid-every", "0", "--fid-samples", "0")
    run_main(gan_sample, monkeypatch, str(out / "checkpoint.pt"), "--num", "10", "--out", str(tmp_path / "s.pt"), "--device", "cpu")
    images = torch.load(tmp_path / "s.pt", weights_only=True)
    assert images.shape == (10, 1, 32, 32) and images.min() >= 0 and images.max() <= 1
    message = error_of(gan_sample, monkeypatch, str(tmp_path / "s.pt"), "--out", str(tmp_path / "x.png"))
    assert "not a checkpoint" in message


def test_bad_inputs_end_in_one_line(tmp_path, monkeypatch):
    assert "image size 48" in error_of(gan_train, monkeypatch, "--dataset", "fake", "--image-size", "48",
                                       "--out", str(tmp_path / "a"), "--device", "cpu")
    assert "unknown dataset" in error_of(gan_train, monkeypatch, "--dataset", "imagenet", "--out", str(tmp_path / "b"))


def test_fid_script_scores_a_sample_file(mnist_root, tmp_path, monkeypatch, capsys):
    from GAN import fid as fid_script
    torch.save(torch.rand(30, 1, 32, 32), tmp_path / "samples.pt")
    run_main(fid_script, monkeypatch, str(tmp_path / "samples.pt"), "--data-root", str(mnist_root))
    output = capsys.readouterr().out
    assert "30 samples against the test images: FID" in output and "class histogram: 0:" in output
    run_main(fid_script, monkeypatch, str(tmp_path / "samples.pt"), "--data-root", str(mnist_root), "--against", "validation")
    assert "30 samples against the validation images: FID" in capsys.readouterr().out
    torch.save({"not": "images"}, tmp_path / "bad.pt")
    assert "image tensor" in error_of(fid_script, monkeypatch, str(tmp_path / "bad.pt"), "--data-root", str(mnist_root))


# ---- conditional models: CGAN, ACGAN, InfoGAN ----

@pytest.mark.parametrize("variant", ["cgan", "acgan", "infogan"])
@pytest.mark.parametrize("size", [32, 64])
def test_conditional_shapes_and_the_label_reaching_the_image(variant, size):
    torch.manual_seed(0)
    model = MODELS[variant]((1, size, size), latent_dim=8, width=8).eval()
    z = model.noise(1).expand(2, -1)
    codes = model.random_codes(2, torch.tensor([3, 7]))
    codes["labels"] = torch.tensor([3, 7])  # the same z, two labels
    images = model.generate(z, codes)
    assert images.shape == (2, 1, size, size)
    assert (images[0] - images[1]).abs().max() > 0.01 * images.abs().max()  # eval-mode outputs at init are tiny
    score, code = model.discriminator(images, codes["labels"])
    assert score.shape == (2,)
    assert code is None if variant == "cgan" else code.shape == (2, 10 if variant == "acgan" else 12)
    assert model.sample(4, labels=torch.tensor([1, 2, 3, 4])).shape == (4, 1, size, size)


def test_cgan_discriminator_sees_the_label():
    torch.manual_seed(0)
    model = CGAN((1, 32, 32), width=8)
    images = torch.rand(2, 1, 32, 32)
    first, _ = model.discriminator(images, torch.tensor([0, 0]))
    second, _ = model.discriminator(images, torch.tensor([5, 5]))
    assert (first - second).abs().max() > 1e-6


def fixed_discriminator(model, scores, codes):
    """Make D return chosen scores and code-head outputs: real batch first, fake batch second."""
    outputs = iter([(scores[0], codes[0]), (scores[1], codes[1]), (scores[1], codes[1])])
    model.discriminator.forward = lambda images, labels=None, detach_auxiliary=False: next(outputs)


def test_auxiliary_class_loss_matches_a_hand_computed_value():
    model = ACGAN((1, 32, 32), width=8, num_classes=2)
    real_score, fake_score = torch.tensor([0.0, 0.0]), torch.tensor([0.0, 0.0])
    real_logits, fake_logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    labels = torch.tensor([0, 1])
    fixed_discriminator(model, (real_score, fake_score), (real_logits, fake_logits))
    parts = model.discriminator_loss(torch.zeros(2, 1, 32, 32), torch.zeros(2, 1, 32, 32), labels, {"labels": labels})
    # CE of logits (2, 0) for class 0 is log(1 + e^-2); (0, 1) for class 1: log(1 + e^-1); (0, 0): log 2; (3, 0) for class 1: log(1 + e^3)
    real_ce = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    fake_ce = (math.log(2) + math.log(1 + math.exp(3))) / 2
    assert parts["class_loss"].item() == pytest.approx(real_ce + fake_ce, rel=1e-6)
    assert parts["total"].item() == pytest.approx(2 * math.log(2) + real_ce + fake_ce, rel=1e-6)  # scores 0: log 2 each
    g_total = model.generator_loss(torch.zeros(2, 1, 32, 32), {"labels": labels})["total"]
    assert g_total.item() == pytest.approx(math.log(2) + fake_ce, rel=1e-6)


def test_information_loss_matches_a_hand_computed_value():
    model = InfoGAN((1, 32, 32), width=8, num_classes=3, continuous_codes=2)
    q_output = torch.tensor([[1.0, 0.0, 0.0, 0.5, -0.5]])   # logits for c1, then the means of c2, c3
    codes = {"labels": torch.tensor([0]), "continuous": torch.tensor([[1.0, 0.0]])}
    categorical = -math.log(math.e / (math.e + 2))          # -log softmax(1, 0, 0)[0]
    gaussian = (0.5 ** 2 / 2 + 0.5 ** 2 / 2) + math.log(2 * math.pi)  # two unit Gaussians' -log densities
    categorical_part, gaussian_part = model.information_loss(q_output, codes)
    assert (categorical_part.item(), gaussian_part.item()) == pytest.approx((categorical, gaussian), rel=1e-6)
    fixed_discriminator(model, (torch.zeros(1), torch.zeros(1)), (q_output, q_output))
    parts = model.discriminator_loss(torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32), None, codes)
    bound = math.log(3) + 2 * math.log(2) - (categorical + gaussian)  # L_I = H(c) - the loss
    assert parts["information_bound"].item() == pytest.approx(bound, rel=1e-6)


def test_continuous_weight_scales_only_the_continuous_codes_term_and_not_the_bound():
    q_output = torch.tensor([[1.0, 0.0, 0.0, 0.5, -0.5]])
    codes = {"labels": torch.tensor([0]), "continuous": torch.tensor([[1.0, 0.0]])}
    categorical = -math.log(math.e / (math.e + 2))
    gaussian = (0.5 ** 2 / 2 + 0.5 ** 2 / 2) + math.log(2 * math.pi)
    gan_part = 2 * math.log(2)  # D's scores of 0 on both batches: log 2 each
    for information_weight, continuous_weight in [(1.0, 1.0), (2.0, 0.1), (0.5, 4.0)]:
        model = InfoGAN((1, 32, 32), width=8, num_classes=3, continuous_codes=2,
                        information_weight=information_weight, continuous_weight=continuous_weight)
        fixed_discriminator(model, (torch.zeros(1), torch.zeros(1)), (q_output, q_output))
        parts = model.discriminator_loss(torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32), None, codes)
        weighted = information_weight * (categorical + continuous_weight * gaussian)  # lambda (CE + gamma Gaussian)
        assert parts["total"].item() == pytest.approx(gan_part + weighted, rel=1e-6)
        assert parts["information_bound"].item() == pytest.approx(math.log(3) + 2 * math.log(2) - categorical - gaussian,
                                                                   rel=1e-6)
        g_total = model.generator_loss(torch.zeros(1, 1, 32, 32), codes)["total"]
        assert g_total.item() == pytest.approx(math.log(2) + weighted, rel=1e-6)


@pytest.mark.parametrize("q_trains_body", [True, False])
def test_infogan_q_shapes_the_shared_body_in_d_step_only_when_asked(q_trains_body):
    torch.manual_seed(0)
    model = InfoGAN((1, 32, 32), width=8, q_trains_body=q_trains_body)
    real, fake = torch.rand(4, 1, 32, 32) * 2 - 1, torch.rand(4, 1, 32, 32) * 2 - 1
    codes = model.random_codes(4)
    (-model.discriminator_loss(real, fake, None, codes)["information_bound"]).backward()  # the information loss alone
    body_gradients = [p.grad for p in model.discriminator.features.parameters()]
    if q_trains_body:  # the paper: Q's loss trains the body it shares with the score
        assert all(grad is not None and grad.abs().sum() > 0 for grad in body_gradients)
    else:
        assert all(grad is None for grad in body_gradients)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.discriminator.auxiliary.parameters())
    model.zero_grad(set_to_none=True)
    fake = model.generate(model.noise(4), codes)
    sum(model.information_loss(model.discriminator(fake)[1], codes)).backward()           # G's step: through the body to G
    assert all(p.grad is not None for p in model.discriminator.features.parameters())
    assert model.generator.net[1].weight.grad.abs().sum() > 0


def test_infogan_category_enters_the_generator_scaled_and_the_class_label_does_not():
    for variant, scale, options in [("infogan", 1.0, {}), ("infogan", 2.0, dict(category_scale=2.0)), ("cgan", 1.0, {})]:
        model = MODELS[variant]((1, 32, 32), width=8, **options)
        seen = []
        model.generator.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
        codes = model.random_codes(3, torch.tensor([4, 0, 9]))
        model.generate(model.noise(3), codes)
        category = seen[0][:, model.latent_dim:model.latent_dim + 10]                      # the one-hot columns
        assert torch.equal(category, scale * torch.nn.functional.one_hot(codes["labels"], 10).float())


def test_measuring_quality_does_not_change_an_infogan_run(tmp_path, fake_root, monkeypatch):
    # The per-epoch FID draws InfoGAN's codes for its samples; from the global random stream, those draws
    # would shift the noise of every later training step, so --fid-every would change the trained model.
    # Here the first run measures after epochs 1 and 2, the second after epoch 2 only.
    weights = []
    for fid_every in ["1", "2"]:
        out = tmp_path / f"every-{fid_every}"
        run_main(gan_train, monkeypatch, "--model", "infogan", "--dataset", "fake", "--data-root", str(fake_root),
                 "--epochs", "2", "--width", "8", "--out", str(out), "--device", "cpu", "--fid-every", fid_every,
                 "--fid-samples", "0", "--ema", "0")
        weights.append(torch.load(out / "checkpoint.pt", weights_only=True)["model"])
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_infogan_codes_are_drawn_from_their_priors():
    model = InfoGAN((1, 32, 32), width=8)
    codes = model.random_codes(4000)
    assert set(codes["labels"].tolist()) == set(range(10))
    assert codes["continuous"].shape == (4000, 2)
    assert -1 <= codes["continuous"].min() < -0.95 and 0.95 < codes["continuous"].max() <= 1


def test_noise_prior_is_normal_or_uniform_and_a_seeded_draw_repeats():
    normal, uniform = InfoGAN((1, 32, 32), width=8), InfoGAN((1, 32, 32), width=8, noise="uniform")
    z = uniform.noise(4000)
    assert z.shape == (4000, uniform.latent_dim)
    assert -1 <= z.min() < -0.99 and 0.99 < z.max() <= 1 and abs(z.mean()) < 0.01
    assert normal.noise(4000).abs().max() > 2  # a Gaussian's tails
    seeded = normal.noise(5, torch.Generator().manual_seed(3))
    assert torch.equal(seeded, torch.randn(5, normal.latent_dim, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="noise must be one of"):
        InfoGAN((1, 32, 32), width=8, noise="laplace")


def test_best_assignment_is_the_best_permutation():
    labels = torch.randint(4, (200,), generator=torch.Generator().manual_seed(0))
    codes = torch.tensor([2, 0, 3, 1])[labels]   # a relabelling: perfect once mapped back
    assert gan_evaluate.best_assignment(codes, labels, 4) == (1.0, [1, 3, 0, 2], [1.0, 1.0, 1.0, 1.0])
    noisy = torch.where(torch.rand(200, generator=torch.Generator().manual_seed(1)) < 0.3, torch.randint(4, (200,)), codes)
    scores = {permutation: (torch.tensor(permutation)[labels] == noisy).double().mean().item()
              for permutation in itertools.permutations(range(4))}
    best_code_of_label = max(scores, key=scores.get)
    accuracy, label_of_code, purity = gan_evaluate.best_assignment(noisy, labels, 4)
    assert accuracy == pytest.approx(scores[best_code_of_label])
    assert [best_code_of_label[label] for label in label_of_code] == [0, 1, 2, 3]   # the same map, read the other way
    assert purity[0] == pytest.approx((labels[noisy == 0] == label_of_code[0]).double().mean().item())


@pytest.mark.parametrize("variant", ["cgan", "acgan", "infogan"])
def test_smoke_run_of_each_conditional_model(variant, tmp_path, fake_root, capsys, monkeypatch):
    out = tmp_path / "run"
    printed = smoke_run(fake_root, out, capsys, monkeypatch, "--model", variant, "--ema", "0")
    fid_row = (out / "fid.csv").read_text().splitlines()
    d_lr, g_lr = learning_rates(out)
    config = torch.load(out / "checkpoint.pt", weights_only=True)["model_config"]
    networks = (config["latent_dim"], config["generator_hidden"], config["discriminator_hidden"])
    if variant == "infogan":
        assert "best one-to-one map" in printed and "cluster_accuracy" in fid_row[0] and "digit_of_c1" in fid_row[0]
        assert (out / "infogan_c2.png").is_file() and (out / "infogan_c3.png").is_file()
        assert (d_lr, g_lr) == (2e-4, 1e-3)  # the paper's rates: 2e-4 for D, 1e-3 for G
        assert networks == (62, 1024, 1024)  # the paper's MNIST networks and coupling
        assert config["category_scale"] == 1.0 and config["q_trains_body"] is True
        assert config["noise"] == "uniform"  # z ~ U(-1, 1), as InfoGAN's own code draws it
    else:
        assert "requested class" in printed and "accuracy_9" in fid_row[0]
        assert (d_lr, g_lr) == (2e-4, 2e-4)  # DCGAN's one rate for both networks
        assert networks == (100, 0, 0) and config["noise"] == "normal"
    for name in ["log.csv", "checkpoint.pt", "frames/samples_002.png", "training.gif"]:
        assert (out / name).is_file(), name


def test_sample_script_writes_requested_labels_beside_the_tensor(tmp_path, fake_root, monkeypatch, capsys):
    out = tmp_path / "run"
    run_main(gan_train, monkeypatch, "--model", "cgan", "--dataset", "fake", "--data-root", str(tmp_path), "--epochs", "1",
             "--width", "8", "--out", str(out), "--device", "cpu", "--fid-every", "0", "--fid-samples", "0")
    run_main(gan_sample, monkeypatch, str(out / "checkpoint.pt"), "--num", "5", "--labels", "3", "7",
             "--out", str(tmp_path / "s.pt"), "--device", "cpu")
    assert torch.load(tmp_path / "s.labels.pt", weights_only=True).tolist() == [3, 7, 3, 7, 3]
    assert torch.load(tmp_path / "s.pt", weights_only=True).shape == (5, 1, 32, 32)
    assert "0..9" in error_of(gan_sample, monkeypatch, str(out / "checkpoint.pt"), "--labels", "12", "--out", str(tmp_path / "x.pt"))
    # GAN/fid.py finds the labels beside the samples and reports the requested-class accuracy.
    from GAN import fid as fid_script
    capsys.readouterr()
    run_main(fid_script, monkeypatch, str(tmp_path / "s.pt"), "--dataset", "fake", "--data-root", str(fake_root))
    assert "requested class recognised in" in capsys.readouterr().out


def test_sample_script_keeps_infogan_codes_apart_from_class_labels(tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_main(gan_train, monkeypatch, "--model", "infogan", "--dataset", "fake", "--data-root", str(tmp_path), "--epochs", "1",
             "--width", "8", "--out", str(out), "--device", "cpu", "--fid-every", "0", "--fid-samples", "0")
    run_main(gan_sample, monkeypatch, str(out / "checkpoint.pt"), "--num", "4", "--labels", "2",
             "--out", str(tmp_path / "s.pt"), "--device", "cpu")
    assert torch.load(tmp_path / "s.c1.pt", weights_only=True).tolist() == [2, 2, 2, 2]
    assert not (tmp_path / "s.labels.pt").exists()  # c1 = 2 is not a request for the digit 2


def test_infogan_clustering_is_watched_on_the_validation_split_and_reported_on_the_test_set(tmp_path, fake_root, monkeypatch,
                                                                                            capsys):
    # Anything chosen from the per-epoch figure (a seed, a checkpoint) must not have looked at the test set.
    out = tmp_path / "run"
    run_main(gan_train, monkeypatch, "--model", "infogan", "--dataset", "fake", "--data-root", str(fake_root), "--epochs", "1",
             "--width", "8", "--out", str(out), "--device", "cpu", "--fid-every", "1", "--fid-samples", "200",
             "--ema", "0")
    from common.data import load_dataset
    model = make_gan(**torch.load(out / "checkpoint.pt", weights_only=True)["model_config"])
    model.load_state_dict(torch.load(out / "checkpoint.pt", weights_only=True)["model"])
    model.eval()
    train_images, train_labels = load_dataset("fake", tmp_path, train=True)
    validation = gan_evaluate.cluster_labelled_images(model, *split_training_set(train_images, train_labels)[1])[0]
    test = gan_evaluate.cluster_labelled_images(model, *load_dataset("fake", tmp_path, train=False))[0]
    assert float(read_csv(out / "log.csv")[-1]["cluster_accuracy_val"]) == pytest.approx(validation, abs=1e-4)
    assert float(read_csv(out / "fid.csv")[-1]["cluster_accuracy"]) == pytest.approx(test, abs=1e-4)

    capsys.readouterr()
    run_main(gan_sample, monkeypatch, str(out / "checkpoint.pt"), "--clusters", "--device", "cpu")
    printed = capsys.readouterr().out.splitlines()
    assert f"{test:.2%} correct" in printed[0]                          # sample.py --clusters: the test set too
    assert len(printed) == 11 and sorted(int(line.split("class ")[1].split()[0]) for line in printed[1:]) == list(range(10))
    for line in printed[1:]:   # each code's class, then the class it holds most of besides (a merged digit)
        first, second = re.findall(r"class (\d+)", line), [float(share) for share in re.findall(r"([\d.]+)%", line)]
        assert len(first) == 2 and first[0] != first[1] and second[0] >= second[1] and sum(second) <= 100.05


def test_labels_for_an_unconditional_model_and_a_conditional_model_without_labels_are_clear_errors(tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_main(gan_train, monkeypatch, "--dataset", "fake", "--data-root", str(tmp_path), "--epochs", "1", "--width", "8",
             "--out", str(out), "--device", "cpu", "--fid-every", "0", "--fid-samples", "0")
    assert "needs a conditional model" in error_of(gan_sample, monkeypatch, str(out / "checkpoint.pt"), "--labels", "1")
    assert "needs an InfoGAN checkpoint" in error_of(gan_sample, monkeypatch, str(out / "checkpoint.pt"), "--clusters")
    from conftest import write_images
    write_images(tmp_path / "flat", 40, size=(32, 32))
    assert "have none" in error_of(gan_train, monkeypatch, "--model", "acgan", "--dataset", "folder", "--data-root",
                                         str(tmp_path / "flat"), "--out", str(tmp_path / "b"), "--device", "cpu")


def test_no_q_trains_body_turns_off_the_papers_coupling():
    parser = gan_train.make_parser()
    assert parser.parse_args([]).q_trains_body is True and parser.parse_args(["--no-q-trains-body"]).q_trains_body is False
