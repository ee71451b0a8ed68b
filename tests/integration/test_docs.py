"""The documentation that is generated from the binary still matches it."""

import subprocess

from harness import REPO, WSGATE_BIN


def test_configuration_reference_is_the_current_help():
    shown = subprocess.run([WSGATE_BIN, "--help"], capture_output=True, text=True,
                           check=True, timeout=10).stdout
    doc = (REPO / "docs" / "configuration.md").read_text()
    assert shown in doc, "docs/configuration.md is stale: run scripts/update-config-doc.py"
