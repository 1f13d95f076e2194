"""Pictures every family draws, with Pillow only, each file whole or absent (common.files): image
grids, sample files, a GIF of frames, loss curves, a labelled 2-D scatter, and the two ways to
flatten codes to 2-D for that scatter (PCA, and t-SNE written in torch)."""
import io
import math
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import save_image

from common.files import save_picture, save_tensors, write_atomically

# Ten colours that stay apart for the ten classes of MNIST and CIFAR-10 (matplotlib's "tab10").
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def save_grid(images, path, nrow=8):
    """images: float (N, C, H, W) in [0, 1] -> a PNG grid of nrow columns."""
    buffer = io.BytesIO()
    save_image(images, buffer, nrow=nrow, format="png")
    write_atomically(path, buffer.getbuffer())


def write_samples(images, path):
    """images: float (N, C, H, W) in [0, 1]. A .png gets a square-ish grid, a .pt the tensor."""
    if Path(path).suffix == ".png":
        save_grid(images, path, nrow=math.ceil(math.sqrt(len(images))))
        return
    save_tensors(images, path)
    for beside in (".labels.pt", ".c1.pt"):  # an earlier sample's codes, not these images'
        Path(path).with_suffix(beside).unlink(missing_ok=True)


def save_training_gif(out, prefix, last_frame=None, milliseconds_per_frame=200):
    """The frames a run drew each epoch (out/frames/<prefix>_NNN.png) -> out/training.gif, the last
    held a little longer; the last frame is also copied to last_frame when one is given."""
    paths = sorted((Path(out) / "frames").glob(f"{prefix}_*.png"))
    if not paths:
        return
    frames = [Image.open(path).convert("RGB") for path in paths]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, loop=0, duration=milliseconds_per_frame,
                   append_images=frames[1:] + [frames[-1]] * 5)
    write_atomically(Path(out) / "training.gif", buffer.getbuffer())
    if last_frame is not None:
        write_atomically(last_frame, paths[-1].read_bytes())


def interpolation_pairs(labels, rows=8):
    """(start, end) image indices, one pair per row of an interpolation figure. Labelled: row r
    goes from the first image of class r to the first of class r + 5 (on MNIST row 4 runs from a 4
    to a 9, the digits models most often confuse); else (or with a class missing) from image r to
    image r + rows."""
    classes = int(labels.max()) + 1
    first = {}
    for index, label in enumerate(labels.tolist()):
        first.setdefault(label, index)
    if classes >= 2 and len(first) == classes:
        return [(first[r % classes], first[(r + 5) % classes]) for r in range(rows)]
    return [(r % len(labels), (r + rows) % len(labels)) for r in range(rows)]


def font(size=14):
    """Pillow's scalable default font (Pillow >= 10.1); the old bitmap one runs words together."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def nice_ticks(low, high, count=5, integer=False):
    """About `count` round values (steps of 1, 2 or 5 times a power of ten) covering [low, high];
    integer: steps of at least 1 (epochs)."""
    if high <= low:
        low, high = low - 0.5, high + 0.5
    rough = (high - low) / count
    steps = [m * 10 ** math.floor(math.log10(rough)) for m in (1, 2, 5, 10)]
    step = min((s for s in steps if s >= 1 or not integer), key=lambda s: abs(s - rough), default=1)
    first = math.floor(low / step) * step
    return [first + i * step for i in range(math.ceil((high - first) / step - 1e-9) + 1)]


def draw_axes(draw, box, x_ticks, y_ticks, x_label, y_label, title):
    """A frame with ticks, tick labels, axis titles and a title; returns value -> pixel in x, y."""
    left, top, right, bottom = box
    (x0, x1), (y0, y1) = (x_ticks[0], x_ticks[-1]), (y_ticks[0], y_ticks[-1])

    def to_x(x):
        return left + (x - x0) / (x1 - x0) * (right - left)

    def to_y(y):  # y grows upwards on a plot
        return bottom - (y - y0) / (y1 - y0) * (bottom - top)

    draw.rectangle(box, outline="black")
    for x in x_ticks:
        draw.line([(to_x(x), bottom), (to_x(x), bottom + 4)], fill="black")
        draw.text((to_x(x), bottom + 6), f"{x:g}", fill="black", font=font(12), anchor="mt")
    for y in y_ticks:
        draw.line([(left - 4, to_y(y)), (left, to_y(y))], fill="black")
        draw.text((left - 6, to_y(y)), f"{y:.4g}", fill="black", font=font(12), anchor="rm")
    draw.text(((left + right) / 2, bottom + 24), x_label, fill="black", font=font(), anchor="mt")
    draw.text((left, top - 8), title + (f"  ({y_label})" if y_label else ""), fill="black",
              font=font(), anchor="lb")
    return to_x, to_y


def save_curves(path, curves, title="", x_label="epoch", y_label="", width=720, height=440):
    """Line plot of named series: curves = {"train loss": [...], ...} over epochs 1, 2, ..., or
    {"FID": ([5, 10, ...], [...])} over the given x values. A legend names each series."""
    series = {name: values if isinstance(values, tuple) else (range(1, len(values) + 1), values)
              for name, values in curves.items()}
    xs = [x for x_values, _ in series.values() for x in x_values]
    ys = [y for _, y_values in series.values() for y in y_values]
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    to_x, to_y = draw_axes(draw, (80, 40, width - 20, height - 60),
                           nice_ticks(min(xs), max(xs), integer=x_label == "epoch"),
                           nice_ticks(min(ys), max(ys)), x_label, y_label, title)
    for i, (name, (x_values, y_values)) in enumerate(series.items()):
        colour, legend_y = PALETTE[i % len(PALETTE)], 56 + 18 * i
        pixels = [(to_x(x), to_y(y)) for x, y in zip(x_values, y_values)]
        if len(pixels) > 1:
            draw.line(pixels, fill=colour, width=2)
        for x, y in pixels:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        draw.line([(width - 190, legend_y), (width - 170, legend_y)], fill=colour, width=3)
        draw.text((width - 164, legend_y), name, fill="black", font=font(13), anchor="lm")
    save_picture(image, path)


def save_scatter(path, points, labels, title="", x_label="dimension 1", y_label="dimension 2",
                 size=640):
    """Scatter of 2-D points coloured by integer label, with axes and a legend of the labels."""
    points = points.double().cpu()
    image = Image.new("RGB", (size + 60, size), "white")
    draw = ImageDraw.Draw(image)
    to_x, to_y = draw_axes(draw, (80, 40, size - 10, size - 60),
                           nice_ticks(*points[:, 0].aminmax()), nice_ticks(*points[:, 1].aminmax()),
                           x_label, "", title)
    # the y title, turned to run up the axis, clear of the tick labels
    text = Image.new("RGBA", (size, 20), (255, 255, 255, 0))
    ImageDraw.Draw(text).text((size / 2, 10), y_label, fill="black", font=font(), anchor="mm")
    rotated = text.rotate(90, expand=True)
    image.paste(rotated, (2, (size - 20 - rotated.height) // 2), rotated)
    for (x, y), label in zip(points.tolist(), labels.tolist()):
        colour = PALETTE[label % len(PALETTE)]
        draw.ellipse([to_x(x) - 2, to_y(y) - 2, to_x(x) + 2, to_y(y) + 2], fill=colour)
    for row, label in enumerate(sorted(set(labels.tolist()))[:30]):
        colour, y = PALETTE[label % len(PALETTE)], 52 + 18 * row
        draw.ellipse([size + 4, y - 4, size + 12, y + 4], fill=colour)
        draw.text((size + 18, y), str(label), fill="black", font=font(13), anchor="lm")
    save_picture(image, path)


def principal_axes(x, components, chunk_size=4096, exact_up_to=4096):
    """PCA of the rows of x (N, D): their mean (D,) and top `components` axes (D, components), the
    largest first, in float64. Up to `exact_up_to` dimensions exactly: the mean and the D x D
    covariance add up chunk by chunk, then a full eigendecomposition. Beyond (64x64 RGB is 12,288)
    that takes minutes, so a randomized SVD of the centred data finds the top axes instead (Halko et
    al., arXiv:0909.4061)."""
    mean = sum(chunk.double().sum(0) for chunk in x.split(chunk_size)) / len(x)
    if x.shape[1] > exact_up_to:
        _, _, right = torch.svd_lowrank(x.float() - mean.float(), q=components + 10, niter=6)
        return mean, right[:, :components].double()
    covariance = sum((chunk.double() - mean).T @ (chunk.double() - mean)
                     for chunk in x.split(chunk_size)) / len(x)
    _, eigenvectors = torch.linalg.eigh(covariance)  # ascending eigenvalues
    return mean, eigenvectors[:, -components:].flip(1)


def pca(x, components=2):
    """Project rows of x onto their top principal components: (N, D) -> (N, components), the
    columns past D zero (a 1-D code still gets a 2-D scatter)."""
    mean, axes = principal_axes(x, min(components, x.shape[1]))
    projected = (x.double() - mean) @ axes
    return torch.nn.functional.pad(projected, (0, components - axes.shape[1])).to(x.dtype)


def tsne(x, perplexity=30.0, iterations=750, seed=0):
    """Exact t-SNE (van der Maaten & Hinton, 2008) of the rows of x: (N, D) -> (N, 2), for up to a
    few thousand rows. P: Gaussian affinities whose bandwidth per point gives the requested
    perplexity, symmetrised. Q: Student-t affinities of the 2-D points. Gradient descent on
    KL(P || Q), with early exaggeration."""
    x = pca(x.double(), min(50, x.shape[1]))  # the usual first step: keeps distances, drops noise
    count, dtype = len(x), x.dtype
    if count < 4:  # too few points to have neighbours: their 2-D PCA is as good a picture
        return pca(x, 2).float()
    perplexity = min(perplexity, (count - 1) / 3)  # a perplexity is a count of neighbours
    distances = torch.cdist(x, x).square()
    # Binary search, per point, for the precision beta_i whose conditional distribution has
    # entropy log(perplexity).
    beta_low = torch.zeros(count, 1, dtype=dtype)
    beta_high = torch.full((count, 1), float("inf"), dtype=dtype)
    beta = torch.ones(count, 1, dtype=dtype) / distances.mean()
    off_diagonal = ~torch.eye(count, dtype=torch.bool)
    for _ in range(60):
        logits = (-distances * beta).masked_fill(~off_diagonal, float("-inf"))
        conditional = torch.softmax(logits, dim=1)
        entropy = -(conditional * torch.log(conditional.clamp_min(1e-30))).sum(1, keepdim=True)
        too_flat = entropy > math.log(perplexity)  # raise beta to sharpen
        beta_low = torch.where(too_flat, beta, beta_low)
        beta_high = torch.where(too_flat, beta_high, beta)
        beta = torch.where(torch.isinf(beta_high), beta * 2, (beta_low + beta_high) / 2)
    p = (conditional + conditional.T) / (2 * count)
    y = torch.randn(count, 2, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 1e-4
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
