"""What the three families share: conv blocks (blocks), data loading (data), whole-or-absent
files (files), pictures (pictures), torchrun (distributed), and the run's flags, checkpoints and
log (run)."""


class InputError(Exception):
    """A problem with what the user asked for (data, flags, checkpoint, disk): one line, no
    traceback."""
