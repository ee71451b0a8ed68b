#!/usr/bin/python3
"""Copies `wsgate --help` into docs/configuration.md, between the line
"This is `wsgate --help`:" and the end of the code block that follows, so
the reference never drifts from the binary (tests/integration/test_docs.py
checks that it has not).

    scripts/update-config-doc.py [path/to/wsgate]
"""
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
MARK = "This is `wsgate --help`:\n\n```\n"


def help_text(binary):
    return subprocess.run([binary, "--help"], capture_output=True, text=True,
                          check=True).stdout


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "build/wsgate"
    doc = DOC.read_text()
    start = doc.index(MARK) + len(MARK)
    end = doc.index("```\n", start)
    DOC.write_text(doc[:start] + help_text(binary) + doc[end:])


if __name__ == "__main__":
    main()
