"""TLS and mTLS from Python, with certificates made by openssl in the test: the SDK trusts the
CA it is given, presents a client certificate when the server requires one, and the asynchronous
sender logs over the same secure channel."""
import subprocess

import pytest

import mlops
from mlops.metadata.v1 import metadata_pb2 as mpb

from conftest import Server


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.pem", "-days", "2", "-subj",
            f"/CN={name}")


def make_leaf(d, name, ca):
    (d / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.csr", "-subj", f"/CN={name}")
    openssl("x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/{ca}.pem", "-CAkey",
            f"{d}/{ca}.key", "-CAcreateserial", "-out", f"{d}/{name}.pem", "-days", "2",
            "-extfile", f"{d}/{name}.ext")


def test_tls_and_client_certificates(tmp_path, monkeypatch):
    pki = tmp_path / "pki"
    pki.mkdir()
    make_ca(pki, "ca")
    make_ca(pki, "other-ca")
    make_leaf(pki, "server", "ca")
    make_leaf(pki, "alice", "ca")
    make_leaf(pki, "mallory", "other-ca")
    server = Server(tmp_path, [f"--tls_cert={pki}/server.pem", f"--tls_key={pki}/server.key",
                               f"--tls_client_ca={pki}/ca.pem"])
    server.start()
    monkeypatch.setenv("MLOPS_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("MLOPS_START_TIMEOUT_S", "1")  # a refused handshake is UNAVAILABLE
    try:
        address = f"localhost:{server.port}"
        mlops.set_server(address, ca=f"{pki}/ca.pem", cert=f"{pki}/alice.pem",
                         key=f"{pki}/alice.key")
        with mlops.start_run(experiment="py-tls", record_source=False) as run:
            for step in range(100):
                run.log_metric("loss", 1.0 / (step + 1), step=step)
        assert run.info().status == mpb.FINISHED
        # A certificate of another CA, none at all, or a server the CA did not sign: refused.
        for kwargs in ({"cert": f"{pki}/mallory.pem", "key": f"{pki}/mallory.key"}, {}):
            mlops.set_server(address, ca=f"{pki}/ca.pem", **kwargs)
            with pytest.raises((mlops.Unavailable, mlops.Unknown)):
                mlops.start_run(experiment="py-tls", record_source=False)
        mlops.set_server(address, ca=f"{pki}/other-ca.pem", cert=f"{pki}/alice.pem",
                         key=f"{pki}/alice.key")
        with pytest.raises(mlops.Unavailable):
            mlops.start_run(experiment="py-tls", record_source=False)
        with pytest.raises(mlops.InvalidArgument, match="needs both"):
            mlops.set_server(address, ca=f"{pki}/ca.pem", cert=f"{pki}/alice.pem")
        with pytest.raises(mlops.InvalidArgument, match="not a PEM"):
            mlops.set_server(address, ca=f"{pki}/alice.key")
    finally:
        server.stop()
