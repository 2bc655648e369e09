#!/usr/bin/env python3
"""Trims the Compute Engine discovery document to the methods gantry's gce provider calls and
every schema they reference (transitively), so the lab's emulator can vendor it.

Usage: python3 lab/specs/gce/trim.py ../shared/specs/gce/compute.v1.json lab/specs/gce/compute.v1.json
"""
import json
import sys

# resource -> methods the provider (and the lab's conformance test) use.
METHODS = {
    "regions": ["get"],
    "zones": ["get", "list"],
    "machineTypes": ["get"],
    "networks": ["insert", "get", "list", "delete"],
    "subnetworks": ["insert", "get", "list", "delete"],
    "firewalls": ["insert", "get", "list", "delete"],
    "images": ["get", "getFromFamily"],
    "instances": ["insert", "get", "list", "aggregatedList", "delete", "start", "stop"],
    "zoneOperations": ["get", "wait"],
    "regionOperations": ["get", "wait"],
    "globalOperations": ["get", "wait"],
}

# Top-level keys kept as they are (the rest, e.g. icons and auth scopes, is not needed).
KEEP = ["kind", "discoveryVersion", "id", "name", "version", "revision", "title", "description",
        "ownerDomain", "ownerName", "documentationLink", "protocol", "rootUrl", "servicePath",
        "basePath", "baseUrl", "batchPath", "parameters"]


def refs(node, found):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                found.add(value)
            else:
                refs(value, found)
    elif isinstance(node, list):
        for value in node:
            refs(value, found)


def main(source, target):
    with open(source) as f:
        doc = json.load(f)
    out = {key: doc[key] for key in KEEP if key in doc}
    out["resources"] = {}
    wanted = set()
    for resource, methods in METHODS.items():
        kept = {name: doc["resources"][resource]["methods"][name] for name in methods}
        out["resources"][resource] = {"methods": kept}
        refs(kept, wanted)
    schemas = {}
    todo = sorted(wanted)
    while todo:
        name = todo.pop()
        if name in schemas:
            continue
        schemas[name] = doc["schemas"][name]
        more = set()
        refs(schemas[name], more)
        todo.extend(sorted(more - set(schemas)))
    out["schemas"] = dict(sorted(schemas.items()))
    with open(target, "w") as f:
        json.dump(out, f, indent=1, sort_keys=False)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
