"""`esdb api-docs`: print the AsyncAPI document of the public NATS API, or serve it over HTTP."""

from __future__ import annotations

import argparse
import html
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from esdb.contracts.asyncapi import asyncapi_document, asyncapi_json

# Pinned, so the page renders the same document the same way; the raw JSON needs no network.
WEB_COMPONENT = "https://unpkg.com/@asyncapi/web-component@2.6.5/lib/asyncapi-web-component.js"
WEB_COMPONENT_CSS = "https://unpkg.com/@asyncapi/react-component@2.6.5/styles/default.min.css"


def add_command(commands: Any) -> None:
    """Add `esdb api-docs` to the `esdb` subcommands."""
    docs = commands.add_parser(
        "api-docs",
        help="print (or serve) the AsyncAPI document of the public NATS API",
        description=(
            "Print the AsyncAPI 3.0 document of esdb's public NATS API, generated from the "
            "contract structs (docs/asyncapi.json is its committed copy; see docs/api.md). "
            "With --serve, serve it over HTTP instead: the JSON at /asyncapi.json and a page "
            "at / that renders it with the AsyncAPI web component (loaded from a CDN)."
        ),
    )
    docs.add_argument("--format", choices=("json", "yaml"), default="json")
    docs.add_argument(
        "--serve", type=int, metavar="PORT", help="serve it on this HTTP port (0: any free one)"
    )
    docs.add_argument("--host", default="127.0.0.1", help="the address to serve on")


def run(args: argparse.Namespace) -> int:
    """`esdb api-docs`: 0, or 2 when YAML is asked for and PyYAML is not installed."""
    if args.serve is not None:
        return _serve(args.host, args.serve)
    if args.format == "yaml":
        text = asyncapi_yaml()
        if text is None:
            print("esdb api-docs: --format yaml needs PyYAML (pip install pyyaml)", file=sys.stderr)
            return 2
    else:
        text = asyncapi_json()
    sys.stdout.buffer.write(text.encode())
    sys.stdout.flush()
    return 0


def asyncapi_yaml() -> str | None:
    """The document as YAML, or None without PyYAML (not a dependency of esdb)."""
    try:
        import yaml
    except ImportError:
        return None

    # libyaml's dumper, where PyYAML has it, is about 10x faster on this document.
    base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    class Dumper(base):  # type: ignore[misc, valid-type]  # PyYAML ships no type hints
        pass

    def text(dumper: Any, value: str) -> Any:
        # Descriptions are Markdown paragraphs: keep their lines as they are.
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return str(
        yaml.dump(
            asyncapi_document(), Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100
        )
    )


def make_server(host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server of the document (not yet serving): `/`, `/asyncapi.json`, `/asyncapi.yaml`."""
    document = asyncapi_json().encode()
    yaml_text = asyncapi_yaml()
    pages: dict[str, tuple[str, bytes]] = {
        "/": ("text/html; charset=utf-8", _page(yaml_text is not None).encode()),
        "/asyncapi.json": ("application/json", document),
    }
    if yaml_text is not None:
        pages["/asyncapi.yaml"] = ("application/yaml", yaml_text.encode())
    pages["/index.html"] = pages["/"]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = pages.get(self.path.split("?", 1)[0])
            if found is None:
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            content_type, body = found
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            # Lets AsyncAPI Studio or another page on another origin load the document.
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a docs page needs no access log on the terminal

    return ThreadingHTTPServer((host, port), Handler)


def _serve(host: str, port: int) -> int:
    server = make_server(host, port)
    bound_host, bound_port = server.server_address[:2]
    url = f"http://{_url_host(str(bound_host))}:{bound_port}/"
    print(f"serving the AsyncAPI document on {url} (JSON at {url}asyncapi.json); Ctrl-C stops")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _page(with_yaml: bool) -> str:
    version = html.escape(str(asyncapi_document()["info"]["version"]))
    raw = '<a href="asyncapi.json">asyncapi.json</a>'
    if with_yaml:
        raw += ' · <a href="asyncapi.yaml">asyncapi.yaml</a>'
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>esdb {version} NATS API</title>
<script src="{WEB_COMPONENT}" defer></script>
</head>
<body>
<p>The AsyncAPI document of esdb {version}: {raw}. The view below loads the AsyncAPI web
component from a CDN; offline, open the document itself.</p>
<asyncapi-component schemaUrl="asyncapi.json" cssImportPath="{WEB_COMPONENT_CSS}"
  config='{{"show": {{"sidebar": true}}}}'></asyncapi-component>
</body>
</html>
"""
