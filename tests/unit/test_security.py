"""API keys, the token bucket, the ASGI guard and what client-facing messages say (docs/security.md).

No Ray: the guard is driven through real ASGI calls (httpx's ASGI transport) around a small
Starlette app, and the rate limiter through an injected clock."""

from __future__ import annotations

import asyncio
import os
import stat
import types

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from lensgraph.cli.main import main
from lensgraph.errors import CorruptImage, ModelUnavailable
from lensgraph.security import keys
from lensgraph.security.rate_limit import TokenBucketLimiter
from lensgraph.security.redact import public_reason, redact_paths
from pipelines.guard import Guard, GuardMiddleware

# --------------------------------------------------------------------------------------------
# Keys


def test_new_keys_are_random_prefixed_and_long():
    made = {keys.new_key() for _ in range(200)}
    assert len(made) == 200
    for key in made:
        assert key.startswith("lgk_") and len(key) == 47  # 32 random bytes in URL-safe base64
        assert set(key[4:]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_hash_line_and_check():
    key = keys.new_key()
    line = keys.hash_line(key, "ci-bot")
    assert line.startswith("sha256:") and line.endswith(" ci-bot") and key not in line
    found = keys.parse(line)
    assert found.check(key) == keys.ApiKey(keys.digest(key), "ci-bot")
    assert found.check(key.encode()) is not None, "bytes from the header work the same"
    assert found.check(key + "x") is None and found.check(key[:-1]) is None and found.check("") is None
    assert found.keys[0].id == "ci-bot"
    assert keys.parse(keys.hash_line(key)).keys[0].id == "sha256:" + keys.digest(key)[:12]
    with pytest.raises(keys.KeyFileError):
        keys.hash_line(key, "two words")


def test_key_file_parsing():
    a, b = keys.new_key(), keys.new_key()
    text = f"""# lensgraph keys

    {keys.hash_line(a, 'alice')}   # added by hand
{keys.hash_line(b)}
"""
    found = keys.parse(text)
    assert len(found) == 2 and found.check(a).name == "alice" and found.check(b).name is None
    bad = {
        "lgk_plaintextkeyinthefile": "line 1: expected 'sha256:<64 hex digits> [name]'",
        "md5:" + "0" * 32: "line 1: only sha256",
        "sha256:" + "0" * 63: "line 1: only sha256",
        "sha256:" + "A" * 64: "line 1: expected",  # upper-case hex is not what `keys new` writes
        f"{keys.hash_line(a)}\n{keys.hash_line(a, 'again')}": "line 2: the same key is listed twice",
        f"{keys.hash_line(a)} name extra": "line 1: expected",
    }
    for text, message in bad.items():
        with pytest.raises(keys.KeyFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
            keys.parse(text, "k.txt")


def test_loading_fails_closed(tmp_path):
    with pytest.raises(keys.KeyFileError, match="cannot read"):
        keys.load(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(keys.KeyFileError, match="holds no keys"):
        keys.load(empty)
    assert keys.from_environment({}) is None
    assert keys.from_environment({keys.ENV: "  "}) is None, "set but empty: off, like unset"
    with pytest.raises(keys.KeyFileError):
        keys.from_environment({keys.ENV: str(tmp_path / "missing")})


def test_append_creates_a_private_file_and_appends(tmp_path):
    path = tmp_path / "keys"
    first = keys.append(path, "one")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    path.write_text(path.read_text().rstrip("\n"))  # edited by hand, no final newline
    second = keys.append(path)
    found = keys.load(path)
    assert len(found) == 2 and found.check(first).name == "one" and found.check(second) is not None
    assert first not in path.read_text() and second not in path.read_text()
    path.write_text("not a hash\n")
    with pytest.raises(keys.KeyFileError):
        keys.append(path)
    assert path.read_text() == "not a hash\n", "nothing appended to a file the service would reject"


def test_cli_keys_new_prints_the_key_once_and_stores_its_hash(tmp_path, capsys):
    path = tmp_path / "api_keys"
    assert main(["keys", "new", "--file", str(path), "--name", "loadtest"]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert keys.load(path).check(key).name == "loadtest"
    assert key not in err and key not in path.read_text()
    assert main(["keys", "list", "--file", str(path)]) == 0
    listed = capsys.readouterr().out
    assert "loadtest" in listed and key not in listed and keys.digest(key) not in listed
    assert main(["keys", "list", "--file", str(tmp_path / "none")]) == 2


# --------------------------------------------------------------------------------------------
# Token bucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_burst_rate_and_retry_after():
    clock = Clock()
    limiter = TokenBucketLimiter(rate=2, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("a")
    assert wait == pytest.approx(0.5) and limiter.retry_after_header(wait) == 1
    assert limiter.take("b") == 0.0, "clients have their own buckets"
    clock.now += 0.25
    assert limiter.take("a") == pytest.approx(0.25), "half a token after 0.25 s at 2/s"
    clock.now += 0.25
    assert limiter.take("a") == 0.0 and limiter.take("a") > 0
    clock.now += 3600
    assert [limiter.take("a") for _ in range(4)][:3] == [0.0] * 3, "refill stops at the burst"
    assert limiter.take("a") > 0
    slow = TokenBucketLimiter(rate=0.1, burst=1, clock=clock)
    slow.take("x")
    assert slow.retry_after_header(slow.take("x")) == 10
    with pytest.raises(ValueError):
        TokenBucketLimiter(rate=0, burst=1)


def test_token_bucket_memory_is_bounded_and_idle_clients_go_first():
    clock = Clock()
    limiter = TokenBucketLimiter(rate=1, burst=2, max_clients=10, clock=clock)
    for c in range(10):
        limiter.take(c)
    clock.now += 10  # all ten refilled: idle, the same as new buckets
    limiter.take("busy"), limiter.take("busy")
    assert limiter.take("busy") > 0
    assert len(limiter) == 1, "the idle ten were dropped to make room"
    for c in range(100, 140):  # a flood of new names, none idle (each spent a token), while busy keeps asking
        clock.now += 0.001
        limiter.take(c)
        assert len(limiter) <= 10
        assert limiter.take("busy") > 0, "the busy client stays limited: its bucket is never the least recent"


# --------------------------------------------------------------------------------------------
# Messages


def test_redact_paths_in_server_messages():
    assert redact_paths("model 'x' is not in the repository at /opt/lensgraph/model_repository; build it "
                        "with 'lensgraph models build --only x'") == (
        "model 'x' is not in the repository at .../model_repository; build it with 'lensgraph models build --only x'")
    assert redact_paths('File "/usr/lib/python3.11/site-packages/ray/x.py", line 3') == 'File ".../x.py", line 3'
    for unchanged in ("see http://host/a/b and /docs", "path:../weights/digits/d.pth", "~/x/y", "a/b/c", "no path"):
        assert redact_paths(unchanged) == unchanged
    reason = public_reason(RuntimeError("failed in /srv/app/deployments/x.py\nTraceback (most recent call last):\n  ..."))
    assert reason == "RuntimeError: failed in .../x.py"


def _error_app(exc: Exception) -> Starlette:
    from fastapi import FastAPI

    from pipelines import errors

    app = FastAPI()
    errors.install(app)

    @app.get("/boom")
    async def boom():
        raise exc

    return app


def _get(app, path: str, headers: dict | None = None, client=("203.0.113.7", 5000)) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.get(path, headers=headers)

    return asyncio.run(go())


def test_server_errors_reach_the_client_without_server_paths():
    unavailable = ModelUnavailable("model 'digits' is not in the repository at /srv/secret/model_repository; "
                                   "build it with 'lensgraph models build --only digits'", where="/srv/secret/x")
    body = _get(_error_app(unavailable), "/boom").json()
    assert body["error"] == "model_unavailable" and "/srv" not in str(body)
    assert ".../model_repository" in body["message"] and "lensgraph models build --only digits" in body["message"]
    assert body["detail"] == {"where": ".../x"}
    client_error = CorruptImage("bad bytes near /a/b/c")  # a 4xx is about the client's input: left as it is
    assert _get(_error_app(client_error), "/boom").json()["message"] == "bad bytes near /a/b/c"


# --------------------------------------------------------------------------------------------
# The guard (pure ASGI, as on the ingress)


def _settings(**values):
    return types.SimpleNamespace(**{"rate_limit_per_s": 0.0, "rate_limit_burst": 0,
                                    "rate_limit_client_header": None, **values})


def _guarded(guard: Guard) -> tuple[Starlette, list]:
    seen = []

    async def echo(request):
        seen.append(request.url.path)
        return JSONResponse({"ok": True})

    paths = ("/v1/classify", "/v1/models", "/healthz", "/readyz", "/docs", "/openapi.json")
    app = Starlette(routes=[Route(p, echo) for p in paths])
    app.add_middleware(GuardMiddleware, guard=guard)
    return app, seen


def _key_file(tmp_path) -> tuple[str, dict]:
    path = tmp_path / "api_keys"
    key = keys.append(path, "test")
    return key, {keys.ENV: str(path)}


def test_guard_off_is_a_pass_through():
    guard = Guard()
    guard.configure(_settings(), environ={})
    assert guard.active is False
    app, seen = _guarded(guard)
    for _ in range(50):
        assert _get(app, "/v1/classify").status_code == 200
    assert len(seen) == 50


def test_guard_api_keys(tmp_path):
    key, environ = _key_file(tmp_path)
    guard = Guard()
    guard.configure(_settings(), environ=environ)
    app, seen = _guarded(guard)

    missing = _get(app, "/v1/classify")
    assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.headers["content-type"] == "application/json"
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", key):  # other schemes, no token, no scheme
        assert _get(app, "/v1/classify", {"authorization": header}).status_code == 401, header
    wrong = _get(app, "/v1/models", {"authorization": "Bearer " + keys.new_key()})
    assert wrong.status_code == 403 and wrong.json()["error"] == "forbidden"
    assert "www-authenticate" not in wrong.headers
    assert seen == [], "refused before the app"
    for scheme in ("Bearer ", "bearer ", "BEARER  "):
        assert _get(app, "/v1/classify", {"authorization": scheme + key}).status_code == 200
    assert _get(app, "/v1/models", {"authorization": f"Bearer {key}"}).status_code == 200
    for open_path in ("/healthz", "/readyz", "/docs", "/openapi.json"):
        assert _get(app, open_path).status_code == 200, open_path


def test_guard_rate_limit_per_key_and_per_client(tmp_path):
    key, environ = _key_file(tmp_path)
    other = keys.append(tmp_path / "api_keys", "other")
    guard = Guard()
    guard.configure(_settings(rate_limit_per_s=0.001, rate_limit_burst=2), environ=environ)
    app, _ = _guarded(guard)
    auth = {"authorization": f"Bearer {key}"}
    assert [_get(app, "/v1/classify", auth).status_code for _ in range(2)] == [200, 200]
    limited = _get(app, "/v1/classify", auth)
    assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 999
    assert _get(app, "/v1/classify", {"authorization": f"Bearer {other}"}).status_code == 200, "per key"
    assert _get(app, "/v1/classify", auth, client=("198.51.100.1", 1)).status_code == 429, "a key, wherever from"
    assert _get(app, "/healthz", auth).status_code == 200, "probes are never limited"

    anonymous = Guard()
    anonymous.configure(_settings(rate_limit_per_s=0.001, rate_limit_burst=1), environ={})
    app, _ = _guarded(anonymous)
    assert _get(app, "/v1/classify").status_code == 200
    assert _get(app, "/v1/classify").status_code == 429
    assert _get(app, "/v1/classify", client=("198.51.100.1", 1)).status_code == 200, "per client address"
    forged = {"x-forwarded-for": "192.0.2.99"}  # not trusted: the peer address still decides
    assert _get(app, "/v1/classify", forged).status_code == 429

    behind_proxy = Guard()
    behind_proxy.configure(_settings(rate_limit_per_s=0.001, rate_limit_burst=1, rate_limit_client_header="X-Real-IP"),
                           environ={})
    app, _ = _guarded(behind_proxy)
    assert _get(app, "/v1/classify", {"x-real-ip": "192.0.2.1"}).status_code == 200
    assert _get(app, "/v1/classify", {"x-real-ip": "192.0.2.1"}).status_code == 429
    assert _get(app, "/v1/classify", {"x-real-ip": "192.0.2.2"}).status_code == 200
    # X-Forwarded-For as the trusted header: the entry the nearest proxy appended (the last) counts
    behind_proxy.configure(_settings(rate_limit_per_s=0.001, rate_limit_burst=1,
                                     rate_limit_client_header="X-Forwarded-For"), environ={})
    assert _get(app, "/v1/classify", {"x-forwarded-for": "10.9.9.9, 192.0.2.50"}).status_code == 200
    assert _get(app, "/v1/classify", {"x-forwarded-for": "10.1.1.1, 192.0.2.50"}).status_code == 429


def test_guard_key_file_at_start_and_on_reconfigure(tmp_path):
    key, environ = _key_file(tmp_path)
    with pytest.raises(keys.KeyFileError):
        Guard().configure(_settings(), environ={keys.ENV: str(tmp_path / "missing")})
    guard = Guard()
    guard.configure(_settings(), environ=environ)
    added = keys.append(tmp_path / "api_keys", "added")
    guard.configure(_settings(), environ=environ)  # a reconfigure reads the file again
    assert guard.keys.check(added) is not None
    (tmp_path / "api_keys").write_text("garbage\n")
    guard.configure(_settings(), environ=environ)  # broken later: the keys in use stay
    assert guard.keys.check(key) is not None and guard.active
    limiter_before = guard.limiter
    guard.configure(_settings(rate_limit_per_s=5), environ=environ)
    assert guard.limiter is not limiter_before and guard.limiter.burst == 5
    same = guard.limiter
    guard.configure(_settings(rate_limit_per_s=5), environ=environ)
    assert guard.limiter is same, "buckets survive a reconfigure that does not change the limit"


def test_preprocessor_settings_validate_the_rate_limit_fields():
    from pydantic import ValidationError

    from pipelines.ingress import PreprocessorSettings

    s = PreprocessorSettings.model_validate({"rate_limit_per_s": 2.5, "rate_limit_burst": 10,
                                             "rate_limit_client_header": "X-Real-IP"})
    assert (s.rate_limit_per_s, s.rate_limit_burst, s.rate_limit_client_header) == (2.5, 10, "X-Real-IP")
    assert PreprocessorSettings().rate_limit_per_s == 0, "off by default"
    for bad in ({"rate_limit_per_s": -1}, {"rate_limit_burst": -1}, {"rate_limit_client_header": "X Real IP"}):
        with pytest.raises(ValidationError):
            PreprocessorSettings.model_validate(bad)
