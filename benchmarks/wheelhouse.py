"""python -m benchmarks.wheelhouse [--extras train]: the pinned requirements of an offline install.

Prints ``name==version``, one a line, for every package that the installed project and its
extras need (followed through each package's own requirements, markers evaluated for this
Python), at the versions installed here, except torch and what only torch needs: a GPU machine
keeps its own torch build. ``make wheelhouse`` downloads these as wheels for another Python
version and platform (docs/ablations.md, "Offline install on a GPU machine").
"""

from __future__ import annotations

import argparse
import re
from importlib import metadata

EXCLUDE = {"torch"}  # the GPU machine's own build stays; its own requirements are not followed


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(project: str = "backspace", extras: tuple[str, ...] = ("train",), exclude=EXCLUDE) -> dict[str, str]:
    """{canonical name: installed version} of everything ``project[extras]`` needs, ``exclude``
    and what is reached only through it left out.

    >>> pins = closure()
    >>> "trl" in pins and "transformers" in pins and "hydra-core" in pins and "torch" not in pins
    True
    """
    from packaging.requirements import Requirement

    pins: dict[str, str] = {}
    todo = [(project, tuple(extras))]
    seen = set()
    while todo:
        name, wanted = todo.pop()
        if (canonical(name), wanted) in seen:
            continue
        seen.add((canonical(name), wanted))
        dist = metadata.distribution(name)
        if canonical(name) != canonical(project):
            pins[canonical(name)] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if canonical(req.name) in exclude:
                continue
            env = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(e) for e in env):
                continue
            try:
                metadata.distribution(req.name)
            except metadata.PackageNotFoundError:
                continue  # an optional requirement not installed here: not needed by what runs here
            todo.append((req.name, tuple(sorted(req.extras))))
    return dict(sorted(pins.items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.wheelhouse", description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="train", help="comma-separated extras of the project (default train)")
    parser.add_argument("--only", default="", help="space- or comma-separated names: print only these pins "
                        "(the packages a machine with its own stack lacks)")
    args = parser.parse_args(argv)
    pins = closure(extras=tuple(e for e in args.extras.split(",") if e))
    only = {canonical(n) for n in re.split(r"[\s,]+", args.only) if n}
    missing = only - set(pins)
    if missing:
        parser.error(f"--only: not required by the project: {', '.join(sorted(missing))}")
    for name, version in pins.items():
        if not only or name in only:
            print(f"{name}=={version}")


if __name__ == "__main__":
    main()
