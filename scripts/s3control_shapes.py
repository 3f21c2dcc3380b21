#!/usr/bin/env python3
"""Writes functions/aws/src/s3control/shapes.json: the S3 Control job API's XML body shapes, taken
from botocore's s3control service model (the installed boto3's), without documentation.

Run with the project's venv: .venv/bin/python scripts/s3control_shapes.py
"""
import gzip, json, os, sys
import botocore

ROOTS = ["CreateJobRequest", "CreateJobResult", "DescribeJobResult", "ListJobsResult",
         "UpdateJobPriorityResult", "UpdateJobStatusResult", "GetJobTaggingResult",
         "PutJobTaggingRequest"]
KEPT = ("type", "members", "member", "key", "value", "locationName", "location", "flattened",
        "timestampFormat", "xmlNamespace", "shape", "xmlAttribute")

def main():
    base = os.path.join(os.path.dirname(botocore.__file__), "data", "s3control", "2018-08-20")
    path = os.path.join(base, "service-2.json")
    model = json.load(open(path)) if os.path.exists(path) else json.load(gzip.open(path + ".gz"))
    shapes, out, todo = model["shapes"], {}, list(ROOTS)
    def strip(node):
        return {k: (strip(v) if isinstance(v, dict) and k != "xmlNamespace" else v)
                for k, v in node.items() if k in KEPT}
    while todo:
        name = todo.pop()
        if name in out:
            continue
        shape = shapes[name]
        kept = {k: v for k, v in shape.items() if k in KEPT}
        if shape["type"] == "structure":
            kept["members"] = {m: strip(s) for m, s in shape["members"].items()
                               if s.get("location") is None}  # header/uri/query: not in the body
            todo += [s["shape"] for s in kept["members"].values()]
        elif shape["type"] == "list":
            kept["member"] = strip(shape["member"])
            todo.append(shape["member"]["shape"])
        elif shape["type"] == "map":
            kept["key"], kept["value"] = strip(shape["key"]), strip(shape["value"])
            todo += [shape["key"]["shape"], shape["value"]["shape"]]
        out[name] = kept
    out = {"botocore": botocore.__version__, "shapes": dict(sorted(out.items()))}
    target = os.path.join(os.path.dirname(__file__), "..", "functions", "aws", "src", "s3control", "shapes.json")
    with open(target, "w") as f:
        json.dump(out, f, indent=0, sort_keys=True)
        f.write("\n")
    print(f"{len(out['shapes'])} shapes -> {os.path.normpath(target)}", file=sys.stderr)

main()
