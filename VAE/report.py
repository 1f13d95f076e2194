"""What VAE/train.py reports: the -ELBO of held-out images in nats, every epoch, and at the end of
a run the pictures of the latent space: interpolations, traversals, samples of q(z|x) around one
image, and the test-set means of q(z|x) in 2-D."""
import torch

from common.data import Batches
from common.pictures import interpolation_pairs, pca, save_grid, save_scatter, tsne


@torch.no_grad()
def evaluate(model, images, batch_size, area=slice(None)):
    """Mean loss parts in nats per image and the unweighted -ELBO = recon + KL; when `area` is a
    part of the image (MNIST's 28x28 inside the padding), also that part's, as neg_elbo_<H>x<W>."""
    totals = {"recon": 0.0, "kl": 0.0, "recon_area": 0.0}
    for x, _ in Batches(images, None, batch_size, shuffle=False, drop_last=False):
        decoded, mu, logvar = model(x)
        totals["recon"] -= model.log_px_given_z(x, decoded).sum().item()
        x_area, decoded_area = x[..., area, area], decoded[..., area, area]
        totals["recon_area"] -= model.log_px_given_z(x_area, decoded_area).sum().item()
        totals["kl"] += model.kl_divergence(mu, logvar).sum().item()
    means = {name: value / len(images) for name, value in totals.items()}
    parts = {"recon": means["recon"], "kl": means["kl"], "neg_elbo": means["recon"] + means["kl"]}
    height, width = images[0, 0, area, area].shape
    if height * width < images[0, 0].numel():
        parts[f"neg_elbo_{height}x{width}"] = means["recon_area"] + means["kl"]
    return parts


def describe(parts):
    """evaluate's parts as "-ELBO 96.10 (95.28 over 28x28) nats"."""
    areas = "".join(f"({value:.2f} over {name.removeprefix('neg_elbo_')}) "
                    for name, value in parts.items() if name.startswith("neg_elbo_"))
    return f"-ELBO {parts['neg_elbo']:.2f} {areas}nats"


@torch.no_grad()
def draw_latent_figures(model, test_images, test_labels, out, embedding, points=2000):
    """interpolation.png, traversal.png and posterior_samples.png; for labelled images also the
    test-set means of q(z|x): latent_2d.png and manifold.png, or latent_<embedding>.png."""
    model.eval()
    x = next(iter(Batches(test_images, None, points, shuffle=False, drop_last=False)))[0]
    mu, logvar = model.encode(x)
    labels = torch.zeros(len(x), dtype=torch.int64) if test_labels is None else test_labels[:len(x)]

    # Interpolation: 8 pairs of test images (labelled: class r to r + 5), 10 steps between means.
    starts, ends = zip(*interpolation_pairs(labels))
    steps = torch.linspace(0, 1, 10, device=mu.device).view(1, 10, 1)
    path = mu[list(starts)].unsqueeze(1) * (1 - steps) + mu[list(ends)].unsqueeze(1) * steps
    save_grid(model.sample(z=path.flatten(0, 1)), out / "interpolation.png", nrow=10)

    # Traversal: one test image's mean, one latent dimension per row swept from -3 to 3.
    dims = min(model.latent_dim, 10)
    z = mu[0].repeat(dims, 11, 1)                                     # (dims, 11, latent)
    z[torch.arange(dims), :, torch.arange(dims)] = torch.linspace(-3, 3, 11, device=mu.device)
    save_grid(model.sample(z=z.flatten(0, 1)), out / "traversal.png", nrow=11)

    # q(z|x) around one test image: the original first, then 63 decoded samples z ~ q(z|x).
    z = model.reparameterize(mu[:1].expand(63, -1), logvar[:1].expand(63, -1))
    save_grid(torch.cat([x[:1], model.sample(z=z)]), out / "posterior_samples.png", nrow=8)

    if test_labels is None:
        return
    title = "test-set means of q(z|x)"
    if model.latent_dim == 2:
        save_scatter(out / "latent_2d.png", mu.cpu(), labels.cpu(), title=title, x_label="z1",
                     y_label="z2")
        # The 2-D manifold: a 20x20 grid of Gaussian quantiles, so it covers the prior evenly.
        quantiles = torch.distributions.Normal(0, 1).icdf(torch.linspace(0.03, 0.97, 20))
        grid = torch.stack(torch.meshgrid(quantiles.flip(0), quantiles, indexing="ij"), -1)
        grid = grid.flip(-1).view(-1, 2).to(mu.device)               # (400, 2): z1 across, z2 down
        save_grid(model.sample(z=grid), out / "manifold.png", nrow=20)
        return
    if embedding == "tsne":
        print(f"drawing the t-SNE of {len(mu):,} {title} (about a minute on a CPU)", flush=True)
    flat = tsne(mu.cpu()) if embedding == "tsne" else pca(mu.cpu())
    save_scatter(out / f"latent_{embedding}.png", flat, labels.cpu(), x_label=f"{embedding} 1",
                 y_label=f"{embedding} 2", title=f"{embedding} of {title}")
