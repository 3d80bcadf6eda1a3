"""The benchmark: the product against a bare ``subprocess.run``, measured in one run
(``python -m jupyter_scriptrun.bench``). Not imported by the product itself."""

from typing import Any

from jupyter_scriptrun.bench.harness import Bench, build_parser, main

__all__ = ["benchmark", "main"]


def benchmark(**options: Any) -> dict[str, Any]:
    """Run the benchmark from Python (a notebook): options as on the command line, e.g.
    ``benchmark(runs=20, throughput_runs=20)``. Returns the figures."""
    argv: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif isinstance(value, list | tuple):
            argv += [flag, *map(str, value)]
        elif value not in (False, None):
            argv += [flag, str(value)]
    return Bench(build_parser().parse_args(argv)).run()
