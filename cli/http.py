"""The HTTP side of the CLI: shared --url/--key options, a client, and problem+json errors as messages."""
import argparse
import os
import sys

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


class ApiError(Exception):
    """A 4xx/5xx answer, carrying the server's problem detail."""

    def __init__(self, response: httpx.Response):
        self.response, self.status = response, response.status_code
        try:
            body = response.json()
        except ValueError:
            body = {}
        self.title = body.get("title") or response.reason_phrase
        self.detail = body.get("detail") or response.text[:300]
        self.reason = body.get("reason")
        super().__init__(f"{self.status} {self.title}: {self.detail}")


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("ATTRIB_URL", DEFAULT_URL),
                        help=f"API base URL (env ATTRIB_URL, default {DEFAULT_URL})")
    parser.add_argument("--key", default=os.environ.get("ATTRIB_KEY"), help="API key (env ATTRIB_KEY)")


def client_from(args: argparse.Namespace, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    if not args.key:
        sys.exit("an API key is needed: --key or ATTRIB_KEY")
    return httpx.Client(base_url=args.url.rstrip("/"), headers={"Authorization": f"Bearer {args.key}"},
                        timeout=120, transport=transport)


def checked(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise ApiError(response)
    return response
