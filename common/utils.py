"""Run helpers every train.py needs: the shared flags, one-line errors, device choice, seeding, checkpoints,
the progress line and the CSV log."""
import argparse
import contextlib
import csv
import inspect
import math
import os
import pickle
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from common import InputError, save_atomically
from common.data import DATASETS


def add_shared_flags(parser, family_dir, epochs=10, batch_size=128, lr=1e-3, latent_dim=20):
    """The flags every train.py takes, with the same names and meanings; defaults are the family's."""
    parser.add_argument("--dataset", default="mnist", help=f"one of: {', '.join(DATASETS)}")
    parser.add_argument("--data-root", default=str(Path(family_dir).parent / "data"),
                        help="folder holding the dataset (for --dataset folder: the image folder itself)")
    parser.add_argument("--image-size", type=int, default=None, help="pixels per side; None: the dataset's own")
    parser.add_argument("--epochs", type=int, default=epochs, help="passes over the training set")
    parser.add_argument("--batch-size", type=int, default=batch_size, help="images per training step")
    parser.add_argument("--lr", type=float, default=lr, help="learning rate")
    parser.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine"],
                        help="cosine: the learning rate falls from its start to 0 over --epochs (a resumed run that "
                             "changes --epochs follows the new length's curve)")
    parser.add_argument("--latent-dim", type=int, default=latent_dim, help="size of the code z")
    parser.add_argument("--seed", type=int, default=0, help="seeds the weights, the noise and the batch order")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="auto: CUDA, else MPS, else CPU")
    parser.add_argument("--out", default=None, help=f"output folder; None: {Path(family_dir).name}/results/<run name>")
    parser.add_argument("--resume", default=None, metavar="CHECKPOINT",
                        help="continue the run saved in CHECKPOINT, with its own flags (--epochs, --device and the speed flags may change)")
    parser.add_argument("--amp", action="store_true", help="CUDA only: bfloat16 autocast in the training steps")
    parser.add_argument("--compile", action="store_true", help="torch.compile the networks (the first steps compile)")
    parser.add_argument("--channels-last", action="store_true",
                        help="channels-last memory layout for convolutional models and their batches")


def add_sample_flags(parser):
    """The flags every sample.py takes: a checkpoint, how many images, and where they go."""
    parser.add_argument("checkpoint")
    parser.add_argument("--num", type=int, default=64, help="how many images")
    parser.add_argument("--out", default="samples.png", help="a .png file (grid) or a .pt file (tensor)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=1000, help="images generated at a time")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])


def lr_factor(args, epoch, step, steps):
    """What the learning rate is multiplied by at the given step (both counted from 1): 1, or with
    --lr-schedule cosine (1 + cos(pi t / T)) / 2 at step t = 0 .. T - 1 of the run's T steps (Loshchilov & Hutter,
    arXiv:1608.03983, without restarts). It depends on nothing but the step, so a resumed run continues the same curve."""
    if args.lr_schedule == "constant":
        return 1.0
    progress = ((epoch - 1) * steps + step - 1) / (args.epochs * steps)
    return 0.5 * (1 + math.cos(math.pi * progress))


POSITIVE, NON_NEGATIVE = "> 0", ">= 0"
SHARED_RANGES = {"epochs": POSITIVE, "batch_size": POSITIVE, "lr": POSITIVE, "latent_dim": POSITIVE, "image_size": POSITIVE}


def check_ranges(args, ranges=None):
    """Every numeric flag within its range: SHARED_RANGES and the family's own `ranges` (dest -> POSITIVE or
    NON_NEGATIVE). None, a flag's "use the default", always passes."""
    for name, rule in {**SHARED_RANGES, **(ranges or {})}.items():
        value = getattr(args, name, None)
        if value is not None and not (math.isfinite(value) and (value > 0 if rule == POSITIVE else value >= 0)):
            raise InputError(f"--{name.replace('_', '-')} must be {rule}, not {value}")


def start_run(args, family, default_out, ranges=None):
    """Check the flags (check_ranges), then resume the run in args.resume or prepare a new one in args.out
    (default_out if not given). Nothing is written yet: create_run_folder does that once the data is loaded.

    Returns (args, checkpoint or None, out folder). On resume the run's own flags come back, except the
    number of epochs and the device, and its outputs stay beside the checkpoint. A new run never
    overwrites a folder that already holds one.
    """
    check_ranges(args, ranges)
    checkpoint = None
    if args.resume:
        checkpoint = load_checkpoint(args.resume, family)
        if args.epochs <= checkpoint["epoch"]:
            raise InputError(f"{args.resume} has trained {checkpoint['epoch']} epochs: --epochs {args.epochs} leaves "
                             f"nothing to train (--epochs counts from the start of the run)")
        # The run's own flags win, except the length and how it runs (device, speed flags); a flag newer than the
        # checkpoint keeps its default.
        kept = {name: getattr(args, name) for name in ("epochs", "device", "amp", "compile", "channels_last")}
        args = argparse.Namespace(**{**vars(args), **checkpoint["args"], **kept,
                                     "resume": args.resume, "out": str(Path(args.resume).resolve().parent)})
    args.data_root = str(Path(args.data_root).expanduser().resolve())
    out = Path(args.out or default_out).resolve()
    if checkpoint is None and (out / "checkpoint.pt").exists():
        raise InputError(f"{out} already holds a run: continue it with --resume {out / 'checkpoint.pt'}, "
                         f"or choose another --out")
    existing = next(folder for folder in (out, *out.parents) if folder.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise InputError(f"--out {out} cannot be written: {existing} is {'not a folder' if not existing.is_dir() else 'read-only'}")
    args.out = str(out)
    return args, checkpoint, out


def create_run_folder(out):
    try:
        (out / "frames").mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"--out {out} cannot be created ({error.strerror or error})") from None


def print_progress(epoch, epochs, step, steps, batch_size, started, losses):
    """One progress line: images per second, the whole run's ETA and the running mean losses (floats)."""
    rate = step * batch_size / (time.time() - started)
    remaining = ((epochs - epoch + 1) * steps - step) * batch_size / rate
    print(f"epoch {epoch}/{epochs} step {step}/{steps} | {rate:,.0f} img/s | ETA {remaining / 60:.1f} min | "
          + " ".join(f"{name} {value:.4g}" for name, value in losses.items()),
          end="\r" if sys.stdout.isatty() else "\n", flush=True)


def choose_device(name="auto"):
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but torch sees no CUDA GPU")
    if name == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps was asked for, but this torch build has no MPS support")
    return torch.device(name)


def join_process_group(device):
    """Under torchrun, which starts one process per GPU (or several on a CPU) and gives each WORLD_SIZE,
    RANK and LOCAL_RANK, join the others: NCCL between GPUs, each process on its LOCAL_RANK-th GPU; Gloo
    between CPU processes. Returns (device, rank, world_size); a plain run is (device, 0, 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return device, 0, 1
    if device.type == "mps":
        raise InputError("torchrun needs CUDA GPUs or the CPU: torch.distributed has no backend for MPS")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, dist.get_rank(), world_size


@contextlib.contextmanager
def main_process_first(world_size):
    """Rank 0 runs the body first (a download, a decoded-image cache), the others after it, and find it done."""
    if world_size > 1 and not is_main_process():
        dist.barrier()
    yield
    if world_size > 1 and is_main_process():
        dist.barrier()


def leave_process_group():
    if dist.is_initialized():
        dist.destroy_process_group()


def is_main_process():
    """Rank 0, the one process that prints, draws pictures and writes files (also before joining the group)."""
    return (dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))) == 0


class LossAsForward(nn.Module):
    """DistributedDataParallel averages the gradients of the work done inside its module's forward; this
    module's forward is one of the model's loss methods, and its parameters are `network`'s."""

    def __init__(self, network, loss):
        super().__init__()
        self.network, self.loss = network, loss

    def forward(self, *args, **kwargs):
        return self.loss(*args, **kwargs)


def data_parallel(network, loss, world_size):
    """What the training loop calls for a loss: the method `loss` itself in a single process. Under torchrun,
    `loss` run inside a DistributedDataParallel over `network`, the module whose parameters that loss trains:
    its backward averages their gradients over the processes (in buckets, while the backward runs).

    BatchNorm keeps per-process statistics (batch_size / world_size images each, as on one GPU with that
    batch): SyncBatchNorm has no CPU kernel, and would wait on every process at every BatchNorm layer.
    Rank 0's running statistics are the ones checkpointed, so buffers are not broadcast each step (which
    would also overwrite G's in place after its forward); torch 2.14 renamed that option."""
    if world_size == 1:
        return loss
    renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    return DistributedDataParallel(LossAsForward(network, loss), **{"forward_sync_buffers" if renamed else
                                                                     "broadcast_buffers": False})


def mean_over_processes(sums, world_size):
    """{name: tensor or float} of per-process sums -> the same summed over every process and divided by
    world_size: each process sums means over its own part of the batch, so this is their mean."""
    if world_size == 1:
        return sums
    values = torch.stack([torch.as_tensor(value, dtype=torch.float64) for value in sums.values()])
    device = next((v.device for v in sums.values() if isinstance(v, torch.Tensor)), torch.device("cpu"))
    values = values.to(device)
    dist.all_reduce(values)
    return dict(zip(sums, (values / world_size).cpu()))


def share_random_state(world_size, device):
    """Every process continues from rank 0's random state. All draw the whole batch's noise from one stream
    and keep their own part; rank 0 alone drew more for its pictures and FID, so the others take its state
    (what a single process would hold here). Also a barrier: no process runs ahead of rank 0's writes."""
    if world_size > 1:
        states = [rng_states(device)]
        dist.broadcast_object_list(states, src=0)
        set_rng_states(states[0], device)


def describe_batch(batch_size, world_size):
    return f"batch {batch_size}" + (f" = {world_size} processes x {batch_size // world_size}" if world_size > 1 else "")


def autocast(enabled):
    """--amp: bfloat16 autocast on CUDA (bf16 has float32's range, so the losses need no scaling)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled)


def speed_flags_for(args, device):
    """Refuse --amp off CUDA; returns the memory format the convolutional models and their batches use."""
    if args.amp and device.type != "cuda":
        raise InputError(f"--amp (bfloat16 autocast) is for CUDA GPUs; this run is on {device.type}: leave it out")
    return torch.channels_last if args.channels_last else torch.contiguous_format


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_states(device):
    """The global random states a training step draws from (noise, dropout, binarization): the CPU's, and
    the training GPU's (each torchrun process has its own GPU, and continues rank 0's stream on it)."""
    states = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states, device):
    torch.set_rng_state(states["torch"])
    if "cuda" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)


def save_checkpoint(path, checkpoint):
    """Write to a temporary file, then rename: a crash mid-write never leaves a half checkpoint behind, and a
    failed write (a full disk) removes its partial file and says what is left."""
    path = Path(path)
    try:
        save_atomically(checkpoint, path)
    except (OSError, RuntimeError) as error:
        kept = f"the checkpoint of epoch {checkpoint['epoch'] - 1} is kept" if path.exists() else "no checkpoint exists"
        raise InputError(f"could not write {path} ({error}); its partial {path.name}.tmp was removed and "
                         f"{kept}") from None


def save_epoch(out, checkpoint, log_rows):
    """The end of an epoch on disk: the checkpoint, which carries the log rows, then log.csv written from
    them. Checkpoint first, so log.csv never shows an epoch the checkpoint lacks; a crash between the two
    leaves log.csv a row short, and resuming rewrites it from the checkpoint (restore_run)."""
    save_checkpoint(out / "checkpoint.pt", {**checkpoint, "log": log_rows})
    write_csv(out / "log.csv", log_rows)


def checkpoint_state(family, model, model_config, optimizers, epoch, args, batches, **extra):
    """Everything a run needs to continue exactly: weights, the optimizers' states (optimizers: {key: optimizer},
    e.g. {"optimizer": adam} or {"d_optimizer": ..., "g_optimizer": ...}), epoch, flags, random states."""
    return {"family": family, "model": model.state_dict(), "model_config": model_config, **extra,
            **{key: optimizer.state_dict() for key, optimizer in optimizers.items()}, "epoch": epoch,
            "args": vars(args), "rng": rng_states(batches.images.device), "batch_generator": batches.generator.get_state()}


def restore_run(checkpoint, path, model, optimizers, batches):
    """Put a resumed run back where checkpoint_state left it. Returns the first epoch still to train and
    the log rows so far, and (rank 0) rewrites log.csv to match the checkpoint (a checkpoint older than the
    rows it carries keeps the rows of log.csv up to its own epoch)."""
    load_weights(model, checkpoint["model"], path)
    for key, optimizer in optimizers.items():
        optimizer.load_state_dict(checkpoint[key])
    batches.generator.set_state(checkpoint["batch_generator"])
    set_rng_states(checkpoint["rng"], batches.images.device)
    log = Path(path).parent / "log.csv"
    rows = checkpoint.get("log")
    if rows is None:
        rows = [row for row in read_csv(log) if int(row["epoch"]) <= checkpoint["epoch"]] if log.exists() else []
    if is_main_process():
        write_csv(log, rows)
    return checkpoint["epoch"] + 1, rows


def stopped_by(losses, epoch, out, step=None, hint="Try a lower --lr"):
    """The error for losses that are no longer finite, saying exactly which checkpoint exists: every finished
    epoch wrote one, so it is the previous epoch's, or none in the first."""
    kept = f"{out / 'checkpoint.pt'} (epoch {epoch - 1}) is kept" if epoch > 1 else "no checkpoint was written"
    where = f"epoch {epoch}" + ("" if step is None else f", step {step}")
    return InputError(f"the losses became {losses} in {where}; stopped: {kept}. {hint}")


def run_training(train, args):
    """What every train.py's main() does: train(args), ending bad input and Ctrl-C in one line (printed by
    rank 0 alone under torchrun; the other processes exit quietly), and leaving the process group."""
    try:
        train(args)
    except InputError as error:
        sys.exit(f"error: {error}" if is_main_process() else 1)
    except KeyboardInterrupt:
        sys.exit(interrupted(args) if is_main_process() else 1)
    finally:
        leave_process_group()


def interrupted(args):
    """The line a run stopped by Ctrl-C ends with: which checkpoint, if any, it can be resumed from."""
    path = Path(args.resume) if args.resume else Path(args.out) / "checkpoint.pt" if args.out else None
    if path is None or not path.is_file():
        return "interrupted before the first checkpoint was written: there is nothing to resume"
    epoch = torch.load(path, map_location="cpu", weights_only=True)["epoch"]
    return f"interrupted: {path} holds epoch {epoch}; continue with --resume {path}"


def load_checkpoint(path, family):
    """Load a checkpoint written by `family`'s train.py (tensors and plain values only: weights_only=True)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"checkpoint {path} is a folder; give the checkpoint.pt file in it")
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Unsupported global" not in str(error):
            raise InputError(f"checkpoint {path} cannot be read: the file is corrupt or truncated (UnpicklingError)") from None
        # weights_only refuses to build any object but tensors and plain values: this file holds others
        raise InputError(f"{path} holds Python objects that a checkpoint may not contain (only tensors and plain "
                         f"values load safely): it was not written by this repository's train.py") from None
    except Exception as error:  # torch raises many types for a damaged file; all mean the same to the user
        raise InputError(f"checkpoint {path} cannot be read: the file is corrupt or truncated "
                         f"({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "family" not in checkpoint:
        raise InputError(f"{path} is not a checkpoint written by this repository's train.py")
    if checkpoint["family"] != family:
        raise InputError(f"{path} is a checkpoint of the {checkpoint['family']} family; this script needs one of {family}")
    return checkpoint


def load_trained_model(path, family, build, device):
    """Rebuild the model a checkpoint describes (build(**model_config)) and load its weights, in eval mode."""
    checkpoint = load_checkpoint(path, family)
    try:
        model = build(**checkpoint["model_config"])
    except (TypeError, KeyError) as error:  # a configuration this version's models no longer take
        raise InputError(f"checkpoint {path} was written by an older version of this repository and does not fit "
                         f"its models ({type(error).__name__}: {error})") from None
    load_weights(model, checkpoint["model"], path)
    return model.to(device).eval(), checkpoint


def load_weights(model, state_dict, path):
    """load_state_dict with a one-line error when the checkpoint's architecture differs from the model's."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:
        raise InputError(f"checkpoint {path} does not fit this model: {str(error).splitlines()[1].strip()}") from None


def append_csv(path, row):
    """Append one row (a dict) to a CSV file, writing the header first when the file is new."""
    path = Path(path)
    is_new = not path.exists()
    with open(path, "a", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(row))
        if is_new:
            writer.writeheader()
        writer.writerow(row)


def write_csv(path, rows):
    """Write rows (dicts) as a whole new CSV file, atomically (temporary file, then rename)."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    columns = list(dict.fromkeys(name for row in rows for name in row))  # every column, in first-seen order
    with open(temporary, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))
