"""Operators configure what they can read about: every setting in common/settings.py appears in the
README's Configuration table and in .env.example (a new setting without docs fails here)."""
import re

import pytest

from common.settings import Settings
from tests.conftest import REPO

SETTINGS = sorted(Settings.model_fields)


def readme_configuration() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("## Configuration")
    return text[start:text.index("\n## ", start + 1)]


@pytest.mark.parametrize("name", SETTINGS)
def test_setting_is_in_the_readme_table(name):
    table_names = set(re.findall(r"`([A-Z0-9_]+)`", readme_configuration()))
    assert name.upper() in table_names


def test_env_example_names_every_setting_and_nothing_else():
    lines = (REPO / ".env.example").read_text().splitlines()
    named = {m.group(1).lower() for line in lines if (m := re.match(r"#?\s*ATTRIB_([A-Z0-9_]+)=", line))}
    outside = {"port", "attribution_workers", "db_wait_seconds", "url", "key"}  # scripts and the CLI, not Settings
    assert named - outside == set(SETTINGS)
