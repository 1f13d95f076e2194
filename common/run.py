"""What every train.py does around its loop: the shared flags, starting or resuming a run in its own
folder, checkpoints and log.csv, the progress line, and ending in one line on bad input, Ctrl-C or
SIGTERM."""
import argparse
import contextlib
import errno
import math
import os
import pickle
import random
import signal
import socket
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

import numpy as np
import torch

from common import InputError
from common.data import DATASETS
from common.distributed import is_main_process, leave_process_group, rng_states, set_rng_states
from common.files import WriteError, save_tensors, write_csv

FORMAT = 2  # of the checkpoint dict; a checkpoint of another format is refused in one line
# What a resumed run may change: how long it trains, where its data now is, and how it runs.
MAY_CHANGE_ON_RESUME = ("epochs", "data_root", "device", "amp", "compile", "channels_last")
POSITIVE, NON_NEGATIVE = "> 0", ">= 0"
SHARED_RANGES = {"epochs": POSITIVE, "batch_size": POSITIVE, "lr": POSITIVE, "latent_dim": POSITIVE,
                 "image_size": POSITIVE}


class FlagParser(argparse.ArgumentParser):
    """argparse with the defaults in --help, which also records which flags the command line gave
    (args.given): a resumed run refuses those that would change it."""

    def __init__(self, **options):
        super().__init__(formatter_class=ShowDefaults, **options)

    def parse_known_args(self, args=None, namespace=None):
        parsed, rest = super().parse_known_args(args, namespace)
        unset = object()  # argparse fills in a default only where the namespace has no value yet
        probe = argparse.Namespace(**{action.dest: unset for action in self._actions})
        super().parse_known_args(args, probe)
        parsed.given = sorted(name for name, value in vars(probe).items() if value is not unset)
        return parsed, rest


class ShowDefaults(argparse.HelpFormatter):
    """--help with each flag's default, where it has one to show (not None, not an off switch)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.help is None \
                or action.default == argparse.SUPPRESS:
            return action.help
        return f"{action.help} (default: %(default)s)"


def add_shared_flags(parser, family_dir, epochs=10, batch_size=128, lr=1e-3, latent_dim=20):
    """The flags every train.py takes, with the same names and meanings; the family's defaults."""
    family_dir = Path(family_dir)
    flag = parser.add_argument
    flag("--dataset", default="mnist", help=f"one of: {', '.join(DATASETS)}")
    flag("--data-root", default=str(family_dir.parent / "data"),
         help="the dataset's folder (--dataset folder: the image folder itself)")
    flag("--image-size", type=int, default=None, help="pixels per side; None: the dataset's own")
    flag("--epochs", type=int, default=epochs, help="passes over the training set")
    flag("--batch-size", type=int, default=batch_size, help="images per training step")
    flag("--lr", type=float, default=lr, help="learning rate")
    flag("--lr-schedule", default="constant", choices=["constant", "cosine"],
         help="cosine: the learning rate falls to 0 over --epochs")
    flag("--latent-dim", type=int, default=latent_dim, help="size of the code z")
    flag("--seed", type=int, default=0, help="seeds the weights, the noise and the batch order")
    flag("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
         help="auto: CUDA, else MPS, else CPU")
    flag("--out", default=None, help=f"output folder; None: {family_dir.name}/results/<run name>")
    flag("--resume", default=None, metavar="CHECKPOINT",
         help="continue that run as it was started; only " + ", ".join(
             f"--{name.replace('_', '-')}" for name in MAY_CHANGE_ON_RESUME) + " may change")
    flag("--amp", action="store_true", help="CUDA only: bfloat16 autocast in the training steps")
    flag("--compile", action="store_true", help="torch.compile the networks")
    flag("--channels-last", action="store_true", help="channels-last memory layout (conv models)")


def add_sample_flags(parser):
    """The flags every sample.py takes: a checkpoint, how many images, and where they go."""
    parser.add_argument("checkpoint")
    parser.add_argument("--num", type=int, default=64, help="how many images")
    parser.add_argument("--out", default=None,
                        help="a .png file (grid) or .pt file (tensor); None: "
                             "samples-seed<seed>-<num>.png beside the checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="seeds the noise")
    parser.add_argument("--batch-size", type=int, default=1000, help="images generated at a time")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="auto: CUDA, else MPS, else CPU")


def samples_path(args):
    """Check sample.py's flags; returns where its images go (.png: a grid, .pt: a tensor)."""
    check_ranges(args, {"num": POSITIVE})
    out = Path(args.out or Path(args.checkpoint).parent / f"samples-seed{args.seed}-{args.num}.png")
    if out.suffix not in (".png", ".pt"):
        raise InputError(f"--out must end in .png (a grid) or .pt (a tensor), not {out.name!r}")
    if out.name == "checkpoint.pt" or out.resolve() == Path(args.checkpoint).resolve():
        raise InputError(f"--out {out} would replace a checkpoint: choose another name")
    return out


def check_ranges(args, ranges=None):
    """Every numeric flag within its range (dest -> POSITIVE or NON_NEGATIVE): SHARED_RANGES and the
    family's own. None, a flag's "use the default", always passes."""
    if getattr(args, "seed", None) is not None and not 0 <= args.seed < 2 ** 32:
        raise InputError(f"--seed must lie in 0 .. 2^32 - 1, not {args.seed}")
    for name, rule in {**SHARED_RANGES, **(ranges or {})}.items():
        value = getattr(args, name, None)
        if value is not None and not (math.isfinite(value) and (value > 0 if rule == POSITIVE
                                                                else value >= 0)):
            raise InputError(f"--{name.replace('_', '-')} must be {rule}, not {value}")


def run_training(train, parser):
    """What every train.py's main() does: train(args) as the command line says, ending bad input, a
    full disk, Ctrl-C and SIGTERM (a scheduler's or `docker stop`'s) in one line that names the
    checkpoint to resume from; printed by rank 0 alone under torchrun."""
    args = parser.parse_args()
    try:
        with stop_signals():
            train(args)
    except WriteError as error:
        advice = "free some space, then " if error.errno == errno.ENOSPC else ""
        sys.exit(f"error: {error}. {resume_hint(args, advice)}" if is_main_process() else 1)
    except InputError as error:
        sys.exit(f"error: {error}" if is_main_process() else 1)
    except KeyboardInterrupt as stop:
        sys.exit(f"{str(stop) or 'interrupted'}: {resume_hint(args)}" if is_main_process() else 1)
    finally:
        release_run_folders()
        leave_process_group()


@contextlib.contextmanager
def stop_signals():
    """SIGTERM and SIGHUP stop the body as Ctrl-C does (KeyboardInterrupt): every file whole, one
    line. A signal that was ignored (nohup's SIGHUP) stays ignored."""
    handlers = {}
    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) is not signal.SIG_IGN:
            handlers[number] = signal.signal(number, stop_on_signal)
    try:
        yield
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)


def run_script(work, args):
    """What every script but train.py does: work(args), ending bad input, Ctrl-C and SIGTERM in one
    line."""
    try:
        with stop_signals():
            work(args)
    except InputError as error:
        sys.exit(f"error: {error}")
    except KeyboardInterrupt as stop:
        sys.exit(f"{str(stop) or 'interrupted'}: stopped before it finished; nothing was replaced")


def stop_on_signal(number, frame):
    raise KeyboardInterrupt(f"stopped by {signal.Signals(number).name}")


def resume_hint(args, advice=""):
    """Which checkpoint, if any, the run can go on from: the one in its folder (where a resumed run
    writes, whatever the name it was resumed from), else the one it was resumed from."""
    in_folder = [Path(args.out) / "checkpoint.pt"] if args.out else []
    for path in [*in_folder, Path(args.resume or "")]:
        epoch = epoch_in(path)
        if epoch is not None:
            return f"{path} holds epoch {epoch}; {advice}continue with --resume {path}"
    return "no checkpoint was written, so there is nothing to resume"


def start_run(args, family, default_out, ranges=None, free=()):
    """Check the flags, then resume the run in args.resume or prepare a new one in args.out
    (default_out if not given). Nothing is written yet: create_run_folder does that once the data
    is loaded. Returns (args, checkpoint or None, out folder); args is updated in place.

    A resumed run continues as it was started: its own flags come back, and a flag given now that
    would change it is refused, except MAY_CHANGE_ON_RESUME and the family's `free` ones (which
    change only what is measured). Its outputs stay beside the checkpoint. A run whose epochs are
    trained but whose end (final figures, FID) was cut short finishes."""
    given = set(vars(args).pop("given", ()))
    check_ranges(args, ranges)
    checkpoint = None
    if args.resume:
        checkpoint = load_checkpoint(args.resume, family)
        run, trained = checkpoint["args"], checkpoint["epoch"]
        folder = Path(args.resume).resolve().parent
        may_change = {*MAY_CHANGE_ON_RESUME, *free}
        if run["lr_schedule"] == "cosine":  # its curve is drawn over the run's length
            may_change.discard("epochs")
        changed = [name for name in sorted(given - {"resume"})
                   if (Path(args.out).resolve() != folder if name == "out"
                       else name not in may_change and getattr(args, name) != run.get(name))]
        if changed:
            listed = ", ".join(f"--{n.replace('_', '-')} {getattr(args, n)}" for n in changed)
            allowed = ", ".join(f"--{n.replace('_', '-')}" for n in sorted(may_change))
            raise InputError(f"--resume continues the run as it was started, and {listed} would "
                             f"change it; only {allowed} may change")
        kept = {name: getattr(args, name) for name in may_change & given}
        vars(args).update({**run, **kept, "resume": args.resume, "out": str(folder)})
        if args.epochs < trained:
            raise InputError(f"{args.resume} has trained {trained} epochs, more than --epochs "
                             f"{args.epochs} (which counts from the start of the run)")
        if args.epochs == trained and checkpoint.get("finished"):
            raise InputError(f"{args.resume} has trained {trained} epochs and its run is finished: "
                             f"give a larger --epochs to train on (it counts from the start)")
        if args.epochs == trained:
            print(f"{args.resume}: the {trained} epochs are trained; finishing the run's end")
    args.data_root = str(Path(args.data_root).expanduser().resolve())
    out = Path(args.out or default_out).resolve()
    resumed_here = checkpoint is not None and Path(args.resume).resolve() == out / "checkpoint.pt"
    if not resumed_here and (out / "checkpoint.pt").exists():  # a new run, or one saved elsewhere
        raise InputError(f"{out} already holds a run: continue it with --resume "
                         f"{out / 'checkpoint.pt'}, or choose another --out")
    if out == Path(args.data_root) or Path(args.data_root) in out.parents:
        raise InputError(f"--out {out} lies inside the data folder {args.data_root}, where its "
                         f"pictures would be read back as data: choose another --out")
    existing = next(folder for folder in (out, *out.parents) if folder.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        problem = "not a folder" if not existing.is_dir() else "read-only"
        raise InputError(f"--out {out} cannot be written: {existing} is {problem}")
    args.out = str(out)
    STARTED_FROM[out] = checkpoint["epoch"] if resumed_here else epoch_in(out / "checkpoint.pt")
    return args, checkpoint, out


STARTED_FROM = {}  # run folder -> the epoch of the checkpoint start_run found there (None: new)
CLAIMED = {}  # run folder -> the open run.lock this process holds a lock on


def create_run_folder(out):
    """Make the run's folder and claim it: an exclusive lock on out/run.lock, which the system
    releases when this process ends, however it ends. A folder another live run holds is refused;
    so is one whose checkpoint changed since start_run looked (a run that ended meanwhile)."""
    try:
        (out / "frames").mkdir(parents=True, exist_ok=True)
        lock = CLAIMED.get(out) or open(out / "run.lock", "a+")
    except OSError as error:
        raise InputError(f"--out {out} cannot be created ({error.strerror or error})") from None
    if fcntl is not None and out not in CLAIMED:  # (Windows has no fcntl: no claim there)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.seek(0)
            owner = lock.read().strip() or "another process"
            lock.close()
            raise InputError(f"{out} is in use by a running run ({owner}): wait for it to end, "
                             f"or choose another --out") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        lock.flush()
    CLAIMED[out] = lock
    for partial in (*out.glob("*.tmp"), *(out / "frames").glob("*.tmp")):
        partial.unlink()  # left by a writer that was killed: this process holds the folder now
    path = out / "checkpoint.pt"
    found = epoch_in(path)
    if out in STARTED_FROM and found != STARTED_FROM[out]:
        raise InputError(f"{path} changed while this run started (another run wrote epoch "
                         f"{found}): resume it with --resume {path}, or choose another --out")


def epoch_in(path):
    """The epoch of the checkpoint at path, or None where there is none."""
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"]


def release_run_folders():
    """Give up every claim this process holds (finish_run and the end of run_training do)."""
    for lock in CLAIMED.values():
        lock.close()
    CLAIMED.clear()


def choose_device(name="auto"):
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but torch sees no CUDA GPU")
    if name == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps was asked for, but this torch build has no MPS support")
    return torch.device(name)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def autocast(enabled):
    """--amp: bfloat16 autocast on CUDA (bf16 has float32's range: the losses need no scaling)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled)


def speed_flags_for(args, device):
    """Refuse --amp off CUDA; returns the memory format the conv models and their batches use."""
    if args.amp and device.type != "cuda":
        raise InputError(f"--amp (bfloat16 autocast) is for CUDA GPUs, not {device.type}")
    return torch.channels_last if args.channels_last else torch.contiguous_format


def lr_factor(args, epoch, step, steps):
    """The learning rate's multiplier at a step (both counted from 1): 1, or with --lr-schedule
    cosine (1 + cos(pi t / T)) / 2 at step t = 0 .. T - 1 of the run's T steps (Loshchilov &
    Hutter, arXiv:1608.03983, without restarts). It depends on the step alone: a resumed run
    continues it."""
    if args.lr_schedule == "constant":
        return 1.0
    progress = ((epoch - 1) * steps + step - 1) / (args.epochs * steps)
    return 0.5 * (1 + math.cos(math.pi * progress))


def print_progress(epoch, epochs, step, steps, batch_size, started, losses):
    """One progress line: images per second, the whole run's ETA and the running mean losses."""
    rate = step * batch_size / (time.time() - started)
    remaining = ((epochs - epoch + 1) * steps - step) * batch_size / rate
    print(f"epoch {epoch}/{epochs} step {step}/{steps} | {rate:,.0f} img/s | ETA "
          f"{remaining / 60:.1f} min | " + " ".join(f"{k} {v:.4g}" for k, v in losses.items()),
          end="\r" if sys.stdout.isatty() else "\n", flush=True)


def check_finite(values, epoch, out, step=None):
    """Stop, saying which checkpoint exists, once a loss or a test figure is no longer finite: a
    model that scores NaN is never checkpointed. Every finished epoch wrote one."""
    values = {name: float(value) for name, value in values.items()}
    if all(map(math.isfinite, values.values())):
        return
    kept = f"{out / 'checkpoint.pt'} (epoch {epoch - 1}) is kept" if epoch > 1 else \
        "no checkpoint was written"
    where = f"epoch {epoch}" + ("" if step is None else f", step {step}")
    raise InputError(f"the losses became {values} in {where}; stopped: {kept}. Try a lower --lr")


def checkpoint_state(family, model, model_config, optimizers, epoch, args, batches, **extra):
    """Everything a run needs to continue exactly: weights, the optimizers' states ({key:
    optimizer}), epoch, flags and random states."""
    return {"format": FORMAT, "family": family, "model": model.state_dict(),
            "model_config": model_config, **extra,
            **{key: optimizer.state_dict() for key, optimizer in optimizers.items()},
            "epoch": epoch, "args": vars(args), "rng": rng_states(batches.images.device),
            "batch_generator": batches.generator.get_state()}


def save_epoch(out, state, log_rows):
    """The end of an epoch on disk: the checkpoint, which carries the log rows, then log.csv written
    from them. A crash between the two leaves log.csv a row short; resuming rewrites it."""
    save_tensors({**state, "log": log_rows}, out / "checkpoint.pt")
    write_csv(out / "log.csv", log_rows)


def finish_run(out):
    """Mark the run's checkpoint finished, once every end-of-run file is written."""
    path = out / "checkpoint.pt"
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    save_tensors({**checkpoint, "finished": True}, path)
    STARTED_FROM.pop(out, None)
    release_run_folders()


def restore_run(checkpoint, path, model, optimizers, batches):
    """Put a resumed run back where checkpoint_state left it. Returns the first epoch still to train
    and the log rows so far, and (rank 0) rewrites log.csv to match the checkpoint. A new run
    (checkpoint None) starts at epoch 1 with no rows."""
    if checkpoint is None:
        return 1, []
    load_weights(model, checkpoint["model"], path)
    for key, optimizer in optimizers.items():
        optimizer.load_state_dict(checkpoint[key])
    batches.generator.set_state(checkpoint["batch_generator"])
    set_rng_states(checkpoint["rng"], batches.images.device)
    if is_main_process():
        write_csv(Path(path).parent / "log.csv", checkpoint["log"])
    return checkpoint["epoch"] + 1, checkpoint["log"]


def load_checkpoint(path, family):
    """A checkpoint written by `family`'s train.py (tensors and plain values only: weights_only)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"checkpoint {path} is a folder; give the checkpoint.pt file in it")
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Unsupported global" not in str(error):
            raise InputError(f"checkpoint {path} cannot be read: the file is corrupt or truncated "
                             f"(UnpicklingError)") from None
        # weights_only builds nothing but tensors and plain values: this file holds other objects
        raise InputError(f"{path} holds Python objects that a checkpoint may not contain: it was "
                         f"not written by this repository's train.py") from None
    except Exception as error:  # torch raises many types for a damaged file; all mean the same here
        raise InputError(f"checkpoint {path} cannot be read: the file is corrupt or truncated "
                         f"({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint or "family" not in checkpoint:
        raise InputError(f"{path} is not a checkpoint written by this repository's train.py")
    if checkpoint.get("format") != FORMAT:
        raise InputError(f"{path} was written by another version of this code: train again, or "
                         f"check out the version that wrote it")
    if checkpoint["family"] != family:
        raise InputError(f"{path} is a checkpoint of the {checkpoint['family']} family; this "
                         f"script needs one of {family}")
    return checkpoint


def load_trained_model(path, family, build, device):
    """Rebuild the model a checkpoint describes (build(**model_config)), with its weights, in eval
    mode; returns (model, checkpoint)."""
    checkpoint = load_checkpoint(path, family)
    model = build(**checkpoint["model_config"])
    load_weights(model, checkpoint["model"], path)
    return model.to(device).eval(), checkpoint


def load_weights(model, state_dict, path):
    """load_state_dict, with one line when the checkpoint's architecture is not the model's."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:
        raise InputError(f"checkpoint {path} does not fit this model: "
                         f"{str(error).splitlines()[1].strip()}") from None
