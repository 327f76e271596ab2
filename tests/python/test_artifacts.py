"""Artifacts, datasets, models and lineage from Python against a real server, and the chunk
boundaries against the CLI's (the same content dedups whichever client stored it)."""
import hashlib
import json
import os
import random
import subprocess

import pytest

import mlops
from mlops._artifacts import Artifacts, chunk_boundaries
from mlops.tracking import connection

from conftest import CLI


def cli(server, *args):
    done = subprocess.run([str(CLI), "--server", server.address, *args], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_chunks_are_cut_where_the_cli_cuts_them(server, sdk_env, tmp_path):
    rng = random.Random(7)
    data = bytes(rng.getrandbits(8) for _ in range(3 << 20)) + b"\0" * (1 << 20)  # + a run of 0s
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    cli(server, "artifact", "put", str(path))
    digest = hashlib.sha256(data).hexdigest()
    stat = json.loads(cli(server, "--output", "json", "artifact", "stat", digest, "--chunks"))
    theirs = [(c["digest"], int(c["size"])) for c in stat["chunks"]]
    ours, begin = [], 0
    for end in chunk_boundaries(memoryview(data)):
        ours.append((hashlib.sha256(data[begin:end]).hexdigest(), end - begin))
        begin = end
    assert len(ours) > 3 and ours == theirs
    # So the SDK sends none of them again.
    artifacts = Artifacts(connection())
    assert artifacts.upload_file(str(path)).digest == digest
    assert artifacts.sent_chunks == 0


def test_log_artifact_stores_once_and_downloads_whole(sdk_env, tmp_path):
    model = tmp_path / "model.bin"
    model.write_bytes(os.urandom(2 << 20))
    with mlops.start_run(experiment="py-artifacts", record_source=False) as run:
        digest = run.log_artifact(str(model))
    assert run.info().tags["mlops.artifact.model.bin"] == digest
    assert digest == "sha256:" + hashlib.sha256(model.read_bytes()).hexdigest()
    artifacts = Artifacts(connection())
    artifacts.upload_file(str(model))
    assert artifacts.sent_chunks == 0
    out = tmp_path / "out" / "model.bin"
    assert artifacts.download_to_file(digest, str(out)) == 2 << 20
    assert out.read_bytes() == model.read_bytes()
    with pytest.raises(mlops.NotFound):
        artifacts.download_to_file("0" * 64, str(tmp_path / "missing"))
    assert not (tmp_path / "missing").exists()


def test_models_register_alias_and_read_back(sdk_env, tmp_path):
    model = tmp_path / "model.pkl"
    model.write_bytes(b"weights" * 1000)
    with mlops.start_run(experiment="py-models", record_source=False) as run:
        v1 = mlops.models.register(run, str(model), "py-churn")
    model.write_bytes(b"better" * 1000)
    v2 = mlops.models.register(None, str(model), "py-churn")
    assert (v1.version, v2.version) == (1, 2) and v1.source_run_id == run.id
    mlops.models.set_alias("py-churn", "production", 1, reason="first")
    assert mlops.models.get_version("py-churn@production").version == 1
    assert mlops.models.get_version("py-churn@2").artifact_digest == v2.artifact_digest
    with pytest.raises(mlops.Aborted):
        mlops.models.set_alias("py-churn", "production", 2, expected_version=2)
    mlops.models.set_alias("py-churn", "production", 2, expected_version=1)
    out = tmp_path / "prod.pkl"
    mlops.models.download("py-churn@production", str(out))
    assert out.read_bytes() == b"better" * 1000
    with pytest.raises(mlops.NotFound):
        mlops.models.get_version("py-churn@staging")
    assert mlops.models.delete_alias("py-churn", "production").from_version == 2
    with pytest.raises(mlops.NotFound):
        mlops.models.get_version("py-churn@production")


def test_datasets_push_pull_open_and_the_run_records_the_version(sdk_env, tmp_path):
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "train.csv").write_text("a,b\n1,2\n")
    (source / "sub" / "test.csv").write_text("a,b\n3,4\n")
    v1 = mlops.data.push(str(source), "py-data", message="first", tags=["v1"])
    assert v1.file_count == 2
    (source / "train.csv").write_text("a,b\n1,2\n5,6\n")
    mlops.data.push(str(source), "py-data", message="second")
    assert mlops.data.open("py-data@v1", "train.csv") == b"a,b\n1,2\n"
    assert sorted(e.path for e in mlops.data.entries("py-data@v1")) == ["sub/test.csv",
                                                                         "train.csv"]
    assert mlops.data.get_version("py-data@v1").digest == v1.digest
    assert mlops.data.open("py-data", "train.csv") == b"a,b\n1,2\n5,6\n"
    with mlops.start_run(experiment="py-data", record_source=False) as run:
        pulled = mlops.data.pull("py-data@v1", str(tmp_path / "pulled"))
    assert pulled.digest == v1.digest
    assert (tmp_path / "pulled" / "sub" / "test.csv").read_text() == "a,b\n3,4\n"
    assert run.info().tags["mlops.dataset.py-data"] == "sha256:" + v1.digest
    with pytest.raises(mlops.NotFound):
        mlops.data.pull("py-data@nope", str(tmp_path / "none"))
