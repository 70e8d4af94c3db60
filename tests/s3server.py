"""A real local S3 for the tests: moto's server on a free port, and a proxy in front that counts
requests and can make some of them fail the ways S3 and networks do.

Never the internet: everything listens on 127.0.0.1. moto is a real S3-compatible HTTP server
(boto3 and pyarrow's S3 filesystem talk to it as to AWS); the proxy is hand-written because the
tests need what no server offers: the count of requests that reached it (the cache test) and
throttling, dropped connections and bodies cut short on demand (the retry tests).

    from tests.s3server import s3  # noqa: F401  (the fixture)

    def test_x(s3):
        s3.create_bucket("b"); s3.put("b", "k", b"...")
        # AWS_ENDPOINT_URL points at moto: boto3 and ray_tasks.datasets use it;
        # s3.proxy_url is the same server through the proxy
        s3.fail("/b/k", times=2)          # the next two requests for /b/k get 503 SlowDown
        s3.requests[("GET", "/b/k")]      # requests that reached the proxy
        s3.delay_s = 0.2; s3.max_in_flight  # slow GETs; the most answered at once
"""

from __future__ import annotations

import atexit
import http.client
import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")


@dataclass
class Fault:
    match: str
    """Requests whose path contains this are affected."""
    times: int
    """How many more requests fail this way."""
    kind: str
    """``503`` (SlowDown), ``500``, ``drop`` (connection closed without a response) or ``truncate``
    (the response's headers, then half its body, then the connection closed)."""


class S3Server:
    """moto's ``ThreadedMotoServer`` and the proxy, started together; ``stop()`` ends both."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.url = f"http://{host}:{port}"
        self.requests: Counter[tuple[str, str]] = Counter()
        self.faults: list[Fault] = []
        self.delay_s = 0.0
        """Seconds the proxy holds each GET before answering (a slow network), so overlap shows."""
        self.in_flight = self.max_in_flight = 0
        """GETs being answered now, and the most at once since ``reset``."""
        self._lock = threading.Lock()
        self._proxy = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, host, port))
        self._proxy.daemon_threads = True
        self._proxy_thread = threading.Thread(target=self._proxy.serve_forever, daemon=True)
        self._proxy_thread.start()
        self.proxy_url = f"http://127.0.0.1:{self._proxy.server_address[1]}"

    # ---------------------------------------------------------------- test helpers
    def client(self, through_proxy: bool = False):
        import boto3

        return boto3.client("s3", endpoint_url=self.proxy_url if through_proxy else self.url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def create_bucket(self, name: str, public: bool = False) -> None:
        """A bucket; ``public``: anyone may list and read it, unsigned (as Software Heritage's)."""
        client = self.client()
        client.create_bucket(Bucket=name)
        if public:
            client.put_bucket_policy(Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
                 "Resource": [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"]}]}))

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client().put_object(Bucket=bucket, Key=key, Body=data)

    def fail(self, match: str, times: int, kind: str = "503") -> None:
        with self._lock:
            self.faults.append(Fault(match, times, kind))

    def count(self, method: str, prefix: str) -> int:
        """Requests of ``method`` whose path starts with ``prefix`` that reached the proxy."""
        with self._lock:
            return sum(n for (m, p), n in self.requests.items() if m == method and p.startswith(prefix))

    def reset(self) -> None:
        """Empty moto (every bucket) and forget counts and faults."""
        conn = http.client.HTTPConnection(self.url.removeprefix("http://"), timeout=10)
        conn.request("POST", "/moto-api/reset")
        conn.getresponse().read()
        conn.close()
        with self._lock:
            self.requests.clear()
            self.faults.clear()
            self.delay_s = 0.0
            self.in_flight = self.max_in_flight = 0

    def reset_counts(self) -> None:
        """Forget the counts (requests, most in flight), keep the buckets, faults and delay."""
        with self._lock:
            self.requests.clear()
            self.max_in_flight = 0

    def stop(self) -> None:
        self._proxy.shutdown()
        self._proxy.server_close()
        self._moto.stop()

    # ---------------------------------------------------------------- proxy internals
    def _take_fault(self, path: str) -> str | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.match in path:
                    fault.times -= 1
                    return fault.kind
        return None


def _handler(server: S3Server, host: str, port: int):
    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as S3 clients expect

        def log_message(self, *args) -> None:  # quiet
            pass

        def _forward(self) -> None:
            path = self.path.split("?", 1)[0]
            with server._lock:
                server.requests[(self.command, path)] += 1
                if self.command == "GET":
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                if self.command == "GET" and server.delay_s:
                    time.sleep(server.delay_s)
                self._answer(path)
            finally:
                if self.command == "GET":
                    with server._lock:
                        server.in_flight -= 1

        def _answer(self, path: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            fault = server._take_fault(path)
            if fault == "drop":
                self.close_connection = True
                return
            if fault in ("503", "500"):
                self._send(int(fault), {"Content-Type": "application/xml"}, SLOW_DOWN if fault == "503" else
                           b"<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>")
                return
            upstream = http.client.HTTPConnection(host, port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream.request(self.command, self.path, body=body, headers=headers)
            resp = upstream.getresponse()
            data = resp.read()
            out = {k: v for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP | {"content-length"}}
            upstream.close()
            if fault == "truncate" and self.command == "GET":
                self.send_response(resp.status)
                for k, v in out.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if self.command == "HEAD":
                out["Content-Length"] = resp.getheader("Content-Length") or "0"
                self._send(resp.status, out, b"", head=True)
            else:
                self._send(resp.status, out, data)

        def _send(self, status: int, headers: dict, data: bytes, head: bool = False) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            if not head:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not head:
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    return Proxy


_SERVER: S3Server | None = None


def s3_server() -> S3Server:
    """The process's server, started on first use (moto starts in well under a second)."""
    global _SERVER
    if _SERVER is None:
        _SERVER = S3Server()
    return _SERVER


@pytest.fixture
def s3(monkeypatch) -> S3Server:
    """An empty local S3 for one test, with boto3's and pyarrow's endpoint (``AWS_ENDPOINT_URL``)
    and test credentials in the environment."""
    server = s3_server()
    server.reset()
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata probing for credentials
    yield server
    with server._lock:
        server.faults.clear()


@atexit.register
def _stop_at_exit() -> None:
    if _SERVER is not None:
        _SERVER.stop()
