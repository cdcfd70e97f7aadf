#!/usr/bin/env python3
"""List a Twinset control plane's gRPC services through server reflection, speaking only
`grpc.reflection.v1alpha` (as several tools and older libraries do), with Python grpcio.

TLS as every Twinset client does it: the cluster CA is the only root trusted, and the
client certificate and key are the kubeconfig's (base64 PEM in
`certificate-authority-data`, `client-certificate-data`, `client-key-data`).

Prints one service per line (`service NAME`), then the methods of twinset.v1.Cluster as
reflection describes them (`method twinset.v1.Cluster/NAME`). With
--without-client-certificate it connects with the CA alone, which the server must refuse.
Exits 1 with `error: CODE: DETAILS` on stderr when a call fails.

    pip install -r requirements.txt   # grpcio==1.85.1 grpcio-reflection==1.85.1
    python3 grpc_reflection_v1alpha.py --kubeconfig ~/.twinset/config
"""

import argparse
import base64
import json
import sys

import grpc
from google.protobuf import descriptor_pb2

# Only the v1alpha stubs: the point of this script is a client that knows nothing newer.
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


def load_kubeconfig(path):
    """The server (HOST:PORT) and the CA, certificate and key (PEM bytes) of the
    kubeconfig's current context."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"{path}: not JSON (twinset writes its kubeconfig as JSON): {e}")
    contexts = {c["name"]: c["context"] for c in config.get("contexts", [])}
    current = config.get("current-context")
    if current not in contexts:
        raise SystemExit(f"{path}: current-context {current!r} is not among its contexts")
    context = contexts[current]
    clusters = {c["name"]: c["cluster"] for c in config.get("clusters", [])}
    users = {u["name"]: u["user"] for u in config.get("users", [])}
    cluster = clusters.get(context["cluster"])
    user = users.get(context["user"])
    if cluster is None or user is None:
        raise SystemExit(f"{path}: context {current!r} names a cluster or user it lacks")

    def field(obj, name):
        value = obj.get(name)
        if not value:
            raise SystemExit(f"{path}: {name} is missing (inline base64 PEM is needed)")
        return base64.b64decode(value)

    server = cluster["server"]
    if not server.startswith("https://"):
        raise SystemExit(f"{path}: server {server!r} is not https://HOST:PORT")
    return (
        server[len("https://"):].rstrip("/"),
        field(cluster, "certificate-authority-data"),
        field(user, "client-certificate-data"),
        field(user, "client-key-data"),
    )


def reflect(stub, **request):
    """One ServerReflectionInfo exchange: the single response to `request`."""
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(**request)]), timeout=30
    )
    response = next(iter(responses))
    if response.HasField("error_response"):
        err = response.error_response
        raise SystemExit(f"error: reflection refused {request}: {err.error_code} {err.error_message}")
    return response


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True, help="the admin kubeconfig")
    parser.add_argument(
        "--without-client-certificate",
        action="store_true",
        help="present no client certificate (the server must refuse)",
    )
    args = parser.parse_args()

    server, ca, cert, key = load_kubeconfig(args.kubeconfig)
    if args.without_client_certificate:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca)
    else:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )
    with grpc.secure_channel(server, credentials) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        try:
            listed = reflect(stub, list_services="")
            for service in listed.list_services_response.service:
                print(f"service {service.name}")
            found = reflect(stub, file_containing_symbol="twinset.v1.Cluster")
        except grpc.RpcError as e:
            print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    for raw in found.file_descriptor_response.file_descriptor_proto:
        file = descriptor_pb2.FileDescriptorProto.FromString(raw)
        for service in file.service:
            if f"{file.package}.{service.name}" != "twinset.v1.Cluster":
                continue
            for method in service.method:
                print(f"method twinset.v1.Cluster/{method.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
