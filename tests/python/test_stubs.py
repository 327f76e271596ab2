"""The generated stubs are those of the protos in this checkout: each module's embedded file
descriptor equals what protoc makes of proto/ now (a stale stub fails here)."""
import importlib
import pathlib
import shutil
import subprocess
import tempfile

from google.protobuf import descriptor_pb2

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto"


def without_json_names(file: descriptor_pb2.FileDescriptorProto):
    # protoc fills json_name in a descriptor set but not in what it embeds in a _pb2 module.
    def clear(messages):
        for message in messages:
            for field in message.field:
                field.ClearField("json_name")
            clear(message.nested_type)
    clear(file.message_type)
    return file


def test_every_public_proto_has_a_stub_matching_it():
    protos = sorted(p.relative_to(PROTO).as_posix() for p in PROTO.glob("mlops/*/v1/*.proto"))
    assert len(protos) >= 7
    with tempfile.TemporaryDirectory() as scratch:
        out = pathlib.Path(scratch) / "set.pb"
        subprocess.run([shutil.which("protoc") or "protoc", f"--proto_path={PROTO}",
                        f"--descriptor_set_out={out}", *protos], check=True)
        fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    by_name = {f.name: f for f in fresh.file}
    for proto in protos:
        module = importlib.import_module(proto[:-len(".proto")].replace("/", ".") + "_pb2")
        importlib.import_module(proto[:-len(".proto")].replace("/", ".") + "_pb2_grpc")
        stub = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        assert without_json_names(stub) == without_json_names(by_name[proto]), \
            f"{proto}: the generated stub is stale"
