"""The one log line of an error answer (pipelines/request_ids.py), through the real error handlers in-process.

Under Serve the id comes from Serve's X-Request-ID request header; here the test client sends it, as
Serve's middleware would have put it there. The integration test checks the same on a real app."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from fastapi import FastAPI

from lensgraph.errors import CorruptImage, ModelUnavailable
from pipelines import errors
from pipelines.request_ids import log_error, request_id


@pytest.fixture
def client():
    app = FastAPI()
    errors.install(app)

    @app.post("/corrupt")
    async def corrupt():
        raise CorruptImage("The JPEG image could not be decoded (image file is truncated\n(3 bytes not processed))")

    @app.post("/unavailable")
    async def unavailable():
        raise ModelUnavailable("classifier is unavailable: not built")

    @app.post("/bug")
    async def bug():
        raise RuntimeError("a bug in /opt/lensgraph/secret.py")

    return Client(app)


class Client:
    """In-process HTTP through the app's whole ASGI stack (as tests/unit/test_security.py does)."""

    def __init__(self, app) -> None:
        self.app = app

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        async def go():
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                return await http.request(method, path, **kwargs)

        return asyncio.run(go())

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.request("POST", path, **kwargs)


@pytest.fixture
def records(caplog):
    logger = logging.getLogger("ray.serve")
    direct = not logger.propagate  # Serve may have stopped it propagating to the root, where caplog listens
    if direct:
        logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="ray.serve")
    yield caplog
    if direct:
        logger.removeHandler(caplog.handler)


def _lines(records, rid: str) -> list[logging.LogRecord]:
    return [r for r in records.records if rid in r.getMessage()]


def test_a_client_error_is_one_line_with_status_code_and_id_and_no_traceback(client, records):
    response = client.post("/corrupt", headers={"X-Request-ID": "req-422-abc"})
    assert response.status_code == 422 and response.json()["error"] == "undecodable_image"
    (record,) = _lines(records, "req-422-abc")
    text = records.handler.format(record)
    assert record.levelno == logging.INFO and record.exc_info is None
    assert "422 undecodable_image request_id=req-422-abc" in text and "POST /corrupt" in text
    assert "\n" not in text and "Traceback" not in text  # the decoder's message, flattened to one line


def test_validation_and_unknown_routes_are_logged_the_same_way(client, records):
    client.get("/nowhere", headers={"X-Request-ID": "req-404"})
    client.get("/corrupt", headers={"X-Request-ID": "req-405"})
    assert "404 not_found request_id=req-404" in _lines(records, "req-404")[0].getMessage()
    assert "405 method_not_allowed request_id=req-405" in _lines(records, "req-405")[0].getMessage()
    assert len(records.records) == 2


def test_a_known_server_side_cause_is_one_warning_line(client, records):
    assert client.post("/unavailable", headers={"X-Request-ID": "req-503"}).status_code == 503
    (record,) = _lines(records, "req-503")
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "503 model_unavailable request_id=req-503" in record.getMessage()


def test_an_unexpected_error_logs_its_traceback_with_the_id_and_tells_the_client_nothing_more(client, records):
    response = client.post("/bug", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "message": "unexpected RuntimeError; the service logged it"}
    (record,) = _lines(records, "req-500")
    text = records.handler.format(record)
    assert record.levelno == logging.ERROR and "500 internal_error request_id=req-500" in text
    assert "Traceback" in text and "RuntimeError: a bug" in text


def test_request_id_is_the_header_else_serves_own_else_a_dash():
    assert request_id({"headers": [(b"x-request-id", b"abc-1")]}) == "abc-1"
    assert request_id({"headers": [(b"x-request-id", b"")]}) == "-"  # outside a replica Serve has no id
    assert request_id({"headers": []}) == "-"


def test_log_error_returns_the_id_and_bounds_the_message(records):
    scope = {"method": "POST", "path": "/v1/faces", "headers": [(b"x-request-id", b"r-1")]}
    assert log_error(scope, 415, "unsupported_media_type", "x" * 5000) == "r-1"
    (record,) = records.records
    assert len(record.getMessage()) < 400


def test_admission_refusals_do_not_share_headers_that_serve_appends_to():
    """Serve's RequestIdMiddleware appends X-Request-ID to the headers list of the message it is sent; the
    pre-encoded refusal once shared one list, so every refusal carried all the earlier refusals' ids."""
    from pipelines.admission import Admission

    admission = Admission(limit=1)
    sent: list[dict] = []

    def through_serve(rid: bytes):
        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"].append((b"x-request-id", rid))  # what MutableHeaders(scope=message) does
            sent.append(message)
        return send

    for rid in (b"first", b"second"):
        asyncio.run(admission.refuse(through_serve(rid)))
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert [[v for k, v in m["headers"] if k == b"x-request-id"] for m in starts] == [[b"first"], [b"second"]]
    assert all(m["status"] == 503 for m in starts) and admission.refused == 2
