"""Locked dependencies (issue #18 item 7): the lock files pin every package with hashes, agree with the
direct pins of requirements*.txt, and are what the Makefile installs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

PROJECT_DIR = Path(settings.BASE_DIR)
_PIN = re.compile(r"^([A-Za-z0-9_.\[\]-]+)==([^\s\\;]+)")


def _name(requirement: str) -> str:
    return re.sub(r"\[.*\]", "", requirement).lower().replace("_", "-")


def direct_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins.update(direct_pins(path.parent / line[3:].strip()))
        elif match := _PIN.match(line):
            pins[_name(match.group(1))] = match.group(2)
    return pins


def locked(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes)."""
    entries: dict[str, tuple[str, int]] = {}
    current = None
    for line in path.read_text().splitlines():
        if match := _PIN.match(line):
            current = _name(match.group(1))
            entries[current] = (match.group(2), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = entries[current]
            entries[current] = (version, hashes + 1)
    return entries


@pytest.mark.parametrize(
    ("source", "lock"), [("requirements.txt", "requirements.lock"), ("requirements-dev.txt", "requirements-dev.lock")]
)
def test_the_lock_pins_every_direct_requirement_at_its_version(source, lock):
    pins = direct_pins(PROJECT_DIR / source)
    entries = locked(PROJECT_DIR / lock)

    assert {name: entries.get(name, ("missing", 0))[0] for name in pins} == pins


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock"])
def test_every_locked_package_carries_hashes(lock):
    entries = locked(PROJECT_DIR / lock)

    assert len(entries) > 20  # the indirect packages are there too
    assert [name for name, (_, hashes) in entries.items() if hashes == 0] == []
    text = (PROJECT_DIR / lock).read_text()
    assert "--find-links" not in text and "--index-url" not in text  # no machine's local wheel paths


def test_the_runtime_lock_is_part_of_the_dev_lock_at_the_same_versions():
    runtime = {name: version for name, (version, _) in locked(PROJECT_DIR / "requirements.lock").items()}
    dev = {name: version for name, (version, _) in locked(PROJECT_DIR / "requirements-dev.lock").items()}

    assert {name: dev.get(name) for name in runtime} == runtime


def test_the_makefile_installs_the_lock_files_with_hashes_required():
    makefile = (PROJECT_DIR / "Makefile").read_text()

    assert "install --quiet --require-hashes -r requirements.lock" in makefile
    assert "install --quiet --require-hashes -r requirements-dev.lock" in makefile


def test_pre_commit_runs_ruff_check_format_and_the_migrations_check():
    config = (PROJECT_DIR / ".pre-commit-config.yaml").read_text()

    for hook in ("id: ruff-check", "id: ruff-format", "makemigrations --check --dry-run"):
        assert hook in config
