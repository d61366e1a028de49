"""Channel protocol messages, final Status objects, and the option parsers of
pilothouse.streaming."""

import pytest
from multidict import MultiDict

from pilothouse.streaming import ExecOptions, LogOptions, StreamingError, parse_ports
from pilothouse.streaming import channel as ch
from pilothouse.streaming.logs import parse_rfc3339


def test_binary_and_base64_messages():
    assert ch.encode_message(ch.V5, ch.STDOUT, b"hi") == b"\x01hi"
    assert ch.encode_message(ch.V4_BASE64, ch.STDERR, b"\xff") == "2/w=="
    assert ch.decode_message(ch.V4, b"\x00data") == ch.ChannelMessage(0, b"data")
    assert ch.decode_message(ch.V4_BASE64, "0aGk=") == ch.ChannelMessage(0, b"hi")
    assert ch.decode_message(ch.V4, b"") is None


def test_v5_close_signal_only_in_v5():
    assert ch.decode_message(ch.V5, b"\xff\x00") == ch.ChannelMessage(0, b"", True)
    # in v4, 255 is just a channel number
    assert ch.decode_message(ch.V4, b"\xff\x00") == ch.ChannelMessage(255, b"\x00")


def test_protocol_choice_follows_the_server_preference():
    assert ch.choose_protocol(["v4.channel.k8s.io", "v5.channel.k8s.io"],
                              ch.REMOTE_COMMAND_PROTOCOLS) == ch.V5
    assert ch.choose_protocol(["v5.channel.k8s.io", "v4.channel.k8s.io"],
                              ch.PORT_FORWARD_PROTOCOLS) == ch.V4
    assert ch.choose_protocol(["channel.k8s.io"], ch.REMOTE_COMMAND_PROTOCOLS) is None
    headers = MultiDict([("Sec-WebSocket-Protocol", "a, b"), ("Sec-WebSocket-Protocol", "c")])
    assert ch.offered_protocols(headers) == ["a", "b", "c"]


def test_final_statuses():
    assert ch.exit_status(0) == {"metadata": {}, "status": "Success"}
    failed = ch.exit_status(3, ["sh", "-c", "exit 3"])
    assert failed["reason"] == "NonZeroExitCode"
    assert failed["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert failed["message"] == ("command terminated with non-zero exit code: error executing "
                                 "command [sh -c exit 3], exit code 3")
    err = StreamingError("container not found", 404).to_status()
    assert (err["reason"], err["code"], err["status"]) == ("NotFound", 404, "Failure")


def test_exec_options_from_the_api_query():
    q = MultiDict([("command", "sh"), ("command", "-c"), ("command", "ls /"),
                   ("container", "main"), ("stdin", "true"), ("stderr", "1"), ("tty", "f")])
    opts = ExecOptions.from_query(q)
    assert opts == ExecOptions(("sh", "-c", "ls /"), "main", stdin=True, stdout=True,
                               stderr=True, tty=False)
    assert ExecOptions.from_query(MultiDict(stdout="false")).stdout is False
    with pytest.raises(StreamingError):
        ExecOptions.from_query(MultiDict(stdin="yes"))


def test_exec_options_node_query_round_trip():
    opts = ExecOptions(("cat",), "c", stdin=True, stdout=True, stderr=False, tty=True)
    query = MultiDict(opts.to_node_query())
    assert query.getall("command") == ["cat"] and query["input"] == "1"
    assert "error" not in query
    assert ExecOptions.from_node_query(query, container="c") == opts


def test_exec_options_validation():
    with pytest.raises(StreamingError, match="at least 1 command"):
        ExecOptions((), stdout=True).validate(exec_=True)
    ExecOptions((), stdout=True).validate(exec_=False)  # attach needs no command
    with pytest.raises(StreamingError, match="stdin, stdout, stderr"):
        ExecOptions(("ls",), stdout=False).validate(exec_=True)


def test_log_options_parse_validate_and_pass_through():
    q = MultiDict(follow="true", tailLines="10", limitBytes="5", timestamps="1",
                  sinceTime="2024-05-01T10:00:00.123456789Z", container="c")
    opts = LogOptions.from_query(q)
    assert (opts.container, opts.follow, opts.tail_lines, opts.limit_bytes,
            opts.timestamps) == ("c", True, 10, 5, True)
    assert opts.problems() == []
    assert opts.since.isoformat() == "2024-05-01T10:00:00.123456+00:00"
    assert dict(opts.to_query()) == {"follow": "true", "timestamps": "true",
                                     "tailLines": "10", "limitBytes": "5",
                                     "sinceTime": "2024-05-01T10:00:00.123456789Z"}
    bad = LogOptions(tail_lines=-1, limit_bytes=0, since_seconds=0, since_time="x")
    assert [f for f, _, _ in bad.problems()] == ["tailLines", "limitBytes", "", "sinceSeconds"]
    with pytest.raises(StreamingError):
        LogOptions.from_query(MultiDict(tailLines="ten"))
    with pytest.raises(StreamingError):
        LogOptions.from_query(MultiDict(sinceTime="2024-05-01"))


def test_rfc3339():
    assert parse_rfc3339("2024-05-01T10:00:00+02:00").utcoffset().total_seconds() == 7200
    for bad in ("2024-05-01T10:00:00", "yesterday", "2024-05-01"):
        with pytest.raises(ValueError):
            parse_rfc3339(bad)


def test_ports():
    assert parse_ports(MultiDict([("ports", "80,8080"), ("ports", "9090")])) == \
        [80, 8080, 9090]
    assert parse_ports(MultiDict([("port", "80"), ("port", "81")])) == [80, 81]
    assert parse_ports(MultiDict()) == []
    for bad in ("0", "65536", "http"):
        with pytest.raises(StreamingError):
            parse_ports(MultiDict(ports=bad))
