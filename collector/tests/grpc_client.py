"""A real gRPC peer for collector/tests/grpc_serviceradar.rs: grpcio (PyPI) compiles the
collector's own proto/monitoring.proto, calls monitoring.AgentService like ServiceRadar's agent,
and decodes GetStatus's JSON with a decoder derived from the committed fixture of ServiceRadar's
Go structs (tests/fixtures/serviceradar/structs.json).

Prints one JSON line: {"ok": true, "cpus": [...], ...} or {"ok": false, "code": "...", "details": "..."}.
"""
import argparse
import datetime
import importlib
import json
import os
import re
import sys
import tempfile

import grpc
from grpc_tools import protoc


def compile_proto(proto_dir):
    out = tempfile.mkdtemp(prefix="sysmon-grpc-")
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}",
                      os.path.join(proto_dir, "monitoring.proto")])
    if rc != 0:
        sys.exit(f"protoc failed on {proto_dir}/monitoring.proto ({rc})")
    sys.path.insert(0, out)
    return importlib.import_module("monitoring_pb2"), importlib.import_module("monitoring_pb2_grpc")


RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1), "uint64": (0, 2**64 - 1)}


class Decoder:
    """Checks a decoded JSON value against the Go struct fields of the fixture."""

    def __init__(self, fixture):
        self.structs = fixture["structs"]
        self.errors = []

    def value(self, path, go_type, v):
        if go_type.startswith("[]"):
            if not isinstance(v, list):
                return self.errors.append(f"{path}: {go_type} but {type(v).__name__}")
            for i, item in enumerate(v):
                self.value(f"{path}[{i}]", go_type[2:], item)
        elif go_type in self.structs:
            self.struct(path, go_type, v)
        elif go_type == "bool":
            if not isinstance(v, bool):
                self.errors.append(f"{path}: bool but {v!r}")
        elif go_type in INT_RANGES:
            lo, hi = INT_RANGES[go_type]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                self.errors.append(f"{path}: {go_type} but {v!r}")
        elif go_type in ("float64", "float32"):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                self.errors.append(f"{path}: {go_type} but {v!r}")
        elif go_type in ("string", "time.Time"):
            if not isinstance(v, str):
                self.errors.append(f"{path}: {go_type} but {v!r}")
            elif go_type == "time.Time" and not RFC3339.match(v):
                self.errors.append(f"{path}: time.Time but {v!r} is not RFC 3339")
        else:
            self.errors.append(f"{path}: the fixture names an unknown Go type {go_type}")

    def struct(self, path, name, v, fields=None):
        fields = self.structs[name] if fields is None else fields
        if not isinstance(v, dict):
            return self.errors.append(f"{path}: {name} but {type(v).__name__}")
        for f in fields:
            if f["json"] not in v:
                if not f["omitempty"]:
                    self.errors.append(f"{path}.{f['json']}: missing (not omitempty in {name})")
                continue
            x = v[f["json"]]
            if f.get("format") == "RFC3339Nano" and not (isinstance(x, str) and RFC3339.match(x)):
                self.errors.append(f"{path}.{f['json']}: not RFC3339Nano: {x!r}")
                continue
            self.value(f"{path}.{f['json']}", f["type"], x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--fixture", required=True)
    ap.add_argument("--addr", required=True)
    ap.add_argument("--ca")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--server-name", default="sysmon-vm")
    ap.add_argument("--agent-id", default="agent-test")
    args = ap.parse_args()
    pb, pb_grpc = compile_proto(args.proto_dir)
    fixture = json.load(open(args.fixture))

    if args.ca:
        creds = grpc.ssl_channel_credentials(
            root_certificates=open(args.ca, "rb").read(),
            private_key=open(args.key, "rb").read() if args.key else None,
            certificate_chain=open(args.cert, "rb").read() if args.cert else None,
        )
        channel = grpc.secure_channel(args.addr, creds, options=[("grpc.ssl_target_name_override", args.server_name)])
    else:
        channel = grpc.insecure_channel(args.addr)
    stub = pb_grpc.AgentServiceStub(channel)
    request = pb.StatusRequest(service_name="sysmon-vm", service_type="grpc", agent_id=args.agent_id,
                               poller_id="poller-test")
    try:
        resp = stub.GetStatus(request, timeout=60)
    except grpc.RpcError as e:
        print(json.dumps({"ok": False, "code": e.code().name, "details": e.details()}))
        return

    out = {"ok": True, "available": resp.available, "service_name": resp.service_name,
           "service_type": resp.service_type, "agent_id": resp.agent_id, "response_time": resp.response_time}
    doc = json.loads(resp.message)
    d = Decoder(fixture)
    if doc.get("available"):
        d.struct("message", fixture["message"], doc)
    else:
        d.struct("message", "failure", doc, fixture["failure"])
    out["schema_errors"] = d.errors
    out["message"] = doc
    # The other two methods answer UNIMPLEMENTED, as the Go checker's embedded server does.
    others = {}
    try:
        stub.GetResults(pb.ResultsRequest(service_name="sysmon-vm"), timeout=60)
        others["GetResults"] = "OK"
    except grpc.RpcError as e:
        others["GetResults"] = e.code().name
    try:
        for _ in stub.StreamResults(pb.ResultsRequest(service_name="sysmon-vm"), timeout=60):
            pass
        others["StreamResults"] = "OK"
    except grpc.RpcError as e:
        others["StreamResults"] = e.code().name
    # A method the service does not have at all.
    try:
        channel.unary_unary("/monitoring.AgentService/NoSuchMethod")(b"", timeout=60)
        others["NoSuchMethod"] = "OK"
    except grpc.RpcError as e:
        others["NoSuchMethod"] = e.code().name
    out["others"] = others
    print(json.dumps(out))


if __name__ == "__main__":
    main()
