"""pyproject.toml names every package folder: a folder it leaves out would be missing from the wheel."""

from __future__ import annotations

import re

from conftest import REPO


def test_every_package_folder_is_listed_and_the_shipped_files_are_mapped():
    text = (REPO / "pyproject.toml").read_text()
    listed = set(re.findall(r'"(l2tproute[a-z0-9_.]*)"', re.search(r"^packages = \[(.*?)\]", text, re.M | re.S)[1]))
    folders = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "l2tproute").rglob("__init__.py")}
    shipped = {"l2tproute.files.bin", "l2tproute.files.lib", "l2tproute.files.contrib"}
    assert listed == folders | shipped, sorted(listed ^ (folders | shipped))
    for name in shipped:
        assert f'"{name}" = "{name.rsplit(".", 1)[1]}"' in text, name
