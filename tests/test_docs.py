"""The README as a new user reads it: every image it shows exists, every GIF in docs/ is small enough to load, and
every command of its results tables is one that docs/reproduce.sh runs."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def table_commands(text):
    """The first `python ...` command of each table row: the command the row's figure comes from."""
    commands = []
    for line in text.splitlines():
        if line.startswith("|"):
            found = re.search(r"`(python [^`]+)`", line)
            if found:
                commands.append(found.group(1))
    return commands


def test_every_image_the_readme_shows_exists():
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert len(images) >= 12, "the gallery shows a dozen pictures"
    missing = [image for image in images if not (ROOT / image).is_file()]
    assert missing == []


def test_every_gif_in_docs_is_at_most_2_megabytes():
    gifs = list((ROOT / "docs").rglob("*.gif"))
    assert gifs
    assert [gif.name for gif in gifs if gif.stat().st_size > 2 * 1024 * 1024] == []


def test_the_table_parser_finds_a_row_command():
    rows = "| model | command |\n|---|---|\n| x | `python VAE/train.py --arch conv` (then `python VAE/evaluate.py c`) |\n"
    assert table_commands(rows) == ["python VAE/train.py --arch conv"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="docs/reproduce.sh is a bash script")
def test_reproduce_script_runs_every_command_of_the_readme_tables():
    printed = subprocess.run(["bash", str(ROOT / "docs" / "reproduce.sh"), "--dry-run", "--data-root", "../shared/data"],
                             capture_output=True, text=True, check=True).stdout.splitlines()
    commands = table_commands(README)
    assert len(commands) >= 12, "the VAE, AE, speed, GAN and conditional tables each have commands"
    # The script adds only --out (and, for the seeds of one row, --seed) after the README's own flags.
    not_run = [command for command in commands if not any(line.startswith(command) for line in printed)]
    assert not_run == []


@pytest.mark.skipif(shutil.which("bash") is None, reason="docs/reproduce.sh is a bash script")
def test_reproduce_script_refuses_unknown_arguments():
    result = subprocess.run(["bash", str(ROOT / "docs" / "reproduce.sh"), "--fast"], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown argument --fast" in result.stderr
