#!/usr/bin/env python3
"""Generates the gRPC stubs of the public APIs (proto/mlops/*/v1/*.proto) into a package tree.

Run by the CMake target `mlops_python` (into build/<preset>/python) and by setup.py's build_py
(into the wheel), so the stubs are never hand-edited and never older than the protos. Module paths
follow the proto paths: proto/mlops/metadata/v1/metadata.proto becomes
mlops.metadata.v1.metadata_pb2 (with _pb2_grpc and a .pyi of type hints beside it).
"""
import argparse
import os
import pathlib
import shutil
import subprocess
import sys


def public_protos(proto_root: pathlib.Path) -> list:
    found = proto_root.glob("mlops/*/v1/*.proto")
    return sorted(p.relative_to(proto_root).as_posix() for p in found)


def generate(proto_root: pathlib.Path, out: pathlib.Path, protoc: str, plugin: str) -> None:
    protos = public_protos(proto_root)
    if not protos:
        sys.exit(f"generate_stubs: no proto/mlops/*/v1/*.proto under {proto_root}")
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([protoc, f"--proto_path={proto_root}", f"--python_out={out}",
                    f"--pyi_out={out}", f"--grpc_python_out={out}",
                    f"--plugin=protoc-gen-grpc_python={plugin}", *protos], check=True)
    # Every directory on the way is a regular package; an __init__.py that the SDK itself ships
    # (mlops/__init__.py, mlops/monitoring/__init__.py) is left as it is.
    for proto in protos:
        directory = out / os.path.dirname(proto)
        while directory != out:
            init = directory / "__init__.py"
            if not init.exists():
                init.write_text("")
            directory = directory.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--proto_root", required=True, type=pathlib.Path)
    parser.add_argument("--out", required=True, type=pathlib.Path,
                        help="the directory that holds the package directory mlops/")
    parser.add_argument("--sources", type=pathlib.Path,
                        help="copy this package directory (python/mlops) to OUT/mlops first")
    parser.add_argument("--protoc", default=shutil.which("protoc") or "protoc")
    parser.add_argument("--plugin",
                        default=shutil.which("grpc_python_plugin") or "grpc_python_plugin")
    parser.add_argument("--stamp", type=pathlib.Path, help="a file to touch when done")
    args = parser.parse_args()
    if args.sources:
        target = args.out / "mlops"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(args.sources, target, ignore=shutil.ignore_patterns("__pycache__"))
    generate(args.proto_root.resolve(), args.out, args.protoc, args.plugin)
    if args.stamp:
        args.stamp.touch()


if __name__ == "__main__":
    main()
