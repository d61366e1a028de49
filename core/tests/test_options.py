"""Plugin option checking: names the plugin and the option, collects every problem."""

import dataclasses
from typing import Literal, Optional

from pilothouse._options import build_options, describe_options


@dataclasses.dataclass
class Opts:
    address: str
    members: list[str] = dataclasses.field(default_factory=list)
    timeout: float = 1.0
    retries: int = 3
    mode: Literal["fast", "safe"] = "safe"
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    tls: Optional[str] = None
    verbose: bool = dataclasses.field(default=False, metadata={"help": "log more"})


def test_valid_options_are_converted():
    opts, errors = build_options(Opts, {"address": "a", "timeout": 2, "members": ["x"],
                                        "mode": "fast", "tls": None}, "store plugin 'x'")
    assert errors == [] and opts.timeout == 2.0 and isinstance(opts.timeout, float)
    assert opts.members == ["x"] and opts.mode == "fast"


def test_every_bad_option_is_named():
    opts, errors = build_options(Opts, {"adress": "a", "retries": "3", "verbose": 1,
                                        "mode": "quick", "members": [1], "labels": {"a": 1}},
                                 "store plugin 'raft'")
    assert opts is None
    joined = "\n".join(errors)
    assert "store plugin 'raft': unknown option 'adress'; known options: address" in joined
    assert "option 'retries' must be integer, got '3'" in joined
    assert "option 'verbose' must be boolean, got 1" in joined
    assert "option 'mode' must be 'fast' or 'safe', got 'quick'" in joined
    assert "option 'members' must be list of string" in joined
    assert "option 'labels' must be mapping of string" in joined
    assert "option 'address' is required (string)" in joined
    assert len(errors) == 7


def test_plugins_without_options_reject_any():
    assert build_options(None, {}, "p")[1] == []
    assert build_options(None, {"x": 1}, "p")[1] == ["p: takes no options, but got x"]
    assert build_options(Opts, "nope", "p")[1] == ["p: options must be a mapping, got string"]


def test_post_init_errors_are_reported():
    @dataclasses.dataclass
    class Checked:
        size: int = 1

        def __post_init__(self):
            if self.size < 1:
                raise ValueError("size must be positive")
    assert build_options(Checked, {"size": 0}, "p")[1] == ["p: size must be positive"]


def test_describe_options():
    described = {d["name"]: d for d in describe_options(Opts)}
    assert described["verbose"] == {"name": "verbose", "type": "boolean", "default": False,
                                    "help": "log more"}
    assert described["address"]["default"] is None
