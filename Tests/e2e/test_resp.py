"""Unit tests of tandem_e2e/resp.py, the repository's one RESP2 client (the end-to-end tests and the benchmark scripts
of benchmarks/redis-scripts use it).

- The parser alone, on byte strings: every RESP2 reply type (simple strings, errors, integers, bulk strings with
  CRLF, NUL and non-UTF-8 bytes inside, empty and null bulk strings, empty, null and nested arrays, errors inside
  arrays), fed whole, split at every offset, split at every pair of offsets, and byte by byte; what is not RESP2.
- The encoder: the exact bytes of a command, and the parser reads them back.
- A connection to a real `redis-server` on a free loopback port: each reply type as Redis itself sends it, a
  pipeline of a thousand commands, an error in the middle of a pipeline, a large value read in many pieces, a
  subscriber, and a server that closes the connection mid-reply.

Needs: `redis-server` on PATH. Run: python3 -m pytest -q Tests/e2e/test_resp.py
"""

from __future__ import annotations

import socket
import threading
from typing import Any, Iterator

import pytest

from tandem_e2e.nodes import Cluster
from tandem_e2e.processes import LOOPBACK
from tandem_e2e.redis_server import RedisServer
from tandem_e2e.resp import (
    INCOMPLETE,
    ProtocolError,
    RedisConnection,
    RedisError,
    RespParser,
    encode_command,
    encode_commands,
    redis_command,
)


def plain(reply: Any) -> Any:
    """A reply with its error values replaced by ("error", message), which compare by value."""
    if isinstance(reply, RedisError):
        return ("error", str(reply))
    if isinstance(reply, list):
        return [plain(item) for item in reply]
    return reply


def pop_all(parser: RespParser) -> list[Any]:
    replies = []
    while (reply := parser.pop()) is not INCOMPLETE:
        replies.append(plain(reply))
    return replies


# --------------------------------------------------------------------------------------------------------------
# The parser alone

WIRE = (
    b"+OK\r\n"
    b"+\r\n"
    b"-ERR unknown command 'NOPE'\r\n"
    b":0\r\n"
    b":-42\r\n"
    b":9223372036854775807\r\n"
    b"$5\r\nhello\r\n"
    b"$0\r\n\r\n"
    b"$-1\r\n"
    b"$6\r\na\r\n\x00\xffb\r\n"
    b"$12\r\n\xe5\xb1\xb1\xe7\x94\xb0\xe5\xa4\xaa\xe9\x83\x8e\r\n"
    b"*0\r\n"
    b"*-1\r\n"
    b"*2\r\n$1\r\nx\r\n:7\r\n"
    b"*4\r\n:1\r\n*3\r\n$1\r\ny\r\n*0\r\n*-1\r\n-WRONGTYPE nested\r\n$-1\r\n"
    b"*1\r\n*1\r\n*1\r\n+deep\r\n"
    b"+after\r\n"
)

EXPECTED = [
    "OK",
    "",
    ("error", "ERR unknown command 'NOPE'"),
    0,
    -42,
    9223372036854775807,
    b"hello",
    b"",
    None,
    b"a\r\n\x00\xffb",
    "山田太郎".encode(),
    [],
    None,
    [b"x", 7],
    [1, [b"y", [], None], ("error", "WRONGTYPE nested"), None],
    [[["deep"]]],
    "after",
]


def test_every_reply_type_fed_whole() -> None:
    parser = RespParser()
    parser.feed(WIRE)
    assert pop_all(parser) == EXPECTED
    assert parser.pending() == 0


def test_every_split_of_the_bytes_gives_the_same_replies() -> None:
    for cut in range(len(WIRE) + 1):
        parser = RespParser()
        parser.feed(WIRE[:cut])
        replies = pop_all(parser)
        assert replies == EXPECTED[:len(replies)], f"cut at {cut}"
        parser.feed(WIRE[cut:])
        replies += pop_all(parser)
        assert replies == EXPECTED, f"cut at {cut}"
        assert parser.pending() == 0


def test_every_two_cuts_give_the_same_replies() -> None:
    for first in range(len(WIRE) + 1):
        for second in range(first, len(WIRE) + 1):
            parser = RespParser()
            replies = []
            for piece in (WIRE[:first], WIRE[first:second], WIRE[second:]):
                parser.feed(piece)
                replies += pop_all(parser)
            assert replies == EXPECTED, f"cuts at {first} and {second}"


def test_byte_by_byte_a_reply_is_incomplete_until_its_last_byte() -> None:
    parser = RespParser()
    replies = []
    for index in range(len(WIRE)):
        parser.feed(WIRE[index:index + 1])
        replies += pop_all(parser)
    assert replies == EXPECTED
    # One reply: nothing comes out before its final LF.
    reply = b"*2\r\n$3\r\nabc\r\n:1\r\n"
    parser = RespParser()
    for index in range(len(reply) - 1):
        parser.feed(reply[index:index + 1])
        assert parser.pop() is INCOMPLETE, index
    parser.feed(reply[-1:])
    assert parser.pop() == [b"abc", 1]
    assert parser.pop() is INCOMPLETE


def test_decode_gives_bulk_strings_as_text() -> None:
    parser = RespParser(decode=True)
    parser.feed(b"*3\r\n$12\r\n\xe5\xb1\xb1\xe7\x94\xb0\xe5\xa4\xaa\xe9\x83\x8e\r\n$2\r\n\xffa\r\n$-1\r\n+OK\r\n")
    assert parser.pop() == ["山田太郎", "\ufffda", None]
    assert parser.pop() == "OK"


def test_an_error_is_a_value_not_raised() -> None:
    parser = RespParser()
    parser.feed(b"-ERR boom\r\n")
    error = parser.pop()
    assert isinstance(error, RedisError) and str(error) == "ERR boom"


@pytest.mark.parametrize("wire", [
    b"?what\r\n",  # no such type
    b":12x\r\n",  # not an integer
    b"$abc\r\n",  # not a length
    b"$-2\r\n",  # a negative length other than -1
    b"*-5\r\n",
    b"$3\r\nabcd\r\n",  # the data is longer than its length
    b"*2\r\n:1\r\n!\r\n",  # a bad item inside an array
])
def test_what_is_not_resp2_is_a_protocol_error(wire: bytes) -> None:
    parser = RespParser()
    parser.feed(wire)
    with pytest.raises(ProtocolError):
        parser.pop()


# --------------------------------------------------------------------------------------------------------------
# The encoder


def test_a_command_is_an_array_of_bulk_strings() -> None:
    assert encode_command("SET", "キー", b"a\r\n\x00", 12, -1.5) == (
        b"*5\r\n$3\r\nSET\r\n$6\r\n\xe3\x82\xad\xe3\x83\xbc\r\n$4\r\na\r\n\x00\r\n$2\r\n12\r\n$4\r\n-1.5\r\n"
    )
    assert encode_command() == b"*0\r\n"
    assert encode_commands([["PING"], ["GET", "k"]]) == b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"


def test_the_parser_reads_an_encoded_command_back() -> None:
    parser = RespParser()
    parser.feed(encode_command("EVAL", "return 1", 0, b"\xff\r\n"))
    assert parser.pop() == [b"EVAL", b"return 1", b"0", b"\xff\r\n"]


# --------------------------------------------------------------------------------------------------------------
# Against a real redis-server


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with Cluster(tmp_path_factory.mktemp("resp")) as cluster:
        yield cluster.redis()


@pytest.fixture
def connection(redis: RedisServer) -> Iterator[RedisConnection]:
    with RedisConnection(redis.port) as opened:
        opened.command("FLUSHALL")
        yield opened


def test_simple_strings_integers_and_bulk_strings(connection: RedisConnection) -> None:
    assert connection.command("PING") == "PONG"
    assert connection.command("SET", "name", "山田太郎") == "OK"
    assert connection.command("GET", "name") == "山田太郎"
    assert connection.command("GET", "missing") is None
    assert connection.command("SET", "empty", "") == "OK"
    assert connection.command("GET", "empty") == ""
    assert connection.command("INCR", "n") == 1
    assert connection.command("DECRBY", "n", 10) == -9
    assert connection.command("TYPE", "n") == "string"


def test_bytes_come_back_exactly_without_decode(redis: RedisServer) -> None:
    value = bytes(range(256)) + b"\r\n$3\r\n*1\r\n"
    with RedisConnection(redis.port, decode=False) as connection:
        assert connection.command("SET", b"binary", value) == "OK"
        assert connection.command("GET", "binary") == value
        assert connection.command("ECHO", "山") == "山".encode()
    with RedisConnection(redis.port) as connection:
        assert connection.command("GET", "binary") == value.decode("utf-8", errors="replace")


def test_an_error_reply_is_raised_by_command(connection: RedisConnection) -> None:
    connection.command("SET", "text", "abc")
    with pytest.raises(RedisError, match="not an integer"):
        connection.command("INCR", "text")
    with pytest.raises(RedisError, match="wrong number of arguments"):
        connection.command("GET")
    assert connection.command("PING") == "PONG", "the connection stays usable after an error"


def test_arrays_empty_null_and_nested(connection: RedisConnection) -> None:
    assert connection.command("RPUSH", "list", "a", "", "c") == 3
    assert connection.command("LRANGE", "list", 0, -1) == ["a", "", "c"]
    assert connection.command("LRANGE", "missing", 0, -1) == []
    assert connection.command("BLPOP", "missing", "0.01") is None  # RESP2's null array
    script = "return {1, {'x', {}, redis.status_reply('FINE')}, redis.error_reply('NESTED boom'), false}"
    assert plain(connection.command("EVAL", script, 0)) == [1, ["x", [], "FINE"], ("error", "NESTED boom"), None]
    connection.send(["MULTI"], ["INCR", "n"], ["INCR", "list"], ["MGET", "n", "nothing"], ["EXEC"])
    replies = [plain(connection.read_reply()) for _ in range(5)]
    assert replies[:4] == ["OK", "QUEUED", "QUEUED", "QUEUED"]
    assert replies[4][0] == 1 and replies[4][1][0] == "error" and "WRONGTYPE" in replies[4][1][1]
    assert replies[4][2] == ["1", None]


def test_a_pipeline_returns_every_reply_in_order_with_errors_in_place(connection: RedisConnection) -> None:
    replies = connection.pipeline([["INCR", "counter"] for _ in range(1000)])
    assert replies == list(range(1, 1001))
    replies = connection.pipeline([["SET", "k", "v"], ["LPUSH", "k", "x"], ["GET", "k"]])
    assert plain(replies)[0] == "OK" and plain(replies)[2] == "v"
    assert isinstance(replies[1], RedisError) and str(replies[1]).startswith("WRONGTYPE")


def test_a_large_value_arrives_in_many_pieces(connection: RedisConnection) -> None:
    value = "あ" * 400_000  # 1.2 MB, far more than one recv
    assert connection.command("SET", "big", value) == "OK"
    assert connection.command("GET", "big") == value
    assert connection.pipeline([["GET", "big"], ["STRLEN", "big"]]) == [value, 1_200_000]


def test_a_subscriber_reads_its_messages(redis: RedisServer) -> None:
    with RedisConnection(redis.port) as subscriber:
        subscriber.send(["SUBSCRIBE", "one"], ["SUBSCRIBE", "two"])
        assert [subscriber.read_reply(), subscriber.read_reply()] == [["subscribe", "one", 1], ["subscribe", "two", 2]]
        assert redis_command(redis.port, "PUBLISH", "two", "hello\r\n") == 1
        assert subscriber.read_reply() == ["message", "two", "hello\r\n"]


def test_redis_command_uses_a_fresh_connection_and_raises_errors(redis: RedisServer) -> None:
    assert redis_command(redis.port, "SET", "fresh", 1) == "OK"
    assert redis.command("GET", "fresh") == "1"
    with pytest.raises(RedisError, match="unknown command"):
        redis_command(redis.port, "NOPE")


def test_a_connection_closed_mid_reply_is_a_connection_error() -> None:
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(1)

        def answer_half() -> None:
            accepted, _ = listener.accept()
            with accepted:
                accepted.recv(1024)
                accepted.sendall(b"*2\r\n$10\r\nabc")

        server = threading.Thread(target=answer_half, daemon=True)
        server.start()
        with RedisConnection(listener.getsockname()[1], timeout=5.0) as connection:
            with pytest.raises(ConnectionError, match="mid-reply"):
                connection.command("GET", "k")
        server.join(5.0)
