"""Tokens and projects from Python against a server with authentication on: the token travels on
every call (the sender's too), roles are enforced, and a project qualifies names and ids."""
import subprocess

import pytest

import mlops
from mlops.metadata.v1 import metadata_pb2 as mpb

from conftest import CLI, Server


def create_token(tokens, subject, *grants):
    args = [str(CLI), "auth", "token", "create", "--auth-token-file", str(tokens), "--subject",
            subject]
    for grant in grants:
        args += ["--grant", grant]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    directory = tmp_path_factory.mktemp("secured")
    tokens = directory / "tokens.yaml"
    editor = create_token(tokens, "py-editor", "default=editor", "vision=editor")
    viewer = create_token(tokens, "py-viewer", "default=viewer")
    server = Server(directory, [f"--auth_token_file={tokens}"])
    server.start()
    yield server, editor, viewer, directory
    server.stop()


def test_tokens_and_roles_reach_the_server(secured, tmp_path, monkeypatch):
    server, editor, viewer, directory = secured
    monkeypatch.setenv("MLOPS_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.delenv("MLOPS_TOKEN", raising=False)
    monkeypatch.delenv("MLOPS_PROJECT", raising=False)
    mlops.set_server(server.address)
    with pytest.raises(mlops.Unauthenticated):
        mlops.start_run(experiment="py-auth", record_source=False)
    mlops.set_server(server.address, token=viewer)
    with pytest.raises(mlops.PermissionDenied):
        mlops.start_run(experiment="py-auth", record_source=False)
    token_file = tmp_path / "token"
    token_file.write_text(editor + "\n")
    mlops.set_server(server.address, token_file=str(token_file))
    with mlops.start_run(experiment="py-auth", record_source=False) as run:
        run.log_metric("loss", 0.5)  # through the sender, with the token
    assert run.info().status == mpb.FINISHED and len(run.info().latest_metrics) == 1
    # A viewer's logging is refused by the server: raised by flush, nothing stored.
    mlops.set_server(server.address, token=viewer)
    as_viewer = mlops.Run(run.id)
    as_viewer.log_metric("sneaky", 1.0)
    with pytest.raises(mlops.PermissionDenied):
        as_viewer.flush(10)
    assert [m.key for m in as_viewer.info().latest_metrics] == ["loss"]
    with pytest.raises(mlops.InvalidArgument, match="cannot travel in a header"):
        mlops.set_server(server.address, token="bad token")


def test_a_project_puts_names_and_ids_in_it(secured, tmp_path, monkeypatch):
    server, editor, viewer, directory = secured
    monkeypatch.setenv("MLOPS_SPOOL_DIR", str(tmp_path / "spool"))
    mlops.set_server(server.address, token=editor, project="vision")
    with mlops.start_run(experiment="py-project", record_source=False) as run:
        run.log_metric("acc", 0.9)
    assert run.id.startswith("projects/vision/")
    assert run.info().status == mpb.FINISHED
    model = tmp_path / "m.bin"
    model.write_bytes(b"vision model")
    version = mlops.models.register(run, str(model), "py-vision-model")
    assert version.name == "projects/vision/py-vision-model"
    # The same name in project default is another model, absent there.
    mlops.set_server(server.address, token=editor)
    with pytest.raises(mlops.NotFound):
        mlops.models.get_version("py-vision-model@1")
    with pytest.raises(mlops.InvalidArgument, match="project"):
        mlops.set_server(server.address, project="../x")
