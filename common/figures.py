"""Pictures every family draws, with Pillow only: sample files, a GIF of frames, loss curves, a labelled
2-D scatter, and the two ways to flatten codes to 2-D for that scatter (PCA, and t-SNE written in torch)."""
import math
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torchvision.utils import save_image

from common import InputError

# Ten colours that stay apart for the ten classes of MNIST and CIFAR-10 (matplotlib's "tab10").
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def check_samples_path(path):
    """sample.py writes a grid (.png) or a tensor (.pt); anything else is refused before any work is done."""
    if Path(path).suffix not in (".png", ".pt"):
        raise InputError(f"--out must end in .png (a grid) or .pt (a tensor), not {Path(path).name!r}")


def write_samples(images, path):
    """images: float (N, C, H, W) in [0, 1]. A .png gets a square-ish grid, a .pt the tensor itself."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".png":
        save_image(images, path, nrow=math.ceil(math.sqrt(len(images))))
    else:
        torch.save(images, path)


def save_gif(frame_paths, path, milliseconds_per_frame=200):
    frames = [Image.open(p).convert("RGB") for p in frame_paths]
    if frames:  # hold the last frame a little longer
        frames[0].save(path, save_all=True, append_images=frames[1:] + [frames[-1]] * 5,
                       duration=milliseconds_per_frame, loop=0)


def save_training_gif(out, prefix, last_frame=None):
    """The frames a run drew each epoch (out/frames/<prefix>_NNN.png) -> out/training.gif; the final frame
    is also copied to last_frame when one is given."""
    frames = sorted((Path(out) / "frames").glob(f"{prefix}_*.png"))
    if frames:
        save_gif(frames, Path(out) / "training.gif")
        if last_frame is not None:
            Path(last_frame).write_bytes(frames[-1].read_bytes())


def _to_pixels(points, width, height, margin):
    low, high = points.min(0).values, points.max(0).values
    scale = (torch.tensor([width, height]) - 2 * margin) / (high - low).clamp_min(1e-12)
    pixels = (points - low) * scale + margin
    pixels[:, 1] = height - pixels[:, 1]  # y grows upwards on a plot, downwards in an image
    return pixels.tolist()


def save_curves(path, curves, title="", width=640, height=400, margin=40):
    """Line plot of named series over epochs: curves = {"train loss": [...], "test loss": [...]}."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    values = torch.tensor([v for series in curves.values() for v in series], dtype=torch.float64)
    longest = max(len(series) for series in curves.values())
    low, high = values.min().item(), values.max().item()
    draw.rectangle([margin, margin, width - margin, height - margin], outline="black")
    draw.text((margin, 10), title, fill="black")
    draw.text((4, margin - 12), f"{high:.4g}", fill="black")
    draw.text((4, height - margin + 2), f"{low:.4g}", fill="black")
    draw.text((width - margin - 60, height - margin + 4), f"epoch {longest}", fill="black")
    for i, (name, series) in enumerate(curves.items()):
        colour = PALETTE[i % len(PALETTE)]
        points = torch.tensor([[0.0, low], [max(longest - 1, 1), high]] +
                              [[float(x), float(y)] for x, y in enumerate(series)], dtype=torch.float64)
        pixels = _to_pixels(points, width, height, margin)[2:]  # the first two fix the axes' range
        if len(pixels) > 1:
            draw.line([tuple(p) for p in pixels], fill=colour, width=2)
        draw.text((width - margin - 150, margin + 6 + 14 * i), name, fill=colour)
    image.save(path)


def save_scatter(path, points, labels, title="", size=600, margin=20):
    """Scatter of 2-D points coloured by integer label, with a colour key."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    for (x, y), label in zip(_to_pixels(points.double().cpu(), size, size, margin), labels.tolist()):
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=PALETTE[label % len(PALETTE)])
    draw.text((margin, 4), title, fill="black")
    for label in sorted(set(labels.tolist())):
        draw.text((size - margin - 10, margin + 14 * (label % 40)), str(label), fill=PALETTE[label % len(PALETTE)])
    image.save(path)


def principal_axes(x, components, chunk_size=4096, exact_up_to=4096):
    """PCA of the rows of x (N, D): their mean (D,) and top `components` axes (D, components), the largest
    first, in float64. Up to `exact_up_to` dimensions exactly: the mean and the D x D covariance add up
    chunk by chunk, then a full eigendecomposition. Beyond (64x64 RGB is 12,288), that takes minutes, so
    a randomized SVD of the centred data finds the top axes instead (Halko et al., arXiv:0909.4061)."""
    mean = sum(chunk.double().sum(0) for chunk in x.split(chunk_size)) / len(x)
    if x.shape[1] > exact_up_to:
        _, _, right_vectors = torch.svd_lowrank(x.float() - mean.float(), q=components + 10, niter=6)
        return mean, right_vectors[:, :components].double()
    covariance = sum((chunk.double() - mean).T @ (chunk.double() - mean) for chunk in x.split(chunk_size)) / len(x)
    _, eigenvectors = torch.linalg.eigh(covariance)                   # ascending eigenvalues
    return mean, eigenvectors[:, -components:].flip(1)


def pca(x, components=2):
    """Project rows of x onto their top principal components: (N, D) -> (N, components)."""
    mean, axes = principal_axes(x, components)
    return ((x.double() - mean) @ axes).to(x.dtype)


def tsne(x, perplexity=30.0, iterations=750, seed=0):
    """Exact t-SNE (van der Maaten & Hinton, 2008) of the rows of x: (N, D) -> (N, 2). Fine up to a few thousand rows.

    P: Gaussian affinities whose bandwidth per point gives the requested perplexity, symmetrised.
    Q: Student-t affinities of the 2-D points. Gradient descent on KL(P || Q), with early exaggeration.
    """
    x = pca(x.double(), min(50, x.shape[1]))  # the usual first step: keeps the distances, drops the noise
    count = len(x)
    distances = torch.cdist(x, x).square()
    # Binary search, per point, for the precision beta_i whose conditional distribution has entropy log(perplexity).
    beta_low, beta_high = torch.zeros(count, 1, dtype=x.dtype), torch.full((count, 1), float("inf"), dtype=x.dtype)
    beta = torch.ones(count, 1, dtype=x.dtype) / distances.mean()
    off_diagonal = ~torch.eye(count, dtype=torch.bool)
    for _ in range(60):
        logits = (-distances * beta).masked_fill(~off_diagonal, float("-inf"))
        conditional = torch.softmax(logits, dim=1)
        entropy = -(conditional * torch.log(conditional.clamp_min(1e-30))).sum(1, keepdim=True)
        too_flat = entropy > torch.log(torch.tensor(perplexity, dtype=x.dtype))  # raise beta to sharpen
        beta_low = torch.where(too_flat, beta, beta_low)
        beta_high = torch.where(too_flat, beta_high, beta)
        beta = torch.where(torch.isinf(beta_high), beta * 2, (beta_low + beta_high) / 2)
    p = (conditional + conditional.T) / (2 * count)
    generator = torch.Generator().manual_seed(seed)
    y = torch.randn(count, 2, generator=generator, dtype=x.dtype) * 1e-4
    velocity = torch.zeros_like(y)
    for step in range(iterations):
        exaggeration, momentum = (12.0, 0.5) if step < 250 else (1.0, 0.8)
        inverse = 1 / (1 + torch.cdist(y, y).square()) * off_diagonal
        q = inverse / inverse.sum()
        # dKL/dy_i = 4 sum_j (p_ij - q_ij) (y_i - y_j) / (1 + |y_i - y_j|^2)
        weights = (exaggeration * p - q) * inverse
        gradient = 4 * (weights.sum(1, keepdim=True) * y - weights @ y)
        velocity = momentum * velocity - 200.0 * gradient
        y = y + velocity
    return y.float()
