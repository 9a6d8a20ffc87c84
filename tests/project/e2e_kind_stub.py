"""The stand-ins tests/project/test_e2e_script.py runs scripts/e2e-kind.sh with: one program, copied under the
name of each tool it stands in for (kind, kubectl, docker, podman, curl, sleep, scripts/cluster/images.sh and
katib.sh, python, katib-digits). Each call is appended to $E2E_LOG as one JSON line (the tool, its arguments,
what it was given to apply or load) and answered the way the script needs to go on:

- kubectl: `-f FILE` must exist (its text is recorded, `-f -` records stdin); `get experiment NAME -o jsonpath`
  of the conditions answers the next of $E2E_STATES (comma-separated, the last repeats); `auth can-i` says no,
  and fails, for a "verb resource" listed in $E2E_CANNOT; `get crd` of KServe's finds it when $E2E_KSERVE=1;
  `cp` needs its local source; `port-forward` stays up until it is killed, as the real one does.
- kind `load image-archive` and curl `--data-binary @FILE` need their file (curl's body is recorded); docker
  and podman `save -o` make it.
- katib-digits is the real click command line with every command but `lint` given a recording action in place
  of its own (so each subcommand, flag and value is parsed as the real one parses it; lint runs for real).
- python is the real interpreter, except for the two steps that need a live server (run_on_katib, kfp's wait).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

VALUE_FLAGS = ("-n", "-f", "-o", "-l", "-k", "-c", "-t")  # kubectl/docker flags whose value is the next word


class Stub:
    def __init__(self, argv: list[str]):
        self.tool = Path(argv[0]).name
        self.args = argv[1:]
        self.record: dict[str, Any] = {"tool": self.tool, "args": self.args}
        self.log = Path(os.environ["E2E_LOG"])

    def write(self) -> None:
        with self.log.open("a") as fh:
            fh.write(json.dumps(self.record, default=str) + "\n")

    def fail(self, message: str, code: int = 1) -> NoReturn:
        self.record["failed"] = message
        self.write()
        print(f"{self.tool}: {message}", file=sys.stderr)
        sys.exit(code)

    def value(self, flag: str) -> str | None:
        return self.args[self.args.index(flag) + 1] if flag in self.args[:-1] else None

    def words(self) -> list[str]:
        """The arguments that are neither flags nor a flag's value: kubectl's verb and its objects."""
        out, i = [], 0
        while i < len(self.args):
            if self.args[i] in VALUE_FLAGS:
                i += 2
            elif self.args[i].startswith("-"):
                i += 1
            else:
                out.append(self.args[i])
                i += 1
        return out


def next_state(stub: Stub) -> str:
    states = os.environ.get("E2E_STATES", "Running,Succeeded").split(",")
    counter = stub.log.with_suffix(".polls")
    polls = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(polls + 1))
    return states[min(polls, len(states) - 1)]


def kubectl(stub: Stub) -> None:
    applied = []
    for i, arg in enumerate(stub.args[:-1]):
        if arg == "-f":
            path = stub.args[i + 1]
            if path == "-":
                applied.append(sys.stdin.read())
            elif not Path(path).is_file():
                stub.fail(f'error: the path "{path}" does not exist')
            else:
                applied.append(Path(path).read_text())
    if applied:
        stub.record["applied"] = applied
    words = stub.words()
    if words[:2] == ["auth", "can-i"]:
        if " ".join(words[2:4]) in os.environ.get("E2E_CANNOT", "").split(","):
            print("no")
            stub.fail(f"no: {' '.join(words[2:4])}")
        print("yes")
    elif words[:2] == ["get", "crd"] and os.environ.get("E2E_KSERVE") != "1":
        stub.fail(f'Error from server (NotFound): customresourcedefinitions "{words[2]}" not found')
    elif words[:1] == ["cp"] and not Path(words[1]).exists():
        stub.fail(f"{words[1]}: no such file or directory")
    stub.write()
    output = stub.value("-o") or ""
    if words[:2] == ["get", "experiment"] and "conditions" in output:
        print(f"Created {next_state(stub)} ", end="")
    elif words[:2] == ["get", "experiment"] and output == "json":
        print(json.dumps({"kind": "Experiment", "metadata": {"name": words[2]}, "status": {}}))
    elif words[:2] == ["get", "pod"]:
        print(f"pod-of-{stub.value('-l')}", end="")
    elif words[:1] == ["port-forward"]:
        time.sleep(60)  # until the script kills it


def archive(stub: Stub) -> None:
    if stub.tool == "kind" and stub.args[:2] == ["load", "image-archive"] and not Path(stub.args[2]).is_file():
        stub.fail(f"no archive {stub.args[2]}")
    if stub.tool in ("docker", "podman") and stub.args[:1] == ["save"]:
        Path(stub.value("-o") or "").write_text("an image archive")
    stub.write()


def curl(stub: Stub) -> None:
    sent = Path((stub.value("--data-binary") or "").removeprefix("@"))
    if not sent.is_file():
        stub.fail(f"no file {sent}")
    body = json.loads(sent.read_text())
    stub.record["body"] = body
    instances, shape = body["instances"], []
    while isinstance(instances, list):
        shape.append(len(instances))
        instances = instances[0]
    stub.record["shape"] = shape
    stub.write()
    print(json.dumps({"predictions": [[0.01] * 7 + [0.91, 0.01, 0.01]]}))


def python(stub: Stub) -> None:
    if stub.args[:1] != ["-"]:
        os.execv(sys.executable, [sys.executable, *stub.args])
    source = sys.stdin.read()
    for step, marker in (("katib backend", "run_on_katib"), ("kfp wait", "kfp.Client")):
        if marker in source:
            stub.record["step"] = step
            stub.write()
            print("pipeline run state: SUCCEEDED" if step == "kfp wait" else "done")
            return
    sys.exit(subprocess.run([sys.executable, *stub.args], input=source, text=True).returncode)


def katib_digits(stub: Stub) -> None:
    import importlib

    import click

    from pipeline import cli

    def recording(name: str):
        def action(**params: Any) -> None:
            stub.record.update(command=name, params=params)
            stub.write()
            out = Path(str(params.get("out") or params.get("output") or "."))
            if name == "train":
                out.mkdir(parents=True, exist_ok=True)
            elif name == "predict":
                out.write_text("ImageId,Label\n1,2\n2,0\n")
            elif name == "export":
                (out / "1").mkdir(parents=True, exist_ok=True)
            elif name == "pipeline compile":
                out.write_text("{}")
            elif name == "pipeline run":
                print("submitted\nhttp://localhost:8080/#/runs/details/run-123")

        return action

    for name, (target, _) in cli.COMMANDS.items():
        module, attr = target.split(":")
        command = getattr(importlib.import_module(module), attr)
        subcommands = command.commands.items() if isinstance(command, click.Group) else [("", command)]
        for sub, leaf in subcommands:
            if name != "lint":
                leaf.callback = recording(f"{name} {sub}".strip())
    if stub.args[:1] == ["lint"]:
        stub.record["command"] = "lint"
        stub.write()
    cli.main(stub.args)


def main() -> None:
    stub = Stub(sys.argv)
    if stub.tool == "kubectl":
        kubectl(stub)
    elif stub.tool in ("kind", "docker", "podman"):
        archive(stub)
    elif stub.tool == "curl":
        curl(stub)
    elif stub.tool == "python":
        python(stub)
    elif stub.tool == "katib-digits":
        katib_digits(stub)
    else:  # sleep, and scripts/cluster/images.sh and katib.sh
        stub.record["env"] = {k: os.environ[k] for k in ("KUBECTL", "KATIB_WORK") if k in os.environ}
        stub.write()
        if stub.tool == "images.sh" and stub.args == ["list"]:
            print("docker.io/library/katib-digits:built\nkatib-controller:built")


if __name__ == "__main__":
    main()
