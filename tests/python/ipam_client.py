#!/usr/bin/env python3
"""A gRPC client of the isthmus IPAM generated from proto/ipam.proto alone, in another language.

It proves the wire contract: service `ipam` with no proto package, the four methods, the field
numbers, and the error codes. Usage: ipam_client.py HOST:PORT [demo|check]
  demo   calls every method and prints the answers;
  check  also asserts the answers and the codes of bad requests (used by tests/python_client.rs).
"""
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc

PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")


def generated_modules():
    out = tempfile.mkdtemp(prefix="isthmus-pb-")
    args = ["protoc", f"-I{PROTO_DIR}", f"--python_out={out}", f"--grpc_python_out={out}", "ipam.proto"]
    if protoc.main(args) != 0:
        sys.exit("protoc failed on proto/ipam.proto")
    sys.path.insert(0, out)
    import ipam_pb2
    import ipam_pb2_grpc
    return ipam_pb2, ipam_pb2_grpc


def call(fn, req):
    try:
        return fn(req, timeout=5), None
    except grpc.RpcError as e:
        return None, e


def main():
    target, mode = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "demo")
    pb, pb_grpc = generated_modules()
    stub = pb_grpc.ipamStub(grpc.insecure_channel(target))
    calls = [
        ("MapEndpointIP(cluster-b, 10.0.3.4)   local pod", stub.MapEndpointIP, pb.MapRequest(clusterID="cluster-b", ip="10.0.3.4"), "10.7.3.4"),
        ("MapEndpointIP(cluster-b, 10.80.1.1)  pod of c", stub.MapEndpointIP, pb.MapRequest(clusterID="cluster-b", ip="10.80.1.1"), None),
        ("GetHomePodIP(cluster-b, 10.0.9.9)", stub.GetHomePodIP, pb.GetHomePodIPRequest(clusterID="cluster-b", ip="10.0.9.9"), "10.3.9.9"),
        ("BelongsToPodCIDR(10.0.200.1)", stub.BelongsToPodCIDR, pb.BelongsRequest(ip="10.0.200.1"), True),
        ("UnmapEndpointIP(cluster-b, 10.80.1.1)", stub.UnmapEndpointIP, pb.UnmapRequest(clusterID="cluster-b", ip="10.80.1.1"), None),
    ]
    failures = []
    for label, fn, req, want in calls:
        resp, err = call(fn, req)
        if err is not None:
            failures.append(f"{label}: {err.code()} {err.details()}")
            continue
        got = next(iter([getattr(resp, f) for f in ("ip", "homeIP", "belongs") if hasattr(resp, f)]), "{}")
        print(f"  {label:45} -> {got if got != '' else 'ok'}")
        if mode == "check" and want is not None and got != want:
            failures.append(f"{label}: got {got!r}, want {want!r}")
    bad = [
        (pb.MapRequest(clusterID="", ip="10.80.1.1"), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.MapRequest(clusterID="cluster-b", ip="nope"), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.MapRequest(clusterID="cluster-zz", ip="10.80.1.1"), grpc.StatusCode.NOT_FOUND),
    ]
    for req, code in bad:
        _, err = call(stub.MapEndpointIP, req)
        got = err.code() if err else "OK"
        print(f"  MapEndpointIP(clusterID={req.clusterID!r}, ip={req.ip!r}) -> {got}: {err.details() if err else ''}")
        if mode == "check" and got != code:
            failures.append(f"bad request {req}: got {got}, want {code}")
    if failures:
        sys.exit("FAILED:\n" + "\n".join(failures))
    print("python client: every method answered")


if __name__ == "__main__":
    main()
