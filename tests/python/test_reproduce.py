"""The example trains a real scikit-learn model from Python; `mlops reproduce` rebuilds it bit for
bit from what start_run recorded (commit, uncommitted changes, command, params)."""
import shutil
import subprocess
import sys

from mlops.metadata.v1 import metadata_pb2 as mpb

from conftest import CLI, ROOT, child_env


def git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_a_python_run_is_reproduced_identically(server, sdk_env, tmp_path):
    import mlops
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "examples" / "python" / "train.py", repo / "train.py")
    git(repo, "init", "-q")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "add", "train.py")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "train")
    (repo / "NOTES.md").write_text("an uncommitted file, recorded in the patch\n")
    env = child_env(**sdk_env)
    done = subprocess.run([sys.executable, "train.py", "--epochs", "8", "--model", "repro-model"],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split()[1].rstrip(":")
    run = mlops.Run(run_id).info()
    assert run.status == mpb.FINISHED
    assert run.source.code.commit and run.source.code.dirty
    assert list(run.source.command[1:]) == ["train.py", "--epochs", "8", "--model",
                                            "repro-model"]
    assert run.params["epochs"] == "8"
    assert len([m for m in run.latest_metrics]) == 3
    assert run.tags["mlops.output.model.pkl"]
    assert mlops.models.get_version("repro-model@1").source_run_id == run_id

    again = subprocess.run([str(CLI), "reproduce", run_id], cwd=repo, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "identical" in again.stdout
    # The reproduction registered nothing.
    import pytest
    with pytest.raises(mlops.NotFound):
        mlops.models.get_version("repro-model@2")
