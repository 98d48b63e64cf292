"""Only the ring's optional C accelerator is declared here; everything else is in setup.cfg.

`optional=True`: without a C compiler the install still succeeds and `hftbot.ipc.ring` runs its
own Python code (same behaviour, ~0.7 µs slower per hop; see docs/runtime.md).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("hftbot.ipc._fastring", ["hftbot/ipc/_fastring.c"], optional=True, extra_compile_args=["-O2"])
    ]
)
