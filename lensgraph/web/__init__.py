"""The web page the service serves at ``GET /`` (docs/api.md, "The web page"): static files of this package.

One HTML page, one script and one style sheet, written by hand: no build step, nothing fetched from
elsewhere (no CDN). The page calls the API it is served with (``/v1/...``, relative URLs, so it works under
a route prefix too), sending ``Authorization: Bearer <key>`` when the user pasted a key. The files ship as
package data (pyproject.toml), so an installed wheel and the image serve them.

``FILES`` is what the ingress serves (pipelines/web_page.py) and ``PAGE_PATHS`` the paths that stay open
with API keys on (pipelines/guard.py) and bypass the front door's limit (lensgraph/front_door.py): the page
holds no data, every API call it makes needs the key.
"""

from __future__ import annotations

from importlib import resources

# path -> (file under static/, media type)
FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/web/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/web/app.css": ("app.css", "text/css; charset=utf-8"),
}
PAGE_PATHS: tuple[str, ...] = tuple(FILES)

# Everything the page loads comes from here; images it shows are blob: URLs of the API's answers.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                           "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def read(name: str) -> bytes:
    """The bytes of one file of the page (a name of ``FILES``)."""
    return resources.files(__name__).joinpath("static", name).read_bytes()
