"""Least-privilege check of the SAM template's S3 grants, on the template as `sam deploy` uploads
it (expanded by the pinned SAM translator, so the generated IAM roles are what is checked).

Fails when:
  - an Allow statement grants a write or delete action (s3:Put*, s3:Delete*, s3:Abort*,
    s3:Restore*, s3:Replicate*, s3:*, *, or a wildcard covering one of them) on a resource built
    from a source (read-only) bucket parameter, or on a literal resource whose bucket is a
    wildcard (that covers the sources too); an Allow with NotAction on such a resource;
  - s3:DeleteObjectVersion is granted on anything but the finalizer's destination buckets (backup
    retention) and the worker's operation buckets (delete jobs naming versions);
  - a write bucket parameter admits "*" or another wildcard (its AllowedPattern), or its default
    does not match its own pattern;
  - a parameter whose name ends in BucketNames is not classified below, or a classified one is
    missing or used by no statement (the check would pass vacuously);
  - a samconfig.toml parameter override names a parameter the template does not have, or gives a
    write parameter a wildcard;
  - lambda:InvokeFunction (or a wildcard covering it) is allowed on anything but the functions of
    InvokeFunctionArns (LambdaInvoke jobs' functions), or that parameter admits a wildcard.
Statements under Fn::If are checked in both branches.

Usage:
  check_iam.py TEMPLATE [--samconfig infra/samconfig.toml]   check (YAML is expanded first)
  check_iam.py --expand TEMPLATE OUT.json                      only expand (for cfn-lint)
  check_iam.py --self-test                                     the bad fixtures must be refused
Runs with the pinned .venv-tools interpreter (aws-sam-translator, PyYAML), see lint-template.sh.
"""

import fnmatch
import json
import os
import re
import shlex
import sys

# Bucket parameters by role. A new *BucketNames parameter must be added here.
SOURCE_PARAMS = {"SourceBucketNames"}
WRITE_PARAMS = {"DestinationBucketNames", "ReportBucketNames", "OperationBucketNames"}
# Version deletes: only these (expanded) roles, each on only its parameter's buckets.
VERSION_DELETES = {
    "DestinationBucketNames": {"FinalizerFunctionRole"},  # backup retention
    "OperationBucketNames": {"WorkerFunctionRole"},  # delete jobs that name versions
}
VERSION_DELETE_PARAMS = set(VERSION_DELETES)

WRITE_PATTERNS = ["s3:put*", "s3:delete*", "s3:abort*", "s3:restore*", "s3:replicate*"]
# Concrete writes, so a wildcard action such as "s3:*Object" or "s3:P*" is caught too.
KNOWN_WRITES = [
    "s3:putobject", "s3:putobjectacl", "s3:putobjecttagging", "s3:putobjectversiontagging",
    "s3:putobjectretention", "s3:putobjectlegalhold", "s3:deleteobject", "s3:deleteobjectversion",
    "s3:deleteobjecttagging", "s3:deleteobjectversiontagging", "s3:abortmultipartupload",
    "s3:restoreobject", "s3:replicateobject", "s3:replicatedelete", "s3:replicatetags",
    "s3:putbucketpolicy", "s3:deletebucket", "s3:deletebucketpolicy", "s3:putlifecycleconfiguration",
    "s3:putbucketversioning", "s3:bypassgovernanceretention",
]
WILDCARD_PROBES = ["*", "my-*", "?", "bucket*", "arn:aws:s3:::*"]
# The functions LambdaInvoke jobs may invoke: named, never a wildcard.
INVOKE_PARAMS = {"InvokeFunctionArns"}
INVOKE_WILDCARD_PROBES = ["*", "arn:aws:lambda:*", "arn:aws:lambda:us-east-1:123456789012:function:*",
                          "arn:aws:lambda:us-east-1:123456789012:function:f:*",
                          "arn:aws:lambda:*:123456789012:function:f"]

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")


def expand(path):
    """The template as `sam deploy` uploads it after `sam build` (offline, no IAM look-ups)."""
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    class NoManagedPolicies:
        """The template names no managed policies by name, so nothing is looked up in IAM."""

        def load(self):
            return {}

    with open(path) as f:
        template = yaml_parse(f.read())
    if "Transform" not in template:
        return template
    # `sam build` replaces local CodeUri paths with the S3 location of the built artifact.
    for resource in (template.get("Resources") or {}).values():
        props = resource.get("Properties") or {}
        code = props.get("CodeUri")
        if resource.get("Type") == "AWS::Serverless::Function" and isinstance(code, str) \
                and not code.startswith("s3://"):
            binary = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary", "function")
            props["CodeUri"] = f"s3://sam-build-artifacts/{binary}.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    try:
        return transform(template, {}, NoManagedPolicies())
    except InvalidDocumentException as e:
        raise SystemExit("SAM: " + "; ".join(cause.message for cause in e.causes))


def load(path):
    if path.endswith(".json"):
        with open(path) as f:
            return json.load(f)
    return expand(path)


def as_list(value):
    return value if isinstance(value, list) else [value]


def refs(node):
    """Parameter and resource names a value is built from (Ref and ${Name} in Fn::Sub)."""
    found = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                if isinstance(text, str):
                    found.update(n.split(".")[0] for n in re.findall(r"\$\{([^}!]+)\}", text))
                found |= refs(value)
            else:
                found |= refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= refs(value)
    return found


def is_write(action):
    action = action.lower()
    if any(fnmatch.fnmatchcase(action, p) for p in WRITE_PATTERNS):
        return True
    return ("*" in action or "?" in action) and any(
        fnmatch.fnmatchcase(w, action) for w in KNOWN_WRITES)


def covers(action, concrete):
    return fnmatch.fnmatchcase(concrete, action.lower())


def wildcard_bucket(resource):
    """A literal resource whose bucket part is a wildcard (every bucket, sources included)."""
    if not isinstance(resource, str):
        return False
    if resource == "*":
        return True
    m = re.match(r"arn:[^:]*:s3:::([^/]*)", resource)
    return bool(m) and ("*" in m.group(1) or "?" in m.group(1))


def branches(node):
    """`node`, or what each branch of an Fn::If may put in its place (nested ones too)."""
    if isinstance(node, dict) and list(node) == ["Fn::If"] and isinstance(node["Fn::If"], list) \
            and len(node["Fn::If"]) == 3:
        for branch in node["Fn::If"][1:]:
            yield from branches(branch)
    elif not (isinstance(node, dict) and node == {"Ref": "AWS::NoValue"}):
        yield node


def statements(template):
    """(role, sid, statement) of every identity policy statement, in both branches of an Fn::If."""
    for name, resource in (template.get("Resources") or {}).items():
        kind = resource.get("Type")
        props = resource.get("Properties") or {}
        docs = []
        policies = [p for policy in props.get("Policies") or [] for p in branches(policy)]
        if kind == "AWS::IAM::Role":
            docs = [p.get("PolicyDocument") for p in policies if isinstance(p, dict)]
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            docs = [props.get("PolicyDocument")]
        elif kind == "AWS::Serverless::Function":
            # An unexpanded template: inline statements under Policies.
            docs = [p for p in policies if isinstance(p, dict) and "Statement" in p]
        for doc in docs:
            for doc in branches(doc):
                for i, statement in enumerate(as_list((doc or {}).get("Statement") or [])):
                    for statement in branches(statement):
                        yield name, statement.get("Sid", f"#{i}"), statement


def check_parameters(template, problems):
    params = template.get("Parameters") or {}
    for name in params:
        if name.endswith("BucketNames") and name not in SOURCE_PARAMS | WRITE_PARAMS:
            problems.append(f"parameter {name}: a bucket parameter check_iam.py does not classify "
                            "(add it to SOURCE_PARAMS or WRITE_PARAMS)")
    for name in sorted(SOURCE_PARAMS | WRITE_PARAMS):
        if name not in params:
            problems.append(f"parameter {name}: missing from the template")
    for name in sorted(WRITE_PARAMS & params.keys()):
        check_pattern(name, params[name], "write", WILDCARD_PROBES, problems)
    for name in sorted(INVOKE_PARAMS & params.keys()):
        check_pattern(name, params[name], "function", INVOKE_WILDCARD_PROBES, problems)


def check_pattern(name, spec, kind, probes, problems):
    """A parameter that names what may be written or invoked: its AllowedPattern must refuse
    every wildcard probe and accept its own default."""
    pattern = spec.get("AllowedPattern")
    if not pattern:
        problems.append(f"parameter {name}: a {kind} parameter without AllowedPattern admits \"*\"")
        return
    for probe in probes:
        if re.fullmatch(pattern, probe):
            problems.append(f"parameter {name}: AllowedPattern {pattern!r} admits {probe!r}")
    default = spec.get("Default")
    if default is not None:
        for value in str(default).split(","):
            if not re.fullmatch(pattern, value.strip()):
                problems.append(f"parameter {name}: default {value!r} does not match its AllowedPattern")


def getatts(node):
    """Resource names a value takes attributes of (Fn::GetAtt)."""
    found = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Fn::GetAtt":
                name = value[0] if isinstance(value, list) else str(value).split(".")[0]
                if isinstance(name, str):
                    found.add(name)
            found |= getatts(value)
    elif isinstance(node, list):
        for value in node:
            found |= getatts(value)
    return found


def check_statements(template, problems):
    used = set()
    own_functions = {name for name, resource in (template.get("Resources") or {}).items()
                     if resource.get("Type") in ("AWS::Lambda::Function", "AWS::Serverless::Function")}
    for role, sid, statement in statements(template):
        if statement.get("Effect") != "Allow":
            continue
        where = f"{role} statement {sid}"
        actions = [a for a in as_list(statement.get("Action") or []) if isinstance(a, str)]
        resources = as_list(statement.get("Resource") or [])
        for resource in resources:
            built_from = refs(resource)
            used |= built_from
            source = sorted(built_from & SOURCE_PARAMS)
            writes = sorted(a for a in actions if is_write(a))
            if source and writes:
                problems.append(f"{where}: {', '.join(writes)} on buckets of {', '.join(source)} "
                                "(source buckets are read-only)")
            if source and "NotAction" in statement:
                problems.append(f"{where}: Allow with NotAction on buckets of {', '.join(source)} "
                                "grants writes on source buckets")
            if wildcard_bucket(resource) and (writes or "NotAction" in statement):
                problems.append(f"{where}: {', '.join(writes) or 'NotAction'} on {resource!r}, "
                                "which covers every bucket, sources included")
            invokes = [a for a in actions if covers(a, "lambda:invokefunction")]
            # The template's own functions (the planner's schedule), or the jobs' functions.
            invocable = INVOKE_PARAMS | own_functions
            named = built_from | getatts(resource)
            if invokes and (not named or named - invocable):
                target = ", ".join(sorted(named - invocable)) or repr(resource)
                problems.append(f"{where}: {', '.join(invokes)} on {target}; jobs invoke only the "
                                f"functions of {', '.join(sorted(INVOKE_PARAMS))}")
            version_deletes = [a for a in actions if covers(a, "s3:deleteobjectversion")]
            if version_deletes:
                outside = sorted(built_from & (SOURCE_PARAMS | WRITE_PARAMS) - VERSION_DELETE_PARAMS)
                if outside or wildcard_bucket(resource):
                    target = ", ".join(outside) if outside else repr(resource)
                    problems.append(f"{where}: {', '.join(version_deletes)} on "
                                    f"{target}; version deletes are for "
                                    f"{', '.join(sorted(VERSION_DELETE_PARAMS))} only")
                for param in sorted(built_from & VERSION_DELETE_PARAMS):
                    roles = VERSION_DELETES[param]
                    if role not in roles:
                        problems.append(f"{where}: {', '.join(version_deletes)} outside "
                                        f"{', '.join(sorted(roles))} on {param}")
    for name in sorted((SOURCE_PARAMS | WRITE_PARAMS) & (template.get("Parameters") or {}).keys()):
        if name not in used:
            problems.append(f"parameter {name}: used by no policy statement, so nothing was checked")


def samconfig_overrides(path):
    import tomllib

    with open(path, "rb") as f:
        config = tomllib.load(f)
    for env, commands in config.items():
        if not isinstance(commands, dict):
            continue
        overrides = ((commands.get("deploy") or {}).get("parameters") or {}).get("parameter_overrides")
        if isinstance(overrides, list):
            overrides = " ".join(overrides)
        if overrides:
            for pair in shlex.split(overrides):
                key, _, value = pair.partition("=")
                yield env, key, value


def check_samconfig(template, path, problems):
    params = template.get("Parameters") or {}
    for env, key, value in samconfig_overrides(path):
        if key not in params:
            problems.append(f"{path} [{env}]: override of {key}, which the template does not have")
        elif key in WRITE_PARAMS and ("*" in value or "?" in value):
            problems.append(f"{path} [{env}]: {key}={value!r} has a wildcard; write buckets are named")


def check(template, samconfig=None):
    problems = []
    check_parameters(template, problems)
    check_statements(template, problems)
    if samconfig:
        check_samconfig(template, samconfig, problems)
    return problems


def self_test():
    """The bad fixture must be refused for each planted fault; the good one must pass."""
    bad = check(load(os.path.join(FIXTURES, "iam-bad-template.yaml")),
                os.path.join(FIXTURES, "iam-bad-samconfig.toml"))
    expected = [
        "SourceWrite: s3:PutObject on buckets of SourceBucketNames",
        "SourceWildcardAction: s3:* on buckets of SourceBucketNames",
        "SourceGlob: s3:*Object on buckets of SourceBucketNames",
        "EveryBucket: s3:DeleteObject on 'arn:aws:s3:::*/*'",
        "ReportVersionDeletes: s3:DeleteObjectVersion on ReportBucketNames",
        "WorkerFunctionRole statement DestinationVersionDeletes: s3:DeleteObjectVersion outside",
        "ApiFunctionRole statement OperationVersionDeletes: s3:DeleteObjectVersion outside WorkerFunctionRole",
        "parameter DestinationBucketNames: a write parameter without AllowedPattern",
        "parameter ReportBucketNames: AllowedPattern '.+' admits '*'",
        "parameter ArchiveBucketNames: a bucket parameter check_iam.py does not classify",
        "override of DataBucketNames, which the template does not have",
        "ReportBucketNames='*' has a wildcard",
        "HiddenSourceWrite: s3:PutObject on buckets of SourceBucketNames",
        "InvokeEverything: lambda:InvokeFunction on '*'",
        "InvokeOtherFunctions: lambda:* on ReportBucketNames",
        "parameter InvokeFunctionArns: AllowedPattern 'arn:aws:lambda:.+' admits",
    ]
    missing = [e for e in expected if not any(e in p for p in bad)]
    good = check(load(os.path.join(FIXTURES, "iam-good-template.yaml")))
    ok = not missing and not good
    for e in missing:
        print(f"self-test: the bad fixture was not refused for: {e}", file=sys.stderr)
    for p in good:
        print(f"self-test: the good fixture was refused: {p}", file=sys.stderr)
    print(f"check_iam self-test: {'OK' if ok else 'FAILED'} "
          f"({len(bad)} problems found in the bad fixture, {len(good)} in the good one)")
    return ok


def main(argv):
    if argv[:1] == ["--self-test"]:
        return 0 if self_test() else 1
    if argv[:1] == ["--expand"] and len(argv) == 3:
        with open(argv[2], "w") as f:
            json.dump(expand(argv[1]), f, indent=1)
        return 0
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    samconfig = None
    if len(argv) == 3 and argv[1] == "--samconfig":
        samconfig = argv[2]
    elif len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    problems = check(load(argv[0]), samconfig)
    for p in problems:
        print(f"IAM: {p}", file=sys.stderr)
    if problems:
        print(f"check_iam: {argv[0]}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"check_iam: {argv[0]}: source buckets read-only, write buckets named, "
          "version deletes only by the finalizer on destinations and the worker on operation buckets, "
          "jobs' functions named")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
