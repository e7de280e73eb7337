"""What would a leaner HTTP client path save per streamed chunk and per request?

Question: the profiles (bench/where_cpu.py) put most of a paced delta's CPU,
and most of a turn's fixed CPU, in the openai SDK -> httpx2 -> httpcore2 ->
h11 stack. How much CPU does each way of POSTing a streaming /responses
request and reading its body cost, in this process, on the same streams?

    /work/venv/bin/python bench/http_read_path.py
    /work/venv/bin/python bench/http_read_path.py --requests 300 --paced 2000 --bursty 20000

Ways, each followed by the same SSEDecoder (runtime/protocol/responses.py):

* ``sdk``: what actors/model/stream.py does: ``AsyncOpenAI.post(..., stream=True)``
  and ``response.aiter_bytes()``, a ``move_on_after`` per chunk;
* ``httpx2``: ``httpx2.AsyncClient.stream("POST", ...)`` and ``aiter_raw()``,
  headers built once;
* ``h11``: a kept-alive ``trio.SocketStream`` and an ``h11.Connection``;
* ``raw``: a kept-alive ``trio.SocketStream``, the request bytes prebuilt,
  the chunked body parsed by hand (no per-chunk h11 events).

Three figures per way: CPU per request of a 1-delta stream (the fixed cost
of opening a stream), CPU per delta paced ``--delay-ms`` apart (one network
read per delta, as a real model) and CPU per delta in bulk. CPU is this
process's (the scripted server runs as its own process), from
``time.process_time``, divided by the count. The paced figure subtracts
nothing, so it includes waking up from epoll for each delta.
"""

from __future__ import annotations

import argparse
import json
import time
from urllib.parse import urlsplit

import h11
import trio

from benchlib import ScriptedProcess, print_table
from trio_codex.runtime.protocol import responses as wire


def body(prompt: str) -> bytes:
    return json.dumps({"model": "mock-model", "input": [{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": prompt}]}], "stream": True, "instructions": "x"}).encode()


def count_deltas(events: list) -> int:
    return sum(1 for e in events if type(e) is wire.OutputTextDelta)


class SdkWay:
    name = "sdk"

    def __init__(self, base_url: str) -> None:
        import openai

        self.sdk = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
        self.headers = {"Accept": "text/event-stream", "Content-Type": "application/json",
                        "Authorization": openai.omit}

    async def stream(self, data: bytes) -> int:
        import httpx2

        response = await self.sdk.post("/responses", cast_to=httpx2.Response, content=data,
                                       options={"headers": self.headers}, stream=True)
        n = 0
        decoder = wire.SSEDecoder()
        try:
            chunks = response.aiter_bytes()
            while True:
                with trio.move_on_after(300):
                    try:
                        chunk = await anext(chunks)
                    except StopAsyncIteration:
                        break
                n += count_deltas(decoder.feed(chunk))
        finally:
            await response.aclose()
        return n

    async def aclose(self) -> None:
        await self.sdk.close()


class HttpxWay:
    name = "httpx2"

    def __init__(self, base_url: str) -> None:
        import httpx2

        self.client = httpx2.AsyncClient(timeout=httpx2.Timeout(300, connect=5))
        self.url = base_url + "/responses"
        self.headers = {"Accept": "text/event-stream", "Content-Type": "application/json"}

    async def stream(self, data: bytes) -> int:
        n = 0
        decoder = wire.SSEDecoder()
        async with self.client.stream("POST", self.url, content=data, headers=self.headers) as response:
            async for chunk in response.aiter_raw():
                n += count_deltas(decoder.feed(chunk))
        return n

    async def aclose(self) -> None:
        await self.client.aclose()


class H11Way:
    name = "h11"

    def __init__(self, base_url: str) -> None:
        u = urlsplit(base_url)
        self.host, self.port, self.path = u.hostname, u.port, u.path + "/responses"
        self.sock: trio.SocketStream | None = None
        self.conn: h11.Connection | None = None

    async def stream(self, data: bytes) -> int:
        if self.sock is None:
            self.sock = await trio.open_tcp_stream(self.host, self.port)
            self.conn = h11.Connection(h11.CLIENT)
        conn = self.conn
        assert conn is not None
        headers = [("host", f"{self.host}:{self.port}"), ("accept", "text/event-stream"),
                   ("content-type", "application/json"), ("content-length", str(len(data)))]
        await self.sock.send_all(conn.send(h11.Request(method="POST", target=self.path, headers=headers))
                                 + conn.send(h11.Data(data=data)) + conn.send(h11.EndOfMessage()))
        n = 0
        decoder = wire.SSEDecoder()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await self.sock.receive_some(65536))
            elif type(event) is h11.Data:
                n += count_deltas(decoder.feed(event.data))
            elif type(event) is h11.EndOfMessage:
                conn.start_next_cycle()
                return n

    async def aclose(self) -> None:
        if self.sock is not None:
            await self.sock.aclose()


class RawWay:
    """Prebuilt request head; chunked decoding by hand over one buffer."""

    name = "raw"

    def __init__(self, base_url: str) -> None:
        u = urlsplit(base_url)
        self.host, self.port = u.hostname, u.port
        self.head = (f"POST {u.path}/responses HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
                     "accept: text/event-stream\r\ncontent-type: application/json\r\n").encode()
        self.sock: trio.SocketStream | None = None

    async def stream(self, data: bytes) -> int:
        if self.sock is None:
            self.sock = await trio.open_tcp_stream(self.host, self.port)
        sock = self.sock
        await sock.send_all(self.head + b"content-length: %d\r\n\r\n" % len(data) + data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += await sock.receive_some(65536)
        head, _, buf = buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower()
        n = 0
        decoder = wire.SSEDecoder()
        while True:
            # buf starts at a chunk-size line
            while True:
                nl = buf.find(b"\r\n")
                if nl >= 0:
                    size = int(buf[:nl].split(b";", 1)[0], 16)
                    if len(buf) >= nl + 2 + size + 2:
                        break
                buf += await sock.receive_some(65536)
            if size == 0:
                return n
            # feed every complete chunk already in buf at once
            parts = []
            while True:
                nl = buf.find(b"\r\n")
                if nl < 0:
                    break
                size = int(buf[:nl].split(b";", 1)[0], 16)
                end = nl + 2 + size
                if size == 0 or len(buf) < end + 2:
                    break
                parts.append(buf[nl + 2:end])
                buf = buf[end + 2:]
            n += count_deltas(decoder.feed(b"".join(parts)))

    async def aclose(self) -> None:
        if self.sock is not None:
            await self.sock.aclose()


WAYS = [SdkWay, HttpxWay, H11Way, RawWay]


async def measure(way_cls: type, base_url: str, args: argparse.Namespace) -> dict:
    way = way_cls(base_url)
    try:
        # warm up: imports, connection, first-use paths
        for _ in range(3):
            await way.stream(body("[[deltas=50]] warm"))
        c0 = time.process_time()
        for i in range(args.requests):
            assert await way.stream(body(f"[[deltas=1]] request {i}")) == 1
        per_request = (time.process_time() - c0) / args.requests
        c0 = time.process_time()
        got = await way.stream(body(f"[[deltas={args.paced} delay_ms={args.delay_ms}]] paced"))
        paced = (time.process_time() - c0 - per_request) / args.paced
        assert got == args.paced, (got, args.paced)
        c0 = time.process_time()
        got = await way.stream(body(f"[[deltas={args.bursty}]] bursty"))
        bursty = (time.process_time() - c0 - per_request) / args.bursty
        assert got == args.bursty
    finally:
        await way.aclose()
    return {"request_us": per_request * 1e6, "paced_us": paced * 1e6, "bursty_us": bursty * 1e6}


async def main_async(args: argparse.Namespace) -> None:
    results = {}
    with ScriptedProcess() as scripted:
        for way in WAYS:
            results[way.name] = await measure(way, scripted.base_url, args)
    base = results["sdk"]
    rows = []
    for name, r in results.items():
        rows.append([name, f"{r['request_us']:.0f}", f"{r['request_us'] / base['request_us']:.2f}",
                     f"{r['paced_us']:.1f}", f"{r['paced_us'] / base['paced_us']:.2f}",
                     f"{r['bursty_us']:.2f}", f"{r['bursty_us'] / base['bursty_us']:.2f}"])
    print(f"== client-side CPU of a streaming /responses request, by HTTP path "
          f"({args.requests} x 1-delta requests; {args.paced} deltas {args.delay_ms} ms apart; "
          f"{args.bursty} deltas in bulk)")
    print_table(rows, ["way", "us/request", "vs sdk", "us/paced delta", "vs sdk", "us/bulk delta", "vs sdk"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--paced", type=int, default=2000)
    p.add_argument("--delay-ms", type=float, default=0.5)
    p.add_argument("--bursty", type=int, default=20000)
    trio.run(main_async, p.parse_args())


if __name__ == "__main__":
    main()
