"""The benches' HTTP client loop (bench_annotation_http.run_load), which bench_peer_labelstudio shares.

Driven against small real HTTP servers on loopback (asyncio sockets): one that answers, one that
closes the connection after each answer, one that never answers, and one that speaks Label
Studio's next-task and annotation API. Only what the loop counts is judged, never its speed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bench import bench_annotation_http as http_bench
from bench.bench_peer_labelstudio import LabelStudioApi


class Server:
    """A loopback HTTP/1.1 server: ``routes(method, path)`` gives (status, JSON) or None (never answer)."""

    def __init__(self, routes: Any, *, close_after_each: bool = False) -> None:
        self.routes, self.close_after_each = routes, close_after_each
        self.seen: list[tuple[str, str, str | None, Any]] = []
        self.connections = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.serve, http_bench.HOST, 0)
        return self.server.sockets[0].getsockname()[1]

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                lines = head.split("\r\n")
                method, path, _ = lines[0].split()
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.seen.append((method, path, headers.get("authorization"), json.loads(body) if body else None))
                answer = self.routes(method, path)
                if answer is None:
                    await asyncio.sleep(3600)  # never answers
                status, payload = answer
                data = json.dumps(payload).encode()
                close = "Connection: close\r\n" if self.close_after_each else ""
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                             f"{close}\r\n".encode() + data)
                await writer.drain()
                if self.close_after_each:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def our_queue(method: str, path: str) -> tuple[int, Any]:
    if (method, path) == ("GET", "/api/work/next"):
        return 200, {"item": {"assignment_id": 1, "clip_id": 3}}
    assert (method, path) == ("POST", "/api/work/submit")
    return 200, {"judgement_id": 42}


def load(server: Server, clients: int, *, api: http_bench.Api = http_bench.OURS, seconds: float = 0.5,
         timeout: float = 5.0) -> http_bench.Tally:
    async def scenario() -> http_bench.Tally:
        port = await server.start()
        tally, _ = await http_bench.run_load(port, [f"tok{i}" for i in range(clients)], seconds, 0.0,
                                             mode="saturation", api=api, timeout=timeout)
        server.server.close()
        return tally

    return asyncio.run(scenario())


def test_every_client_loops_next_then_submit_with_its_token() -> None:
    server = Server(our_queue)
    tally = load(server, 3)
    assert tally.errors == {} and tally.gave_up == 0 and tally.served_clients == {0, 1, 2}
    assert len(tally.acked) >= 6 and set(tally.acked.values()) == {42}
    first_two = [seen for seen in server.seen if seen[2] == "Bearer tok0"][:2]
    assert [(m, p) for m, p, _, _ in first_two] == [("GET", "/api/work/next"), ("POST", "/api/work/submit")]
    body = first_two[1][3]
    assert body["assignment_id"] == 1 and body["label"] == "Fear" and body["client_request_id"] in tally.acked
    assert {auth for _, _, auth, _ in server.seen} == {"Bearer tok0", "Bearer tok1", "Bearer tok2"}
    assert server.connections == 3  # keep-alive: one connection per client


def test_a_server_that_closes_after_each_answer_gets_a_new_connection_and_no_error() -> None:
    server = Server(our_queue, close_after_each=True)
    tally = load(server, 2)
    assert tally.errors == {} and tally.gave_up == 0 and tally.served_clients == {0, 1}
    assert len(tally.acked) >= 4
    assert server.connections == len(server.seen)  # one request per connection, as the server asked


def test_a_server_that_never_answers_ends_the_phase_and_every_client_is_counted() -> None:
    server = Server(lambda method, path: None)
    tally = load(server, 4, seconds=0.2, timeout=0.3)
    assert tally.gave_up == 4 and tally.served_clients == set() and tally.acked == {}
    assert tally.errors == {"next: no answer within 0.3 s": 4}
    assert len(server.seen) == 4  # each client asked once, then left instead of asking again


def test_label_studio_api_in_the_same_loop() -> None:
    handed_out: list[int] = []

    def label_studio(method: str, path: str) -> tuple[int, Any]:
        if method == "GET":
            assert path == "/api/projects/7/next/"
            if len(handed_out) >= 2:
                return 404, {"detail": "no more tasks"}  # Label Studio's "nothing left for you"
            handed_out.append(len(handed_out) + 5)
            return 200, {"id": handed_out[-1], "data": {"video": "/data/c.mp4"}}
        assert path in ("/api/tasks/5/annotations/?project=7", "/api/tasks/6/annotations/?project=7")
        return 201, {"id": 100 + int(path.split("/")[3])}

    server = Server(label_studio)
    tally = load(server, 1, api=LabelStudioApi(7), seconds=0.3)
    assert sorted(tally.acked.values()) == [105, 106] and tally.errors == {} and tally.empty >= 1
    assert {auth for _, _, auth, _ in server.seen} == {"Token tok0"}
    posts = [body for method, _, _, body in server.seen if method == "POST"]
    assert posts[0] == {"result": [{"from_name": "emotion", "to_name": "video", "type": "choices",
                                    "value": {"choices": ["Neutral"]}}], "lead_time": 1.0, "project": 7}
    assert posts[1]["result"][0]["value"] == {"choices": ["Fear"]}  # task 6: the same label rule as ours


def test_pre_ping_ratios_pair_each_on_row_with_the_off_row_after_it() -> None:
    def row(ping: bool, per_s: float, p99: float, clients: int = 200) -> dict[str, Any]:
        return {"mode": "saturation", "backend": "postgres", "clients": clients, "pre_ping": ping,
                "submissions_per_s": per_s, "next_p99_ms": p99, "submit_p99_ms": p99 / 2}

    rows = [row(True, 90, 40), row(False, 100, 30), row(True, 300, 50), row(False, 200, 20), row(True, 95, 60),
            row(False, 100, 10), row(True, 1, 1, clients=50)]  # no off row at 50 clients: no ratio there
    (only,) = http_bench.pre_ping_ratios(rows)
    assert (only["clients"], only["pairs"], only["ratios"]) == (200, 3, [0.9, 1.5, 0.95])
    assert only["throughput_ratio"] == 0.95  # the median pair
    assert (only["next_p99_ms_on"], only["next_p99_ms_off"], only["submit_p99_ms_on"]) == (50, 20, 25)
