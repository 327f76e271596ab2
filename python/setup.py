"""Builds the package with its gRPC stubs, generated from ../proto by protoc and
grpc_python_plugin (Debian: protobuf-compiler, protobuf-compiler-grpc) at build time."""
import os
import pathlib
import subprocess
import sys

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        proto_root = HERE.parent / "proto"
        if not proto_root.is_dir():
            sys.exit(f"setup.py: {proto_root} is missing: build from a checkout of the repository")
        subprocess.run([sys.executable, str(HERE / "generate_stubs.py"), "--proto_root",
                        str(proto_root), "--out", self.build_lib], check=True)


setup(packages=find_packages(include=["mlops", "mlops.*"]), package_data={"mlops": ["py.typed"]},
      cmdclass={"build_py": BuildWithStubs})
