"""Generate the client's typed operations (``herald_client/aio`` and ``herald_client/sync``)
from ``../../schema.graphql`` and ``operations.graphql`` with ariadne-codegen.

    python clients/python/codegen/generate.py            # rewrite them (`make clients`)
    python clients/python/codegen/generate.py --into D   # write them under D instead

ariadne-codegen runs from its own environment (``.tools/codegen``, made by scripts/setup.sh).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[1]
ROOT = CLIENT.parents[1]
CODEGEN = ROOT / ".tools" / "codegen" / "bin" / "ariadne-codegen"
KINDS = ("aio", "sync")


def generate(into: Path) -> None:
    """Write ``<into>/aio`` and ``<into>/sync``, replacing what is there."""
    if not CODEGEN.exists():
        sys.exit(f"{CODEGEN} is missing: run scripts/setup.sh")
    with tempfile.TemporaryDirectory() as scratch:
        for kind in KINDS:
            config = (CLIENT / "codegen" / f"{kind}.toml").read_text()
            config = config.replace(
                'target_package_path = "herald_client"', f'target_package_path = "{into}"'
            )
            path = Path(scratch) / f"{kind}.toml"
            path.write_text(config)
            shutil.rmtree(into / kind, ignore_errors=True)
            subprocess.run(
                [str(CODEGEN), "--config", str(path)],
                cwd=CLIENT,
                check=True,
                stdout=subprocess.DEVNULL,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--into", type=Path, default=CLIENT / "herald_client")
    generate(parser.parse_args().into.resolve())


if __name__ == "__main__":
    main()
