#!/usr/bin/env python3
"""The official Python `kubernetes` client against Twinset's Kubernetes REST API: list
every pod, scale a StatefulSet through its `scale` subresource, and watch the set until
the new replicas are ready.

The client reads the admin kubeconfig as it reads any other (server, CA and client
certificate inline). Output, one fact a line:

    node NAME READY                     every node (True/False/Unknown)
    pod NAMESPACE/NAME PHASE            every pod, before the scale
    scaled NAMESPACE/NAME to N          the Scale the server answered
    event TYPE NAMESPACE/NAME desired=D replicas=R ready=Y   each watch event of the set
    ready NAMESPACE/NAME N/N            the watch saw all N replicas ready
    pod NAMESPACE/NAME PHASE            every pod, after

The watch starts from the resourceVersion of a list made before the scale, so it sees
the scale-up from its first change on; it stops once the set is ready. Exits 1 with
`error: ...` on stderr when the API refuses a call or the set is not ready in time.

    pip install -r requirements.txt   # kubernetes==37.0.2
    python3 kube_client.py --kubeconfig ~/.twinset/config -n default --statefulset web --replicas 3
"""

import argparse
import sys
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


def print_pods(core):
    for pod in core.list_pod_for_all_namespaces().items:
        print(f"pod {pod.metadata.namespace}/{pod.metadata.name} {pod.status.phase}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True, help="the admin kubeconfig")
    parser.add_argument("-n", "--namespace", required=True, help="the StatefulSet's namespace")
    parser.add_argument("--statefulset", required=True, help="the StatefulSet to scale")
    parser.add_argument("--replicas", required=True, type=int, help="the replicas to scale to")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for the replicas to be ready"
    )
    args = parser.parse_args()
    ns, name, want = args.namespace, args.statefulset, args.replicas

    config.load_kube_config(config_file=args.kubeconfig)
    core = client.CoreV1Api()
    apps = client.AppsV1Api()
    try:
        for node in core.list_node().items:
            ready = next(
                (c.status for c in node.status.conditions or [] if c.type == "Ready"), "Unknown"
            )
            print(f"node {node.metadata.name} {ready}")
        print_pods(core)
        # The revision to watch from: every change of the set after this list is seen.
        listed = apps.list_namespaced_stateful_set(ns, field_selector=f"metadata.name={name}")
        if not listed.items:
            print(f"error: statefulset {ns}/{name} not found", file=sys.stderr)
            return 1
        since = listed.metadata.resource_version

        # `kubectl scale` sends this merge patch; the client's default for a PATCH would be
        # a JSON patch (a list of operations), so the content type is named.
        scale = apps.patch_namespaced_stateful_set_scale(
            name, ns, {"spec": {"replicas": want}}, _content_type="application/merge-patch+json"
        )
        print(f"scaled {ns}/{name} to {scale.spec.replicas}")

        deadline = time.monotonic() + args.timeout
        w = watch.Watch()
        ready = False
        # The read timeout bounds each wait for the next event, so a silent stream fails.
        for event in w.stream(
            apps.list_namespaced_stateful_set,
            ns,
            field_selector=f"metadata.name={name}",
            resource_version=since,
            _request_timeout=args.timeout,
        ):
            sts = event["object"]
            status = sts.status
            replicas = (status.replicas or 0) if status else 0
            have = (status.ready_replicas or 0) if status else 0
            print(
                f"event {event['type']} {ns}/{sts.metadata.name} "
                f"desired={sts.spec.replicas} replicas={replicas} ready={have}"
            )
            if sts.spec.replicas == want and replicas == want and have == want:
                ready = True
                w.stop()
            elif time.monotonic() > deadline:
                w.stop()
        if not ready:
            print(
                f"error: statefulset {ns}/{name} not ready with {want} replicas within {args.timeout} s",
                file=sys.stderr,
            )
            return 1
        print(f"ready {ns}/{name} {want}/{want}")
        print_pods(core)
    except ApiException as e:
        print(f"error: {e.status} {e.reason}: {e.body}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
