"""Broadcast hooks of the template: a CLI command that checks manifests offline.

``pilothouse check-labels FILE... [--labels team,app]`` reports the objects of YAML manifests
that the ``require-labels`` admission plugin would refuse.
"""

from __future__ import annotations

import sys

import yaml

from pilothouse.hooks import hookimpl
from pilothouse_plugin_template.admission import missing_labels


def _check(args) -> int:
    required = [k for k in args.labels.split(",") if k]
    bad = 0
    for path in args.files:
        with open(path) as fh:
            for doc in yaml.safe_load_all(fh):
                if not isinstance(doc, dict):
                    continue
                missing = missing_labels(doc, required)
                if missing:
                    bad += 1
                    name = (doc.get("metadata") or {}).get("name", "?")
                    print(f"{path}: {doc.get('kind', '?')} {name}: missing {', '.join(missing)}")
    print(f"{bad} object(s) missing labels", file=sys.stderr)
    return 1 if bad else 0


@hookimpl
def pilothouse_add_commands(subparsers):
    parser = subparsers.add_parser("check-labels", help="check manifests for required labels "
                                   "(from pilothouse-plugin-template)")
    parser.add_argument("files", nargs="+")
    parser.add_argument("--labels", default="team", help="comma-separated label keys")
    parser.set_defaults(handler=_check)
