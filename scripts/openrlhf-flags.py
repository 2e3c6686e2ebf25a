"""Prints the command-line flags of OpenRLHF's `openrlhf.cli.train_dpo`, read from the PyPI
wheel of the given version without installing or importing it (OpenRLHF needs DeepSpeed and
GPUs): the `add_argument("--…")` calls of `openrlhf/cli/train_dpo.py`, found with `ast`.

    python3 scripts/openrlhf-flags.py 0.11.2 > tests/fixtures/openrlhf-0.11.2-train_dpo-flags.txt

srlm's test of its OpenRLHF command line (tests/external_trainer.rs) checks every flag srlm
emits against that file.
"""

import ast
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def main():
    version = sys.argv[1] if len(sys.argv) > 1 else "0.11.2"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--disable-pip-version-check", f"openrlhf=={version}", "-d", tmp],
            check=True,
        )
        wheel = next(Path(tmp).glob("openrlhf-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            name = next(n for n in z.namelist() if n.endswith("openrlhf/cli/train_dpo.py"))
            source = z.read(name).decode()
    flags = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            for arg in node.args:
                if isinstance(arg, ast.Constant) and str(arg.value).startswith("--"):
                    flags.add(arg.value)
    print(f"# openrlhf=={version}: flags of openrlhf/cli/train_dpo.py (scripts/openrlhf-flags.py)")
    for flag in sorted(flags):
        print(flag)


if __name__ == "__main__":
    main()
