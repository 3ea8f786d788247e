#!/usr/bin/env python3
"""Fails when the README's code map does not name every source file.

The code map (the README section headed "Code map") names each file by its path relative to
its crate's `src/` directory, prefixed by the crate directory the first time
(`gateway/src/`, `gateway/protocol/src/`, `sdk/src/`, `tests/src/`). A new module without a line
there fails `make lint`, so the map never stops before the newest code.

Usage: code_map.py README.md CRATE_SRC_DIR...
"""
import os
import re
import sys


def main(readme, dirs):
    text = open(readme, encoding="utf-8").read()
    m = re.search(r"^#+ Code map\n(.*?)(?=^## )", text, re.S | re.M)
    if not m:
        sys.exit(f"{readme}: no 'Code map' section")
    section = m.group(1)
    missing = []
    for src in dirs:
        for root, _, names in os.walk(src):
            for n in sorted(names):
                if not n.endswith(".rs"):
                    continue
                rel = os.path.relpath(os.path.join(root, n), src)
                if rel in ("lib.rs", "main.rs"):
                    continue
                if f"`{rel}`" not in section and f"{rel}`" not in section:
                    missing.append(os.path.join(src, rel))
    if missing:
        print(f"{readme}: the code map does not name:")
        for p in missing:
            print(f"  {p}")
        sys.exit(1)
    print(f"code map names every file of {', '.join(dirs)}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
