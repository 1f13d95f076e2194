"""GAN/model.py, GAN/train.py, GAN/sample.py, GAN/evaluate.py and GAN/fid.py: shapes, the losses'
math, each variant's settings, FID, and the command line."""
import itertools
import math
import re
import subprocess
import sys

import pytest
import torch
from torch import nn

from common import InputError
from common.data import load_dataset, split_training_set
from conftest import ROOT, read_csv
from GAN import evaluate as gan_evaluate
from GAN import fid as fid_script
from GAN import model as gan_model
from GAN import sample as gan_sample
from GAN import train as gan_train
from GAN.evaluate import SampleScorer, features, frechet_distance, load_classifier
from GAN.model import ACGAN, CGAN, GAN, MODELS, InfoGAN, make_gan
from test_vae_train import error_of, run_main, straight_and_resumed


def splits(root, dataset="mnist", image_size=None):
    """The dataset's (train, test) splits, each (images, labels), as a run loads them."""
    return tuple(load_dataset(dataset, root, image_size, train=train) for train in (True, False))


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
    assert isinstance(first, nn.Linear)
    assert (first.in_features, first.out_features) == (8 + 10 + 2, 16)  # z, c1, c2, c3
    assert isinstance(norm, nn.BatchNorm1d) and hidden.generator.net[4].in_channels == 16
    assert hidden.sample(3).shape == (3, 1, 32, 32)
    assert abs(first.weight.std().item() - 0.02) < 0.005  # DCGAN's initialisation reaches it too


@pytest.mark.parametrize("loss", gan_model.LOSSES)
def test_discriminator_hidden_layer_is_shared_by_the_score_and_q(loss):
    model = InfoGAN(width=8, loss=loss, discriminator_hidden=16)
    layer = model.discriminator.features[-2 if loss == "wgan-gp" else -3]
    assert isinstance(layer, nn.Linear) and layer.out_features == 16
    has_norm = any(isinstance(m, nn.BatchNorm1d) for m in model.discriminator.features)
    assert has_norm == (loss != "wgan-gp")  # the penalty is per sample
    assert model.discriminator.score.in_features == 16
    assert model.discriminator.auxiliary[1].in_features == 16
    score, q = model.discriminator(model.sample(3) * 2 - 1)
    assert score.shape == (3,) and q.shape == (3, 12)
    assert layer.weight in set(model.discriminator.critic_parameters())  # clipped for wgan too


def test_maxpool_discriminator_and_critic_without_batchnorm():
    model = GAN((1, 32, 32), width=8, downsample="maxpool", loss="wgan-gp")
    assert any(isinstance(m, nn.MaxPool2d) for m in model.discriminator.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.discriminator.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in GAN(width=8).discriminator.modules())
    assert model.discriminator(torch.zeros(2, 1, 32, 32))[0].shape == (2,)


def test_unsupported_image_size_is_a_clear_error():
    with pytest.raises(InputError, match="image size 48"):
        GAN((1, 48, 48))


def test_weights_start_from_dcgan_initialisation():
    torch.manual_seed(0)
    conv_weights = torch.cat([m.weight.flatten() for m in GAN(width=32).modules()
                              if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert abs(conv_weights.std().item() - 0.02) < 0.001
    assert abs(conv_weights.mean().item()) < 0.001


# ---- each variant's settings live in its class, and a model rebuilds from its config ----

def test_each_variants_settings_are_its_class_defaults_and_an_argument_overrides_them():
    dcgan, infogan = GAN(), InfoGAN()
    assert (dcgan.latent_dim, dcgan.noise_prior) == (100, "normal")
    assert (infogan.latent_dim, infogan.noise_prior) == (62, "uniform")  # its paper's MNIST setting
    assert infogan.config["generator_hidden"] == infogan.config["discriminator_hidden"] == 1024
    assert dcgan.config["generator_hidden"] == dcgan.config["discriminator_hidden"] == 0
    assert dcgan.config["width"] == infogan.config["width"] == 32
    smaller = InfoGAN(latent_dim=10, noise="normal", generator_hidden=0, width=8)
    assert (smaller.latent_dim, smaller.noise_prior, smaller.config["width"]) == (10, "normal", 8)
    assert not any(isinstance(m, nn.Linear) for m in smaller.generator.modules())


@pytest.mark.parametrize("variant, loss, expected", [
    ("dcgan", "gan", (2e-4, 4e-4, 1)), ("cgan", "gan", (2e-4, 2e-4, 1)),
    ("acgan", "gan", (2e-4, 2e-4, 1)), ("infogan", "gan", (2e-4, 1e-3, 1)),
    ("dcgan", "wgan", (5e-5, 5e-5, 5)), ("infogan", "wgan", (5e-5, 5e-5, 5)),
    ("dcgan", "wgan-gp", (1e-4, 1e-4, 5)), ("infogan", "wgan-gp", (1e-4, 1e-4, 5))])
def test_each_loss_trains_with_its_papers_optimizer_and_each_variant_sets_gs_rate(
        variant, loss, expected):
    model = make_gan(variant, width=8, loss=loss)
    d_optimizer, g_optimizer = model.optimizers()
    assert (d_optimizer.defaults["lr"], g_optimizer.defaults["lr"], model.n_critic) == expected
    assert type(d_optimizer) is type(g_optimizer) is (torch.optim.RMSprop if loss == "wgan"
                                                      else torch.optim.Adam)
    d_lr, g_lr = (optimizer.defaults["lr"] for optimizer in model.optimizers(lr=1e-5))
    assert d_lr == 1e-5 and g_lr == model.generator_lr(1e-5)  # G's rule follows D's given rate
    assert model.optimizers(g_lr=3e-3)[1].defaults["lr"] == 3e-3


@pytest.mark.parametrize("variant", MODELS)
def test_a_model_rebuilds_from_its_config(variant):
    torch.manual_seed(0)
    model = make_gan(variant, image_shape=(3, 32, 32), num_classes=4, width=8, latent_dim=6,
                     loss="wgan-gp", ema_decay=0.9)
    again = make_gan(**model.config)
    assert type(again) is type(model) and again.config == model.config
    again.load_state_dict(model.state_dict())  # the same architecture, tensor for tensor


# ---- the losses ----

class LinearCritic(nn.Module):
    """f(x) = w . x + b, whose gradient is w everywhere: the penalty's closed form is
    (||w|| - 1)^2."""

    def __init__(self, pixels):
        super().__init__()
        self.linear = nn.Linear(pixels, 1)

    def forward(self, x, labels=None):
        return self.linear(x.flatten(1)).flatten(), None  # (score, no head), as Discriminator's


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
    d_real = torch.sigmoid(model.discriminator(real)[0])
    d_fake = torch.sigmoid(model.discriminator(fake)[0])
    parts = model.discriminator_loss(real, fake)
    expected = -(d_real.log().mean() + (1 - d_fake).log().mean())
    assert torch.allclose(parts["total"], expected, rtol=1e-5)
    assert torch.allclose(parts["d_real"], d_real.mean())
    assert torch.allclose(parts["d_fake"], d_fake.mean())
    assert torch.allclose(model.generator_loss(fake)["total"], -d_fake.log().mean(), rtol=1e-5)


def test_weight_clipping_keeps_every_critic_weight_within_c():
    model = GAN(width=16, loss="wgan", clip=0.01)
    assert max(p.abs().max() for p in model.discriminator.parameters()) > 0.01  # N(0, 0.02)
    model.clip_critic_weights()
    assert max(p.abs().max() for p in model.discriminator.parameters()) <= 0.01
    assert max(p.abs().max() for p in model.generator.parameters()) > 0.01  # G is left alone


@pytest.mark.parametrize("variant", ["acgan", "infogan"])
def test_weight_clipping_leaves_the_extra_heads_alone(variant):
    # Clipping bounds the critic f; ACGAN's class head and InfoGAN's Q are not part of f's score.
    torch.manual_seed(0)
    model = MODELS[variant](width=8, loss="wgan", clip=0.01)
    head_before = [p.clone() for p in model.discriminator.auxiliary.parameters()]
    assert max(p.abs().max() for p in head_before) > 0.01
    model.clip_critic_weights()
    assert all(torch.equal(before, after)
               for before, after in zip(head_before, model.discriminator.auxiliary.parameters()))
    assert max(p.abs().max() for p in model.discriminator.critic_parameters()) <= 0.01
    critic = {id(p) for p in model.discriminator.critic_parameters()}
    head = {id(p) for p in model.discriminator.auxiliary.parameters()}
    assert critic | head == {id(p) for p in model.discriminator.parameters()}
    assert not critic & head


def test_cgan_discriminator_forward_is_the_path_the_losses_use():
    # The one forward takes the labels: the score the GAN loss sees is the one D returns.
    torch.manual_seed(0)
    model = CGAN((1, 32, 32), width=8).eval()
    real, fake, labels = torch.rand(3, 1, 32, 32), torch.rand(3, 1, 32, 32), torch.tensor([1, 4, 7])
    parts = model.discriminator_loss(real, fake, labels, {"labels": labels})
    real_score, fake_score = (model.discriminator(x, labels)[0] for x in (real, fake))
    softplus = torch.nn.functional.softplus
    expected = softplus(-real_score).mean() + softplus(fake_score).mean()
    assert torch.allclose(parts["total"], expected)


# ---- FID ----

def test_frechet_distance_is_zero_for_a_set_with_itself_and_grows_with_a_mean_shift():
    features = torch.randn(500, 8, dtype=torch.float64) @ torch.randn(8, 8, dtype=torch.float64)
    assert abs(frechet_distance(features, features)) < 1e-6
    shifts = [frechet_distance(features, features + shift) for shift in (0.1, 0.5, 1.0)]
    assert shifts == sorted(shifts)
    # A constant shift moves only the means: FID = ||shift||^2 = 8 * shift^2.
    assert shifts[2] == pytest.approx(8.0, rel=1e-6)


def test_frechet_distance_of_diagonal_gaussians_has_the_closed_form():
    # For diagonal covariances the matrix square root is elementwise:
    # FID = |mu1 - mu2|^2 + sum (s1 - s2)^2.
    mean_1, mean_2 = torch.tensor([0.0, 1.0, 2.0]).double(), torch.tensor([1.0, 1.0, 0.0]).double()
    std_1, std_2 = torch.tensor([1.0, 2.0, 0.5]).double(), torch.tensor([3.0, 1.0, 0.5]).double()
    fid = frechet_distance((mean_1, torch.diag(std_1 ** 2)), (mean_2, torch.diag(std_2 ** 2)))
    assert fid == pytest.approx(5.0 + 4.0 + 1.0)


def test_classifier_is_trained_once_then_loaded_from_its_cache(mnist_root, capsys):
    classifier, info = load_classifier("mnist", mnist_root, *splits(mnist_root), epochs=1)
    assert "training the classifier" in capsys.readouterr().out
    assert gan_evaluate.classifier_path("mnist", mnist_root, 32).is_file()
    assert sorted(p.name for p in mnist_root.iterdir()) == ["MNIST"]  # nothing in the data folder
    assert 0 <= info["test_accuracy"] <= 1
    assert info["fit_images"] == 42 and info["held_out_images"] == 8
    again, info_again = load_classifier("mnist", mnist_root, *splits(mnist_root), epochs=1)
    assert capsys.readouterr().out == ""
    assert info_again == info
    assert all(torch.equal(a, b)
               for a, b in zip(classifier.state_dict().values(), again.state_dict().values()))


def test_a_classifier_cached_from_other_data_or_settings_is_trained_again(mnist_root, capsys):
    (train_images, train_labels), test_set = splits(mnist_root)
    load_classifier("mnist", mnist_root, (train_images, train_labels), test_set, epochs=1)
    path = gan_evaluate.classifier_path("mnist", mnist_root, 32)
    first = torch.load(path, weights_only=True)["trained_from"]
    capsys.readouterr()
    changed = train_images.clone()
    changed[0, 0, 0, 0] += 1  # one pixel of a new version of the data
    load_classifier("mnist", mnist_root, (changed, train_labels), test_set, epochs=1)
    assert "trained from other data or settings" in capsys.readouterr().out
    assert torch.load(path, weights_only=True)["trained_from"] != first
    load_classifier("mnist", mnist_root, (changed, train_labels), test_set, epochs=2)
    assert "trained from other data or settings" in capsys.readouterr().out


def test_a_classifier_that_cannot_be_cached_is_a_warning(mnist_root, user_cache, capsys):
    path = gan_evaluate.classifier_path("mnist", mnist_root, 32)
    path.parent.parent.mkdir(parents=True, exist_ok=True)
    path.parent.write_text("a file where the cache folder would go")
    load_classifier("mnist", mnist_root, *splits(mnist_root), epochs=1)
    assert "warning: could not cache the classifier" in capsys.readouterr().out
    assert not list(user_cache.rglob("*.tmp"))


def test_scorer_histogram_and_28_pixel_samples(mnist_root):
    scorer = SampleScorer("mnist", mnist_root, *splits(mnist_root))
    test_images, test_labels = load_dataset("mnist", mnist_root, image_size=28, train=False)
    result = scorer.score(test_images.float() / 255)  # 28x28 samples get the loader's padding
    assert result["fid"] == pytest.approx(0.0, abs=1e-4)  # the test set against itself
    assert len(result["shares"]) == 10 and sum(result["shares"]) == pytest.approx(1.0)
    assert "accuracy" not in result
    asked = scorer.score(test_images.float() / 255, test_labels)  # asked for its own labels
    assert asked["accuracy"] == pytest.approx(scorer.info["test_accuracy"])
    class_sizes = torch.bincount(test_labels, minlength=10).double()
    weighted = (torch.tensor(asked["class_accuracy"]) * class_sizes).sum() / len(test_labels)
    assert weighted == pytest.approx(asked["accuracy"])


def test_classifier_never_sees_the_held_out_images_and_the_floor_uses_as_many_of_them(
        mnist_root, monkeypatch):
    seen = []
    real_batches = gan_evaluate.Batches
    monkeypatch.setattr(gan_evaluate, "Batches", lambda images, *rest, **options:
                        seen.append(images) or real_batches(images, *rest, **options))
    (train_images, train_labels), (test_images, test_labels) = splits(mnist_root)
    scorer = SampleScorer("mnist", mnist_root, (train_images, train_labels),
                          (test_images, test_labels))
    (fit_images, _), (held_out, _) = split_training_set(train_images, train_labels)
    assert len(held_out) == 8 and torch.equal(held_out, train_images[-8:])  # the last sixth
    assert len(seen) == 1 and torch.equal(seen[0], fit_images)  # what the classifier trained on
    for count in (5, 8, 100):                                      # 100: all 8 there are
        floor, used = scorer.floor(count)
        expected = frechet_distance(features(scorer.classifier, held_out[:count].float() / 255),
                                    features(scorer.classifier, test_images.float() / 255))
        assert used == min(count, 8) and floor == pytest.approx(expected)
    result = scorer.score(test_images[:5].float() / 255)
    assert (result["floor"], result["floor_images"]) == scorer.floor(5)
    # against the validation split (to choose settings on): the held-out images score 0, the test
    # images are its floor
    validation = scorer.score(held_out.float() / 255, against="validation")
    assert validation["fid"] == pytest.approx(0.0, abs=1e-4)
    floor, used = scorer.floor(5, against="validation")
    expected = frechet_distance(features(scorer.classifier, test_images[:5].float() / 255),
                                features(scorer.classifier, held_out.float() / 255))
    assert used == 5 and floor == pytest.approx(expected)
    against_validation = scorer.score(test_images[:5].float() / 255, against="validation")
    assert against_validation["fid"] == pytest.approx(floor)


def test_training_the_classifier_touches_no_global_random_state(mnist_root, monkeypatch):
    # torch.manual_seed would reseed every CUDA device too (and fork_rng(devices=[]) restores only
    # the CPU), so a run on a GPU that trained the classifier first would draw its noise from it.
    reseeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: reseeded.append(seed))
    cpu_state = torch.get_rng_state()
    load_classifier("mnist", mnist_root, *splits(mnist_root), epochs=1)
    assert reseeded == []
    assert torch.equal(torch.get_rng_state(), cpu_state)
    # and the weights do not depend on the global stream
    torch.manual_seed(123)
    path = gan_evaluate.classifier_path("mnist", mnist_root, 32)
    path.unlink()
    again, _ = load_classifier("mnist", mnist_root, *splits(mnist_root), epochs=1)
    first = torch.load(path, weights_only=True)["model"]
    assert all(torch.equal(first[name], value) for name, value in again.state_dict().items())


def test_corrupt_cached_classifier_is_a_clear_error(mnist_root):
    path = gan_evaluate.classifier_path("mnist", mnist_root, 32)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="delete it"):
        load_classifier("mnist", mnist_root, *splits(mnist_root))


# ---- training runs ----

def initial_weights(config, seed=0):
    torch.manual_seed(seed)  # train.py seeds before it builds the model
    return make_gan(**config).state_dict()


@pytest.mark.parametrize("loss", gan_model.LOSSES)
def test_one_epoch_of_each_loss_changes_both_networks(loss, tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_main(gan_train, monkeypatch, "--dataset", "fake", "--epochs", "1", "--loss", loss,
             "--batch-size", "32", "--width", "8", "--out", str(out), "--device", "cpu",
             "--fid-every", "0", "--fid-samples", "0")
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    before = initial_weights(checkpoint["model_config"])
    for network in ("generator", "discriminator"):
        changed = [not torch.equal(value, before[name])
                   for name, value in checkpoint["model"].items()
                   if name.startswith(network) and value.is_floating_point()]
        assert any(changed), network
    if loss == "wgan":
        assert max(v.abs().max() for k, v in checkpoint["model"].items()
                   if k.startswith("discriminator") and v.is_floating_point()
                   and "running" not in k) <= 0.01


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    """One data root for the smoke runs on --dataset fake (its FID classifier is cached once)."""
    return tmp_path_factory.mktemp("fake")


def smoke_run(root, out, capsys, monkeypatch, *flags):
    """GAN/train.py on the fake data for 2 epochs with FID every epoch, in this process; returns
    what it printed."""
    capsys.readouterr()
    run_main(gan_train, monkeypatch, "--dataset", "fake", "--data-root", str(root), "--epochs", "2",
             "--batch-size", "32", "--width", "8", "--fid-every", "1", "--fid-samples", "200",
             "--out", str(out), "--device", "cpu", *flags)
    return capsys.readouterr().out


def learning_rates(out):
    """D's and G's learning rates, as the run's checkpoint saved them with the optimizers."""
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    return tuple(checkpoint[name]["param_groups"][0]["lr"]
                 for name in ["d_optimizer", "g_optimizer"])


def test_command_line_runs_from_another_directory(tmp_path, fake_root):
    # The one subprocess run: the command exactly as a user types it, from another folder.
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, str(ROOT / "GAN" / "train.py"), "--dataset", "fake",
                             "--data-root", str(fake_root), "--epochs", "1", "--batch-size", "32",
                             "--width", "8", "--fid-every", "1", "--fid-samples", "200",
                             "--out", str(out), "--device", "cpu"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "FID of 200 samples" in result.stdout and (out / "checkpoint.pt").is_file()


def test_help_fits_on_one_screen_and_the_experiments_flags_are_gone(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    text = gan_train.make_parser().format_help()
    assert len(text.splitlines()) <= 60 and "earlier" not in text
    for flag in ["--g-hidden", "--d-hidden", "--category-scale", "--continuous-weight",
                 "--q-trains-body", "--no-q-trains-body", "--noise", "--clip", "--gp-weight"]:
        assert flag not in text


def test_no_script_branches_on_the_variant():
    # What a variant adds is a method or an attribute of its class (GAN/model.py).
    variant_branch = r"isinstance\(model|args\.model\s*(==|!=|in)|import .*\b(CGAN|InfoGAN)\b"
    for name in ["train.py", "evaluate.py", "sample.py", "fid.py"]:
        assert not re.search(variant_branch, (ROOT / "GAN" / name).read_text()), name


@pytest.mark.parametrize("loss", gan_model.LOSSES)
def test_smoke_run_of_each_loss(loss, tmp_path, fake_root, capsys, monkeypatch):
    out = tmp_path / "run"
    ema = [] if loss == "gan" else ["--ema", "0"]
    printed = smoke_run(fake_root, out, capsys, monkeypatch, "--loss", loss, *ema)
    assert printed.count("FID of 200 samples") == 1 and "live G" not in printed  # one FID
    d_lr, g_lr = learning_rates(out)
    papers = {"gan": (2e-4, 4e-4), "wgan": (5e-5, 5e-5), "wgan-gp": (1e-4, 1e-4)}
    assert (d_lr, g_lr) == papers[loss]  # G at twice D's rate with the gan loss only
    for name in ["log.csv", "fid.csv", "checkpoint.pt", "frames/samples_002.png", "samples.png",
                 "training.gif", "loss_curves.png", "fid_curve.png"]:
        assert (out / name).is_file(), name
    header = (out / "log.csv").read_text().splitlines()[0].split(",")
    # a column for each part the loss returns, and no empty ones for parts it does not have
    parts = {"gan": [], "wgan": ["wasserstein"], "wgan-gp": ["wasserstein", "gradient_penalty"]}
    assert header == ["epoch", "d_loss", "g_loss", "d_real", "d_fake", *parts[loss], "fid_2k",
                      "seconds", "images_per_second"]
    assert "fid_live" not in (out / "fid.csv").read_text()


def test_the_fid_curve_counts_epochs(tmp_path, fake_root, capsys, monkeypatch):
    drawn = {}
    monkeypatch.setattr(gan_evaluate, "save_curves",
                        lambda path, curves, **labels: drawn.update({path.name: curves}))
    smoke_run(fake_root, tmp_path / "run", capsys, monkeypatch, "--fid-every", "2",
              "--fid-samples", "0")
    assert list(drawn["fid_curve.png"]) == ["FID, 2,000 samples"]  # one curve: the G that samples
    assert drawn["fid_curve.png"]["FID, 2,000 samples"][0] == [2]  # measured after epoch 2 only


def test_every_epochs_fid_draws_the_same_noise(tmp_path, fake_root, capsys, monkeypatch):
    # Fresh noise each epoch would move the FID of an unchanged G
    seeds = []
    watch = gan_train.watch
    monkeypatch.setattr(gan_train, "watch", lambda model, scorer, batch_size, seed, *rest:
                        seeds.append(seed) or watch(model, scorer, batch_size, seed, *rest))
    smoke_run(fake_root, tmp_path / "run", capsys, monkeypatch, "--fid-samples", "0", "--seed", "7")
    assert seeds == [7, 7]  # epochs 1 and 2: measure() draws from this seed alone


def test_the_dataset_is_loaded_once_per_run(tmp_path, fake_root, capsys, monkeypatch):
    loads = []
    real_load = gan_train.load_dataset
    monkeypatch.setattr(gan_train, "load_dataset", lambda *args, train=True:
                        loads.append(train) or real_load(*args, train=train))
    monkeypatch.setattr(gan_evaluate, "load_dataset", lambda *args, **options: 1 / 0, raising=False)
    smoke_run(fake_root, tmp_path / "run", capsys, monkeypatch, "--model", "infogan",
              "--epochs", "1")
    assert sorted(loads) == [False, True]  # each split once, classifier and clustering included


def test_the_averaged_generator_is_the_moving_average_of_the_live_one():
    model = gan_model.make_gan("dcgan", image_shape=(1, 32, 32), width=8, ema_decay=0.5)
    with torch.no_grad():
        for parameter in model.generator.parameters():
            parameter.add_(1.0)
        model.generator.net[2].running_mean.fill_(3.0)  # BatchNorm statistics are averaged too
    before = {name: value.clone() for name, value in model.averaged_generator.state_dict().items()}
    live = model.generator.state_dict()
    for updates in (1, 2):
        model.update_averaged_generator()
        beta = min(0.5, (1 + updates) / (10 + updates))  # the first steps skip the start
        for name, value in model.averaged_generator.state_dict().items():
            if value.is_floating_point():
                before[name] = beta * before[name] + (1 - beta) * live[name]
                assert torch.allclose(value, before[name]), name
    x = model.noise(4)
    assert not torch.equal(model.sample(z=x), model.sample(z=x, averaged=False))
    assert gan_model.make_gan("dcgan", width=8).averaged_generator is None  # ema_decay 0: no copy


def test_ema_changes_what_is_sampled_not_how_the_networks_train(tmp_path, monkeypatch):
    common = ["--dataset", "fake", "--batch-size", "32", "--width", "8", "--epochs", "1",
              "--device", "cpu", "--fid-every", "0", "--fid-samples", "0"]
    run_main(gan_train, monkeypatch, *common, "--out", str(tmp_path / "averaged"))
    run_main(gan_train, monkeypatch, *common, "--ema", "0", "--out", str(tmp_path / "live"))
    averaged, live = (torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)["model"]
                      for name in ("averaged", "live"))
    assert any(name.startswith("averaged_generator.") for name in averaged)
    assert not any(name.startswith("averaged_generator.") for name in live)
    assert all(torch.equal(averaged[name], live[name]) for name in live)  # the same training
    weight = "generator.net.1.weight"
    assert not torch.equal(averaged["averaged_" + weight], averaged[weight])


def test_resume_continues_exactly_where_the_run_stopped(tmp_path, monkeypatch):
    common = ["--dataset", "fake", "--loss", "wgan-gp", "--batch-size", "32", "--width", "8",
              "--device", "cpu", "--fid-every", "0", "--fid-samples", "0"]
    run_main(gan_train, monkeypatch, *common, "--epochs", "2", "--out", str(tmp_path / "straight"))
    run_main(gan_train, monkeypatch, *common, "--epochs", "1", "--out", str(tmp_path / "resumed"))
    run_main(gan_train, monkeypatch, "--resume", str(tmp_path / "resumed" / "checkpoint.pt"),
             "--epochs", "2")
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert resumed["epoch"] == 2
    assert all(torch.equal(straight["model"][name], resumed["model"][name])
               for name in straight["model"])


def test_cosine_schedule_anneals_both_learning_rates_and_a_resumed_run_follows_it(
        tmp_path, monkeypatch):
    common = ["--dataset", "fake", "--batch-size", "32", "--width", "8", "--device", "cpu",
              "--fid-every", "0", "--fid-samples", "0", "--epochs", "2", "--lr", "2e-4",
              "--g-lr", "4e-4", "--lr-schedule", "cosine"]
    straight, resumed = straight_and_resumed(gan_train, monkeypatch, tmp_path, *common)
    d_lr = straight["d_optimizer"]["param_groups"][0]["lr"]
    assert 0 < d_lr < 2e-4 * 0.05  # the last step's, near the end of the curve
    assert straight["g_optimizer"]["param_groups"][0]["lr"] == pytest.approx(2 * d_lr)
    assert all(torch.equal(straight["model"][name], resumed["model"][name])
               for name in straight["model"])


def test_sample_script_writes_images_in_zero_one(tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_main(gan_train, monkeypatch, "--dataset", "fake", "--epochs", "1", "--width", "8",
             "--out", str(out), "--device", "cpu", "--fid-every", "0", "--fid-samples", "0")
    run_main(gan_sample, monkeypatch, str(out / "checkpoint.pt"), "--num", "10",
             "--out", str(tmp_path / "s.pt"), "--device", "cpu")
    images = torch.load(tmp_path / "s.pt", weights_only=True)
    assert images.shape == (10, 1, 32, 32) and images.min() >= 0 and images.max() <= 1
    message = error_of(gan_sample, monkeypatch, str(tmp_path / "s.pt"), "--out",
                       str(tmp_path / "x.png"))
    assert "not a checkpoint" in message


def test_bad_inputs_end_in_one_line(tmp_path, monkeypatch):
    assert "image size 48" in error_of(gan_train, monkeypatch, "--dataset", "fake",
                                       "--image-size", "48", "--out", str(tmp_path / "a"),
                                       "--device", "cpu")
    assert "unknown dataset" in error_of(gan_train, monkeypatch, "--dataset", "imagenet",
                                         "--out", str(tmp_path / "b"))


def test_fid_script_scores_a_sample_file(mnist_root, tmp_path, monkeypatch, capsys):
    torch.save(torch.rand(30, 1, 32, 32), tmp_path / "samples.pt")
    run_main(fid_script, monkeypatch, str(tmp_path / "samples.pt"), "--data-root", str(mnist_root))
    output = capsys.readouterr().out
    assert "30 samples against the test images: FID" in output and "class histogram: 0:" in output
    run_main(fid_script, monkeypatch, str(tmp_path / "samples.pt"), "--data-root", str(mnist_root),
             "--against", "validation")
    assert "30 samples against the validation images: FID" in capsys.readouterr().out
    torch.save({"not": "images"}, tmp_path / "bad.pt")
    assert "image tensor" in error_of(fid_script, monkeypatch, str(tmp_path / "bad.pt"),
                                      "--data-root", str(mnist_root))


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
    # eval-mode outputs at init are tiny
    assert (images[0] - images[1]).abs().max() > 0.01 * images.abs().max()
    score, code = model.discriminator(images, codes["labels"])
    assert score.shape == (2,)
    head = {"cgan": None, "acgan": (2, 10), "infogan": (2, 12)}[variant]  # the class or c
    assert (code if code is None else code.shape) == head
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
    model.discriminator.forward = lambda images, labels=None: next(outputs)


def test_auxiliary_class_loss_matches_a_hand_computed_value():
    model = ACGAN((1, 32, 32), width=8, num_classes=2)
    real_score, fake_score = torch.tensor([0.0, 0.0]), torch.tensor([0.0, 0.0])
    real_logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    fake_logits = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    labels = torch.tensor([0, 1])
    fixed_discriminator(model, (real_score, fake_score), (real_logits, fake_logits))
    zeros = torch.zeros(2, 1, 32, 32)
    parts = model.discriminator_loss(zeros, zeros, labels, {"labels": labels})
    # CE of logits (2, 0) for class 0 is log(1 + e^-2); (0, 1) for class 1: log(1 + e^-1);
    # (0, 0): log 2; (3, 0) for class 1: log(1 + e^3)
    real_ce = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    fake_ce = (math.log(2) + math.log(1 + math.exp(3))) / 2
    assert parts["class_loss"].item() == pytest.approx(real_ce + fake_ce, rel=1e-6)
    # scores 0: log 2 each
    assert parts["total"].item() == pytest.approx(2 * math.log(2) + real_ce + fake_ce, rel=1e-6)
    g_total = model.generator_loss(zeros, {"labels": labels})["total"]
    assert g_total.item() == pytest.approx(math.log(2) + fake_ce, rel=1e-6)


def test_information_loss_matches_a_hand_computed_value():
    model = InfoGAN((1, 32, 32), width=8, num_classes=3, continuous_codes=2)
    q_output = torch.tensor([[1.0, 0.0, 0.0, 0.5, -0.5]])   # logits for c1, then c2's, c3's means
    codes = {"labels": torch.tensor([0]), "continuous": torch.tensor([[1.0, 0.0]])}
    categorical = -math.log(math.e / (math.e + 2))          # -log softmax(1, 0, 0)[0]
    gaussian = (0.5 ** 2 / 2 + 0.5 ** 2 / 2) + math.log(2 * math.pi)  # two unit Gaussians
    categorical_part, gaussian_part = model.information_loss(q_output, codes)
    assert (categorical_part.item(), gaussian_part.item()) == pytest.approx((categorical, gaussian),
                                                                            rel=1e-6)
    fixed_discriminator(model, (torch.zeros(1), torch.zeros(1)), (q_output, q_output))
    zeros = torch.zeros(1, 1, 32, 32)
    parts = model.discriminator_loss(zeros, zeros, None, codes)
    bound = math.log(3) + 2 * math.log(2) - (categorical + gaussian)  # L_I = H(c) - the loss
    assert parts["information_bound"].item() == pytest.approx(bound, rel=1e-6)


def test_continuous_weight_scales_only_the_continuous_codes_term_and_not_the_bound():
    q_output = torch.tensor([[1.0, 0.0, 0.0, 0.5, -0.5]])
    codes = {"labels": torch.tensor([0]), "continuous": torch.tensor([[1.0, 0.0]])}
    categorical = -math.log(math.e / (math.e + 2))
    gaussian = (0.5 ** 2 / 2 + 0.5 ** 2 / 2) + math.log(2 * math.pi)
    gan_part = 2 * math.log(2)  # D's scores of 0 on both batches: log 2 each
    zeros = torch.zeros(1, 1, 32, 32)
    for information_weight, continuous_weight in [(1.0, 1.0), (2.0, 0.1), (0.5, 4.0)]:
        model = InfoGAN((1, 32, 32), width=8, num_classes=3, continuous_codes=2,
                        information_weight=information_weight, continuous_weight=continuous_weight)
        fixed_discriminator(model, (torch.zeros(1), torch.zeros(1)), (q_output, q_output))
        parts = model.discriminator_loss(zeros, zeros, None, codes)
        # lambda (CE + gamma Gaussian)
        weighted = information_weight * (categorical + continuous_weight * gaussian)
        assert parts["total"].item() == pytest.approx(gan_part + weighted, rel=1e-6)
        bound = math.log(3) + 2 * math.log(2) - categorical - gaussian
        assert parts["information_bound"].item() == pytest.approx(bound, rel=1e-6)
        g_total = model.generator_loss(zeros, codes)["total"]
        assert g_total.item() == pytest.approx(math.log(2) + weighted, rel=1e-6)


def test_infogans_information_loss_trains_the_body_q_shares_with_the_score():
    torch.manual_seed(0)
    model = InfoGAN((1, 32, 32), width=8)
    real, fake = torch.rand(4, 1, 32, 32) * 2 - 1, torch.rand(4, 1, 32, 32) * 2 - 1
    codes = model.random_codes(4)
    # the information loss alone, in D's step: it trains Q and the body Q shares (the paper's way)
    (-model.discriminator_loss(real, fake, None, codes)["information_bound"]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in [*model.discriminator.features.parameters(),
                         *model.discriminator.auxiliary.parameters()])
    model.zero_grad(set_to_none=True)
    fake = model.generate(model.noise(4), codes)
    sum(model.information_loss(model.discriminator(fake)[1], codes)).backward()  # G's step
    assert model.generator.net[0].weight.grad.abs().sum() > 0


def test_the_category_enters_the_generator_as_a_one_hot():
    for variant in ["infogan", "cgan"]:
        model = MODELS[variant]((1, 32, 32), width=8, generator_hidden=0)
        seen = []
        model.generator.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
        codes = model.random_codes(3, torch.tensor([4, 0, 9]))
        model.generate(model.noise(3), codes)
        category = seen[0][:, model.latent_dim:model.latent_dim + 10]  # the one-hot columns
        assert torch.equal(category, torch.nn.functional.one_hot(codes["labels"], 10).float())


def test_measuring_quality_does_not_change_an_infogan_run(tmp_path, fake_root, monkeypatch):
    # The per-epoch FID draws InfoGAN's codes for its samples; from the global random stream, those
    # draws would shift the noise of every later training step, so --fid-every would change the
    # trained model. Here the first run measures after epochs 1 and 2, the second after epoch 2.
    weights = []
    for fid_every in ["1", "2"]:
        out = tmp_path / f"every-{fid_every}"
        run_main(gan_train, monkeypatch, "--model", "infogan", "--dataset", "fake",
                 "--data-root", str(fake_root), "--epochs", "2", "--width", "8", "--out", str(out),
                 "--device", "cpu", "--fid-every", fid_every, "--fid-samples", "0", "--ema", "0")
        weights.append(torch.load(out / "checkpoint.pt", weights_only=True)["model"])
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_infogan_codes_are_drawn_from_their_priors():
    model = InfoGAN((1, 32, 32), width=8)
    codes = model.random_codes(4000)
    assert set(codes["labels"].tolist()) == set(range(10))
    assert codes["continuous"].shape == (4000, 2)
    assert -1 <= codes["continuous"].min() < -0.95 and 0.95 < codes["continuous"].max() <= 1
    # a seeded draw (measure's) repeats, and leaves the global stream alone
    state = torch.get_rng_state()
    first = model.prior_codes(5, generator=torch.Generator().manual_seed(1))
    second = model.prior_codes(5, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert torch.equal(torch.get_rng_state(), state)


def test_noise_prior_is_normal_or_uniform_and_a_seeded_draw_repeats():
    normal, uniform = GAN((1, 32, 32), width=8), InfoGAN((1, 32, 32), width=8)
    z = uniform.noise(4000)
    assert z.shape == (4000, uniform.latent_dim)
    assert -1 <= z.min() < -0.99 and 0.99 < z.max() <= 1 and abs(z.mean()) < 0.01
    assert normal.noise(4000).abs().max() > 2  # a Gaussian's tails
    seeded = normal.noise(5, torch.Generator().manual_seed(3))
    expected = torch.randn(5, normal.latent_dim, generator=torch.Generator().manual_seed(3))
    assert torch.equal(seeded, expected)
    with pytest.raises(ValueError, match="noise must be one of"):
        InfoGAN((1, 32, 32), width=8, noise="laplace")


def test_best_assignment_is_the_best_permutation():
    def counts_of(codes, labels):
        return torch.zeros(4, 4, dtype=torch.int64).index_put_(
            (codes, labels), torch.ones_like(codes), accumulate=True)
    labels = torch.randint(4, (200,), generator=torch.Generator().manual_seed(0))
    codes = torch.tensor([2, 0, 3, 1])[labels]   # a relabelling: perfect once mapped back
    assert gan_model.best_assignment(counts_of(codes, labels)) == [1, 3, 0, 2]
    flips = torch.rand(200, generator=torch.Generator().manual_seed(1)) < 0.3
    noisy = torch.where(flips, torch.randint(4, (200,)), codes)
    scores = {permutation: (torch.tensor(permutation)[labels] == noisy).double().mean().item()
              for permutation in itertools.permutations(range(4))}
    best_code_of_label = max(scores, key=scores.get)
    counts = counts_of(noisy, labels)
    label_of_code = gan_model.best_assignment(counts)
    matched = sum(counts[code, label].item() for code, label in enumerate(label_of_code))
    assert matched / 200 == pytest.approx(scores[best_code_of_label])
    # the same map, read the other way
    assert [best_code_of_label[label] for label in label_of_code] == [0, 1, 2, 3]


@pytest.mark.parametrize("variant", ["cgan", "acgan", "infogan"])
def test_smoke_run_of_each_conditional_model(variant, tmp_path, fake_root, capsys, monkeypatch):
    out = tmp_path / "run"
    printed = smoke_run(fake_root, out, capsys, monkeypatch, "--model", variant, "--ema", "0")
    fid_header = (out / "fid.csv").read_text().splitlines()[0]
    d_lr, g_lr = learning_rates(out)
    config = torch.load(out / "checkpoint.pt", weights_only=True)["model_config"]
    networks = (config["latent_dim"], config["generator_hidden"], config["discriminator_hidden"])
    if variant == "infogan":
        assert "best one-to-one map" in printed
        assert "cluster_accuracy" in fid_header and "digit_of_c1" in fid_header
        assert (out / "infogan_c2.png").is_file() and (out / "infogan_c3.png").is_file()
        assert (d_lr, g_lr) == (2e-4, 1e-3)  # the paper's rates: 2e-4 for D, 1e-3 for G
        assert networks == (62, 1024, 1024) and config["noise"] == "uniform"  # the paper's
    else:
        assert "requested class" in printed and "accuracy_9" in fid_header
        assert (d_lr, g_lr) == (2e-4, 2e-4)  # DCGAN's one rate for both networks
        assert networks == (100, 0, 0) and config["noise"] == "normal"
    for name in ["log.csv", "checkpoint.pt", "frames/samples_002.png", "training.gif"]:
        assert (out / name).is_file(), name


def test_sample_script_writes_requested_labels_beside_the_tensor(tmp_path, fake_root, monkeypatch,
                                                                 capsys):
    out = tmp_path / "run"
    run_main(gan_train, monkeypatch, "--model", "cgan", "--dataset", "fake", "--epochs", "1",
             "--width", "8", "--out", str(out), "--device", "cpu", "--fid-every", "0",
             "--fid-samples", "0")
    run_main(gan_sample, monkeypatch, str(out / "checkpoint.pt"), "--num", "5", "--labels", "3",
             "7", "--out", str(tmp_path / "s.pt"), "--device", "cpu")
    assert torch.load(tmp_path / "s.labels.pt", weights_only=True).tolist() == [3, 7, 3, 7, 3]
    assert torch.load(tmp_path / "s.pt", weights_only=True).shape == (5, 1, 32, 32)
    assert "0..9" in error_of(gan_sample, monkeypatch, str(out / "checkpoint.pt"), "--labels",
                              "12", "--out", str(tmp_path / "x.pt"))
    # GAN/fid.py finds the labels beside the samples and reports the requested-class accuracy.
    capsys.readouterr()
    run_main(fid_script, monkeypatch, str(tmp_path / "s.pt"), "--dataset", "fake",
             "--data-root", str(fake_root))
    assert "requested class recognised in" in capsys.readouterr().out


def test_sample_script_keeps_infogan_codes_apart_from_class_labels(tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_main(gan_train, monkeypatch, "--model", "infogan", "--dataset", "fake", "--epochs", "1",
             "--width", "8", "--out", str(out), "--device", "cpu", "--fid-every", "0",
             "--fid-samples", "0")
    run_main(gan_sample, monkeypatch, str(out / "checkpoint.pt"), "--num", "4", "--labels", "2",
             "--out", str(tmp_path / "s.pt"), "--device", "cpu")
    assert torch.load(tmp_path / "s.c1.pt", weights_only=True).tolist() == [2, 2, 2, 2]
    assert not (tmp_path / "s.labels.pt").exists()  # c1 = 2 is not a request for the digit 2


def test_infogan_clustering_is_watched_on_the_validation_split_and_reported_on_the_test_set(
        tmp_path, fake_root, monkeypatch, capsys):
    # Anything chosen from the per-epoch figure (a seed, a checkpoint) must not have looked at the
    # test set.
    out = tmp_path / "run"
    run_main(gan_train, monkeypatch, "--model", "infogan", "--dataset", "fake",
             "--data-root", str(fake_root), "--epochs", "1", "--width", "8", "--out", str(out),
             "--device", "cpu", "--fid-every", "1", "--fid-samples", "200", "--ema", "0")
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    model = make_gan(**checkpoint["model_config"])
    model.load_state_dict(checkpoint["model"])
    model.eval()
    (train_images, train_labels), test_set = splits(tmp_path, "fake")
    validation = model.score_codes(*split_training_set(train_images, train_labels)[1])
    test = model.score_codes(*test_set)["cluster_accuracy"]
    logged = float(read_csv(out / "log.csv")[-1]["cluster_accuracy_val"])
    assert logged == pytest.approx(validation["cluster_accuracy"], abs=1e-4)
    assert float(read_csv(out / "fid.csv")[-1]["cluster_accuracy"]) == pytest.approx(test, abs=1e-4)

    capsys.readouterr()
    run_main(gan_sample, monkeypatch, str(out / "checkpoint.pt"), "--clusters", "--device", "cpu")
    printed = capsys.readouterr().out.splitlines()
    assert f"{test:.2%} correct" in printed[0]  # sample.py --clusters: the test set too
    classes = sorted(int(line.split("class ")[1].split()[0]) for line in printed[1:])
    assert len(printed) == 11 and classes == list(range(10))
    for line in printed[1:]:   # each code's class, then the class it holds most of besides
        first = re.findall(r"class (\d+)", line)
        second = [float(share) for share in re.findall(r"([\d.]+)%", line)]
        assert len(first) == 2 and first[0] != first[1]
        assert second[0] >= second[1] and sum(second) <= 100.05


def test_labels_for_an_unconditional_model_and_a_conditional_model_without_labels_are_clear_errors(
        tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_main(gan_train, monkeypatch, "--dataset", "fake", "--epochs", "1", "--width", "8",
             "--out", str(out), "--device", "cpu", "--fid-every", "0", "--fid-samples", "0")
    checkpoint = str(out / "checkpoint.pt")
    assert "takes no class labels" in error_of(gan_sample, monkeypatch, checkpoint, "--labels", "1")
    assert "an infogan does" in error_of(gan_sample, monkeypatch, checkpoint, "--clusters")
    from conftest import write_images
    write_images(tmp_path / "flat", 40, size=(32, 32))
    assert "have none" in error_of(gan_train, monkeypatch, "--model", "acgan", "--dataset",
                                   "folder", "--data-root", str(tmp_path / "flat"), "--out",
                                   str(tmp_path / "b"), "--device", "cpu")
