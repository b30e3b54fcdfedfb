"""kontain: each process of a container in its own tiny KVM virtual machine.

As a library: `kontain.run`, `kontain.Popen` (subprocess's interface, the program in its
own VM), `kontain.Policy`, `kontain.asyncio.create_subprocess_exec` and `kontain.Pool`
(warm monitors for many short runs) (docs/python-api.md). They are imported on first
use: km's own start-up imports this package and stays as lean as before.
"""

__version__ = "0.1.0"

_API = {"run", "Popen", "CompletedProcess", "Stats", "PIPE", "DEVNULL", "STDOUT",
        "TimeoutExpired", "CalledProcessError", "km_command"}


def __getattr__(name: str):  # PEP 562: the API, loaded when first named
    if name in _API:
        from kontain import api
        return getattr(api, name)
    if name in ("Pool", "Warm"):
        from kontain import pool
        return getattr(pool, name)
    if name == "Policy":
        from kontain.policy import Policy
        return Policy
    if name == "asyncio":
        import importlib
        return importlib.import_module("kontain.asyncio")
    raise AttributeError(f"module 'kontain' has no attribute {name!r}")
