"""The web page (lensgraph/web, pipelines/web_page.py) without Ray: its routes, that it loads nothing from
elsewhere, that it stays open with API keys on while the API does not, and that a wheel carries its files.
In a real browser against a real app: tests/integration/test_api.py."""

from __future__ import annotations

import asyncio
import fnmatch
import re
import subprocess
import tomllib
import types
from html.parser import HTMLParser
from pathlib import Path

import httpx
from fastapi import FastAPI

from lensgraph import front_door, web
from lensgraph.security import keys
from pipelines import guard, web_page

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "lensgraph" / "web" / "static"


def _get(app, path: str, headers: dict | None = None) -> httpx.Response:
    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            return await http.get(path, headers=headers)

    return asyncio.run(go())


def _app() -> FastAPI:
    app = FastAPI()
    web_page.install(app)

    @app.get("/v1/models")
    async def models() -> dict:
        return {"models": []}

    return app


def test_the_page_and_its_files_are_served_with_their_types_and_a_strict_policy():
    app = _app()
    for path, (name, media) in web.FILES.items():
        response = _get(app, path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == media
        assert response.content == (STATIC / name).read_bytes()
        assert response.headers["content-security-policy"] == web.CONTENT_SECURITY_POLICY
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in web.CONTENT_SECURITY_POLICY and "connect-src 'self'" in web.CONTENT_SECURITY_POLICY


def test_the_page_is_not_in_the_openapi_schema():
    paths = _app().openapi()["paths"]
    assert "/v1/models" in paths and not set(web.PAGE_PATHS) & set(paths)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.inline: list[str] = []

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        self.links += [values[a] for a in ("src", "href") if values.get(a)]
        if values.get("id"):
            self.ids.add(values["id"])
        if "style" in values or any(a.startswith("on") for a in values):
            self.inline.append(tag)  # the Content-Security-Policy would refuse inline styles and handlers


def test_the_page_loads_only_its_own_files_with_relative_urls():
    page = _Links()
    page.feed(web.read("index.html").decode())
    assert not page.inline, page.inline
    local = {"/" + link for link in page.links if link.startswith("web/")}
    assert local == set(web.PAGE_PATHS) - {"/"}, page.links  # the script and the style sheet
    for link in set(page.links) - {"web/app.js", "web/app.css"}:
        assert link in ("data:,", "docs"), link  # no icon request, and a link to /docs
    for name in ("index.html", "app.js", "app.css"):
        text = web.read(name).decode()
        assert not re.search(r"(https?:)?//[a-z0-9]", text, re.I), f"{name} names another origin"
    script = web.read("app.js").decode()
    assert "innerHTML" not in script, "answers are put in the page as text, never as HTML"
    assert set(re.findall(r'\$\("([\w-]+)"\)', script)) <= page.ids, "every element the script uses exists"
    for needed in ("sessionStorage", '"Bearer "', "performance.now()", '"v1/models"', "?render=true"):
        assert needed in script, needed


def test_the_page_is_open_with_api_keys_on_and_the_api_is_not(tmp_path):
    key = keys.append(tmp_path / "api_keys", "test")
    guarded = guard.Guard()
    guarded.configure(types.SimpleNamespace(rate_limit_per_s=0.0, rate_limit_burst=0, rate_limit_client_header=None),
                      environ={keys.ENV: str(tmp_path / "api_keys")})
    app = guard.GuardMiddleware(_app(), guard=guarded)
    for path in web.PAGE_PATHS:
        assert _get(app, path).status_code == 200, path
    assert _get(app, "/v1/models").status_code == 401
    assert _get(app, "/v1/models", {"authorization": f"Bearer {key}"}).status_code == 200
    assert set(web.PAGE_PATHS) <= guard.OPEN_PATHS


def test_the_front_door_lets_the_page_past_the_limit(tmp_path):
    assert set(web.PAGE_PATHS) <= set(front_door.OPEN_PATHS)
    config = front_door.render("127.0.0.1", 8000, 8001, max_in_flight=4)
    probes = next(line for line in config.splitlines() if "use_backend probes" in line)
    assert all(f" {path} " in probes for path in web.PAGE_PATHS), probes
    (tmp_path / "front_door.cfg").write_text(config)
    check = subprocess.run([str(front_door.haproxy_binary()), "-c", "-f", str(tmp_path / "front_door.cfg")],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_package_data_carries_every_file_of_the_page():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["lensgraph"]
    files = sorted(p.relative_to(ROOT / "lensgraph").as_posix() for p in STATIC.iterdir() if p.is_file())
    assert {name for name, _ in web.FILES.values()} == {Path(f).name for f in files}
    for path in files:
        assert any(fnmatch.fnmatch(path, pattern) for pattern in patterns), path
