"""Run helpers every train.py needs: one-line errors, device choice, seeding, checkpoints, the CSV log."""
import csv
import os
import random
from pathlib import Path

import numpy as np
import torch


class InputError(Exception):
    """A problem with what the user asked for (data, flags, checkpoint): shown as one line, no traceback."""


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


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_states():
    """The global random states a training step draws from (noise, dropout, binarization)."""
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states):
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path, checkpoint):
    """Write to a temporary file, then rename: a crash mid-write never leaves a half checkpoint behind."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, temporary)
    os.replace(temporary, path)


def load_checkpoint(path, family):
    """Load a checkpoint written by `family`'s train.py (tensors and plain values only: weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file; all mean the same to the user
        raise InputError(f"checkpoint {path} cannot be read: the file is corrupt or truncated "
                         f"({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "family" not in checkpoint:
        raise InputError(f"{path} is not a checkpoint written by this repository's train.py")
    if checkpoint["family"] != family:
        raise InputError(f"{path} is a {checkpoint['family']} checkpoint; this script needs a {family} one")
    return checkpoint


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


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))
