"""Build step: the wheel and the sdist carry the default workflows and templates.

The top-level ``workflows/`` and ``templates/`` folders stay the only copy in the
repository (MANIFEST.in puts them in the sdist). Building copies them into the package as
``mailflow/shipped/``, where ``mailflow.config.shipped`` finds them once installed. An
editable install copies nothing: there, mailflow reads the checkout's folders.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("workflows", "templates")


class BuildPyWithShipped(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for name in SHIPPED:
            target = Path(self.build_lib) / "mailflow" / "shipped" / name
            # A build folder reused from an earlier build must not keep removed files.
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(name, target, ignore=shutil.ignore_patterns(".*", "__pycache__"))


setup(cmdclass={"build_py": BuildPyWithShipped})
