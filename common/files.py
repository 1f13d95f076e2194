"""Every file the project writes is whole or absent: it is written to a temporary file beside it,
flushed to disk, then renamed over the real name, which a crash cannot leave half done."""
import contextlib
import csv
import io
import os
import secrets
from pathlib import Path

import torch

from common import InputError


class WriteError(InputError):
    """A file could not be written (a full disk, a read-only folder): the run stops, whole."""

    def __init__(self, message, errno=None):
        super().__init__(message)
        self.errno = errno


def write_atomically(path, data):
    """Write bytes to path whole or not at all. The temporary file's name is this writer's own, so
    two processes writing one file (a shared cache) never mix their bytes. A failure removes it and
    becomes one line that names the file and the reason ("No space left on device")."""
    path = Path(path)
    temporary = path.with_name(f"{path.stem}.{secrets.token_hex(4)}{path.suffix}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "xb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())  # on disk before the rename makes it the real file
        os.replace(temporary, path)
    except BaseException as error:  # also Ctrl-C mid-write: no partial file stays behind
        with contextlib.suppress(OSError):  # (it may never have been made)
            temporary.unlink()
        if isinstance(error, OSError):
            raise WriteError(f"could not write {path}: {error.strerror or error}",
                             error.errno) from None
        raise


def save_tensors(obj, path):
    """torch.save, whole or absent. Serialised in memory first, so a full disk is an OSError of the
    write itself, not a C++ stream error."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomically(path, buffer.getbuffer())


def save_picture(image, path):
    """A PIL image as PNG (or GIF, by the suffix), whole or absent."""
    buffer = io.BytesIO()
    image.save(buffer, format=Path(path).suffix.lstrip(".").upper() or "PNG")
    write_atomically(path, buffer.getbuffer())


def write_csv(path, rows):
    """Rows (dicts) as a whole new CSV file; the columns are every key, in first-seen order."""
    text = io.StringIO(newline="")
    columns = list(dict.fromkeys(name for row in rows for name in row))
    writer = csv.DictWriter(text, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    write_atomically(path, text.getvalue().encode())
