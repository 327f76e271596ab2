"""What `mlops run` records about how a run was made, recorded the same way from Python: the code
(commit, branch, remote, and every uncommitted or untracked change as a binary patch stored in the
artifact service), the command line, the working directory, the environment (the keys of the CLI's
CaptureEnvironment plus the interpreter), and the dependencies (lockfiles, and the installed
distributions as a `pip freeze`-style list, each stored and named by digest). `mlops reproduce`
checks the commit out, applies the patch and runs the command again.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Tuple

from .metadata.v1 import metadata_pb2 as mpb

# The variables that change results (the CLI's kRecordedEnv).
_RECORDED_ENV = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONHASHSEED",
                 "TZ", "LANG")
# The CLI's kLockfiles.
_LOCKFILES = ("requirements.txt", "requirements-dev.txt", "poetry.lock", "Pipfile.lock",
              "environment.yml", "environment.yaml", "conda-lock.yml", "uv.lock",
              "package-lock.json", "yarn.lock", "Cargo.lock", "go.sum")


def _git(args: List[str], cwd: str, env: Optional[Dict[str, str]] = None) -> Tuple[int, bytes]:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=60,
                              env={**os.environ, **(env or {})})
    except (OSError, subprocess.TimeoutExpired):
        return 1, b""
    return done.returncode, done.stdout


def repository_top(directory: str) -> str:
    code, out = _git(["rev-parse", "--show-toplevel"], directory)
    return out.decode().strip() if code == 0 else ""


def snapshot_code(work_dir: str, excluded: List[str]) -> Tuple[mpb.CodeVersion, str, bytes, str]:
    """(code version without the patch digest, repository top, patch, warning)."""
    code = mpb.CodeVersion()
    top = repository_top(work_dir)
    if not top:
        return code, "", b"", (f"{work_dir} is not in a git repository: the code is not recorded "
                               "and the run cannot be reproduced")
    status, commit = _git(["rev-parse", "HEAD"], top)
    if status != 0:
        return code, top, b"", "the repository has no commit yet"
    code.commit = commit.decode().strip()
    code.branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], top)[1].decode().strip()
    code.repository = _git(["config", "--get", "remote.origin.url"], top)[1].decode().strip()
    # A scratch index holds HEAD plus every change, so that the user's index stays as it was.
    with tempfile.TemporaryDirectory(prefix="mlops-index-") as scratch:
        env = {"GIT_INDEX_FILE": os.path.join(scratch, "index")}
        _git(["read-tree", "HEAD"], top, env)
        relative = os.path.relpath(work_dir, top)
        prefix = "" if relative == "." else relative + "/"
        add = ["add", "-A", "--", "."]
        for path in (".mlops", ".mlops-run", *excluded):
            add.append(f":(exclude){prefix}{path}")
        _git(add, top, env)
        status, patch = _git(["diff", "--cached", "--binary", "HEAD"], top, env)
    return code, top, patch if status == 0 else b"", ""


def capture_environment() -> Dict[str, str]:
    env: Dict[str, str] = {}
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    env["os"] = line[12:].strip().strip('"')
    except OSError:
        pass
    uname = os.uname()
    env["kernel"] = uname.release
    env["arch"] = uname.machine
    libc = platform.libc_ver()
    if libc[0] == "glibc":
        env["glibc"] = libc[1]
    env["python"] = f"{platform.python_implementation()} {platform.python_version()}"
    env["python.executable"] = sys.executable
    for var in _RECORDED_ENV:
        if var in os.environ:
            env["env." + var] = os.environ[var]
    container = os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv") or \
        "KUBERNETES_SERVICE_HOST" in os.environ
    env["container"] = "yes" if container else "no"
    return env


def installed_distributions() -> bytes:
    """The installed distributions, one `name==version` line each, sorted: what `pip freeze`
    prints for a plain environment, read from the metadata without running pip."""
    from importlib import metadata
    lines = set()
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            lines.add(f"{name}=={dist.version}")
    return ("\n".join(sorted(lines, key=str.lower)) + "\n").encode()


def lockfiles(work_dir: str, top: str) -> List[Tuple[str, str]]:
    found = []
    for directory in dict.fromkeys([work_dir] + ([top] if top else [])):
        for name in _LOCKFILES:
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                key = os.path.relpath(path, top) if top else name
                found.append((key, path))
    return found
