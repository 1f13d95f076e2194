"""The little the three families share: conv building blocks, data loading and run helpers."""
import torch


class InputError(Exception):
    """A problem with what the user asked for (data, flags, checkpoint): shown as one line, no traceback."""


def save_atomically(obj, path):
    """torch.save to path.tmp, then rename over path: a crash mid-write never leaves a half file under the
    real name, and a failed write (a full disk, a folder that cannot be made) removes its partial .tmp
    before the error goes on. Creates path's folder."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(obj, temporary)
        temporary.replace(path)
    except BaseException:
        if temporary.exists():  # (not when its folder could not be made)
            temporary.unlink()
        raise
