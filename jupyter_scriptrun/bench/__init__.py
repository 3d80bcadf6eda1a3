"""The benchmark: the product against a bare ``subprocess.run``, measured in one run
(``python -m jupyter_scriptrun.bench``). Not imported by the product itself."""

from jupyter_scriptrun.bench.harness import benchmark, main

__all__ = ["benchmark", "main"]
