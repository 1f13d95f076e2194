"""The README as a new user reads it, and docs/results.md as its record.

Every picture they show exists and every picture in docs/figures is shown; the README stays
short and speaks of the code (no commit hashes, no machines); docs/reproduce.sh runs exactly
the commands of the README's results table."""
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
RESULTS = (ROOT / "docs" / "results.md").read_text()
# What docs/reproduce.sh adds to a README command: where the data is, where the run goes, its seed
ADDED_FLAGS = ("--data-root", "--out", "--seed")


def table_commands(text):
    """The first `python ...` command of each table row: the command the row's figure comes from."""
    commands = []
    for line in text.splitlines():
        if line.startswith("|"):
            found = re.search(r"`(python [^`]+)`", line)
            if found:
                commands.append(found.group(1))
    return commands


def without_added_flags(command):
    """The command as the README writes it: the flags reproduce.sh adds removed, values too."""
    words, kept = shlex.split(command), []
    while words:
        word = words.pop(0)
        if word in ADDED_FLAGS:
            words.pop(0)
        else:
            kept.append(word)
    return " ".join(kept)


def shown_images(text):
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)


def prose_lines(text):
    """The lines outside tables, with HTML comments (the TODO markers) left out."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    return [line for line in text.splitlines() if not line.startswith("|")]


def commit_hashes(text):
    """Words of 7 to 40 hex digits, with a digit and a letter among them: commit ids."""
    words = re.findall(r"\b[0-9a-f]{7,40}\b", text)
    return [word for word in words if re.search(r"[0-9]", word) and re.search(r"[a-f]", word)]


def test_every_image_the_docs_show_exists():
    readme = shown_images(README)
    results = [f"docs/{image}" for image in shown_images(RESULTS)]
    assert len(readme) >= 8, "the gallery shows two rows of pictures"
    assert [image for image in readme + results if not (ROOT / image).is_file()] == []


def test_every_picture_in_docs_figures_is_shown():
    shown = {Path(image).name for image in shown_images(README) + shown_images(RESULTS)}
    unshown = [path.name for path in (ROOT / "docs" / "figures").iterdir()
               if path.name not in shown]
    assert unshown == []


def test_every_gif_in_docs_is_at_most_2_megabytes():
    gifs = list((ROOT / "docs").rglob("*.gif"))
    assert gifs
    assert [gif.name for gif in gifs if gif.stat().st_size > 2 * 1024 * 1024] == []


def test_readme_is_at_most_12_kilobytes():
    assert len(README.encode()) <= 12 * 1024


def test_readme_prose_lines_are_at_most_120_characters():
    assert [line for line in prose_lines(README) if len(line) > 120] == []


def test_readme_names_no_commit_and_no_private_data_path():
    assert commit_hashes(README) == []
    assert "../shared" not in README


def test_the_hash_finder_tells_commits_from_numbers_and_words():
    text = "at commit 1a2b3c4 (or 0a1b2c3d4e), 10,000 images, 1000000 steps, a decade, facade"
    assert commit_hashes(text) == ["1a2b3c4", "0a1b2c3d4e"]


@pytest.mark.parametrize("name", ["README.md", "docs/results.md"])
def test_the_docs_speak_of_the_code_not_of_who_ran_it_where(name):
    text = (ROOT / name).read_text().lower()
    assert [word for word in ("session", "this machine") if word in text] == []


def test_the_table_parser_finds_a_row_command():
    rows = ("| model | command |\n|---|---|\n"
            "| x | `python VAE/train.py --arch conv` (then `python VAE/evaluate.py c`) |\n")
    assert table_commands(rows) == ["python VAE/train.py --arch conv"]


def test_added_flags_are_removed_with_their_values():
    printed = "python GAN/train.py --epochs 30 --seed 3 --data-root data --out GAN/results/r"
    assert without_added_flags(printed) == "python GAN/train.py --epochs 30"


@pytest.mark.skipif(shutil.which("bash") is None, reason="docs/reproduce.sh is a bash script")
def test_reproduce_script_runs_the_readme_table_and_nothing_else():
    printed = subprocess.run(["bash", str(ROOT / "docs" / "reproduce.sh"), "--dry-run"],
                             capture_output=True, text=True, check=True).stdout.splitlines()
    run = {without_added_flags(line) for line in printed}
    commands = {without_added_flags(command) for command in table_commands(README)}
    assert len(commands) >= 9, "one row per model"
    assert commands - run == set(), "README rows that reproduce.sh does not run"
    assert run - commands == set(), "runs of reproduce.sh that are no README row"


@pytest.mark.skipif(shutil.which("bash") is None, reason="docs/reproduce.sh is a bash script")
def test_reproduce_script_refuses_unknown_arguments():
    result = subprocess.run(["bash", str(ROOT / "docs" / "reproduce.sh"), "--fast"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "unknown argument --fast" in result.stderr
