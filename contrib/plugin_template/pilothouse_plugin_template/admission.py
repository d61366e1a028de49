"""``require-labels``: a validating admission plugin that refuses objects missing labels.

Enable it in the config::

    admission:
      plugins:
        - name: require-labels
          options: {labels: [team], kinds: [Deployment, Pod]}
"""

from __future__ import annotations

import dataclasses

from pilothouse.interfaces.admission import AdmissionPlugin, AdmissionRequest, Denied


def missing_labels(obj: dict, required: list[str]) -> list[str]:
    """The required label keys absent from ``obj``'s metadata.labels."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return [key for key in required if key not in labels]


class RequireLabels(AdmissionPlugin):
    """Deny CREATE and UPDATE of the configured kinds unless they carry every label."""

    @dataclasses.dataclass
    class Options:
        labels: list[str] = dataclasses.field(
            default_factory=lambda: ["team"], metadata={"help": "label keys every object needs"})
        kinds: list[str] = dataclasses.field(
            default_factory=list, metadata={"help": "kinds to check; empty means every kind"})

        def __post_init__(self):
            if not self.labels:
                raise ValueError("option 'labels' must name at least one label key")

    def __init__(self, options: Options):
        self.options = options

    async def validate(self, request: AdmissionRequest) -> Denied | None:
        if request.operation not in ("CREATE", "UPDATE") or request.object is None:
            return None
        if self.options.kinds and request.kind not in self.options.kinds:
            return None
        missing = missing_labels(request.object, self.options.labels)
        if not missing:
            return None
        return Denied(f"{request.kind} {request.name!r} is missing required label(s): "
                      f"{', '.join(missing)}", reason="Invalid", code=422,
                      causes=tuple((f"metadata.labels[{k}]", "Required value") for k in missing))
