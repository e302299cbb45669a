"""The build's one step beyond pyproject.toml: Swagger UI's files for /docs, fetched from
npm and checked against their pinned hash (arting_daemon/swagger_ui.py), so that the
repository need not carry them and every wheel and install has them."""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def swagger_ui():
    """The module by its path: the package itself cannot be imported before its
    dependencies are installed."""
    spec = importlib.util.spec_from_file_location(
        "swagger_ui", HERE / "arting_daemon" / "swagger_ui.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithSwaggerUI(build_py):
    def run(self):
        ui = swagger_ui()
        if not ui.installed():
            ui.fetch()
        super().run()


setup(cmdclass={"build_py": BuildPyWithSwaggerUI})
