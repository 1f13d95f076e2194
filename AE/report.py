"""What AE/train.py reports: the mean squared error per pixel of the reconstructions (and of PCA's,
the baseline) every epoch, the codes that the sampler's Gaussian is fitted to, and at the end of a
run the pictures of the code space: interpolations and the test-set codes in 2-D."""
import torch

from common.data import Batches
from common.pictures import interpolation_pairs, pca, save_grid, save_scatter, tsne


@torch.no_grad()
def mse_per_pixel(reconstruct, images, area, batch_size=1000):
    """Mean squared error per pixel, in [0, 1] units, over `area` of every image (uint8)."""
    total = 0.0
    for x, _ in Batches(images, None, batch_size, shuffle=False, drop_last=False):
        total += (reconstruct(x) - x)[..., area, area].square().sum().item()
    return total / (len(images) * images[0, ..., area, area].numel())


@torch.no_grad()
def encode_all(model, images, batch_size):
    """The codes of uint8 images, batch by batch."""
    batches = Batches(images, None, batch_size, shuffle=False, drop_last=False)
    return torch.cat([model.encode(x) for x, _ in batches])


@torch.no_grad()
def draw_code_figures(model, test_images, test_labels, out, embedding, points=2000):
    """interpolation.png; for labelled images also the test-set codes: codes_2d.png and
    manifold.png for a 2-D code, else codes_<embedding>.png."""
    x = next(iter(Batches(test_images, None, points, shuffle=False, drop_last=False)))[0]
    codes = model.encode(x)
    labels = torch.zeros(len(x), dtype=torch.int64) if test_labels is None else test_labels[:len(x)]

    # Interpolation: 8 pairs of test images (labelled: class r to r + 5), 10 steps between codes.
    starts, ends = zip(*interpolation_pairs(labels))
    steps = torch.linspace(0, 1, 10, device=codes.device).view(1, 10, *[1] * (codes.dim() - 1))
    path = codes[list(starts)].unsqueeze(1) * (1 - steps) + codes[list(ends)].unsqueeze(1) * steps
    save_grid(model.sample(codes=path.flatten(0, 1)), out / "interpolation.png", nrow=10)

    if test_labels is None:
        return
    flat = codes.flatten(1).cpu()
    if flat.shape[1] == 2:
        save_scatter(out / "codes_2d.png", flat, labels.cpu(), title="test-set codes",
                     x_label="code 1", y_label="code 2")
        # The manifold: a 20x20 grid over the range the codes occupy (1st to 99th percentile).
        low, high = torch.quantile(flat, 0.01, dim=0), torch.quantile(flat, 0.99, dim=0)
        first, second = [torch.linspace(low[d].item(), high[d].item(), 20) for d in range(2)]
        grid = torch.stack(torch.meshgrid(second.flip(0), first, indexing="ij"), -1)
        grid = grid.flip(-1).reshape(-1, 2).to(codes.device)     # (400, 2): code 1 across, 2 down
        save_grid(model.sample(codes=grid), out / "manifold.png", nrow=20)
        return
    if embedding == "tsne":
        print(f"drawing the t-SNE of {len(flat):,} test-set codes (about a minute on a CPU)",
              flush=True)
    flattened = tsne(flat) if embedding == "tsne" else pca(flat)
    save_scatter(out / f"codes_{embedding}.png", flattened, labels.cpu(), x_label=f"{embedding} 1",
                 y_label=f"{embedding} 2", title=f"{embedding} of test-set codes")
