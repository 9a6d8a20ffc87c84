"""The stand-ins tests/project/test_dockerfile.py's dry build runs the Dockerfile's RUN steps with: one program,
copied under the name of each tool it stands in for (pip, python, groupadd, useradd). Each call is appended to
$BUILD_LOG as one JSON line: the tool, its arguments, its working directory, the pip settings it was given, and

- pip install: the requirements of each `-r FILE` (read when it runs) and, for `pip install .`, what the folder
  holds then; pip show: the version an earlier `pip install` of this build pinned, as pip would report it;
- python: `-m venv` is recorded only; `-c "import a, b.c"` checks that each module is importable in this
  project's environment (without importing it); any other `-c` runs in the real interpreter.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

PIP_SETTINGS = ("PIP_CERT", "PIP_NO_CACHE_DIR", "PIP_DISABLE_PIP_VERSION_CHECK", "PIP_INDEX_URL")


def requirements(path: Path) -> list[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def main() -> None:
    tool, args = Path(sys.argv[0]).name, sys.argv[1:]
    log = Path(os.environ["BUILD_LOG"])
    record: dict[str, Any] = {
        "tool": tool,
        "args": args,
        "cwd": os.getcwd(),
        "env": {k: os.environ[k] for k in PIP_SETTINGS if k in os.environ},
    }
    answer, code = "", 0
    if tool == "pip" and args[:1] == ["install"]:
        record["requirements"] = [
            r for i, a in enumerate(args[:-1]) if a == "-r" for r in requirements(Path(args[i + 1]))
        ]
        if "." in args:
            record["tree"] = sorted(os.listdir("."))
    elif tool == "pip" and args[:1] == ["show"]:
        earlier = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        pins = dict(r.split("==", 1) for rec in earlier for r in rec.get("requirements", []) if "==" in r)
        if args[1] in pins:
            answer = f"Name: {args[1]}\nVersion: {pins[args[1]]}\n"
        else:
            answer, code = f"WARNING: Package(s) not found: {args[1]}\n", 1
    elif tool == "python" and args[:1] == ["-c"] and re.fullmatch(r"import [\w.]+(, [\w.]+)*", args[1]):
        record["modules"] = args[1].removeprefix("import ").split(", ")
        missing = [m for m in record["modules"] if importlib.util.find_spec(m) is None]
        if missing:
            answer, code = f"ModuleNotFoundError: {missing}\n", 1
    with log.open("a") as fh:
        fh.write(json.dumps(record) + "\n")
    if tool == "python" and args[:1] == ["-c"] and "modules" not in record:
        os.execv(sys.executable, [sys.executable, *args])
    (sys.stdout if code == 0 else sys.stderr).write(answer)
    sys.exit(code)


if __name__ == "__main__":
    main()
