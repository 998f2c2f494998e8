"""A Garden API client that speaks exactly like the Go client.

cloche must be compatible with Cloud Foundry's Garden Go client
(``code.cloudfoundry.org/garden/client``), but the tests must not need Go.  So
this module reproduces the Go client's requests byte for byte, as captured in
``shared/reference/garden-protocol.md`` §1.2:

* a new connection for every call (Unix socket or TCP), never reused;
* the request line, then the headers in Go's order: ``Host: api``,
  ``User-Agent: Go-http-client/1.1``, ``Content-Length`` and
  ``Content-Type: application/json`` only when there is a body, then
  ``Accept-Encoding: gzip`` and ``Connection: close``;
* JSON bodies as Go's ``json.Encoder`` writes them (compact, ``<>&`` escaped,
  one trailing newline);
* query strings as ``url.Values.Encode()`` builds them, and path parameters
  pasted unescaped and then percent-encoded the way Go's ``net/url`` does;
* the process protocol (§5) as the Go client drives it: ``run()`` and
  ``attach()`` return a ``Process`` with a control connection and one new
  connection per output stream, stdin as JSON strings, signals, window sizes,
  and a ``wait()`` that needs the exit status and both streams' EOF.

It also parses the HTTP/1.1 reply itself (rather than through http.client) so
that tests can see exactly what the server sent: the status line version,
every header in order, interim ``100 Continue`` replies, and bodies framed by
Content-Length, chunked encoding or the end of the connection.

Only the standard library is used.

The package splits it by job: wire (encoding requests), http (parsing replies
and the errors), client (GardenClient), streams (hijacked replies and streamed
bodies), process (the process protocol). Everything public is re-exported
here, so `from garden_client import ...` works as before.
"""

from __future__ import annotations

from .client import GardenClient
from .http import (GardenError, Headers, IncompleteResponse, ProtocolError, Response,
                   is_garden_error_object, parse_response)
from .process import Process, ProcessError, check_hijack_head, go_process_spec
from .streams import HijackedReply
from .wire import (STYLE_ATTACH, STYLE_ORDINARY, STYLE_RUN, STYLE_STREAM, build_request,
                   go_encode_query, go_escape_path, go_json, go_request_target)

__all__ = [
    "STYLE_ATTACH",
    "STYLE_ORDINARY",
    "STYLE_RUN",
    "STYLE_STREAM",
    "GardenClient",
    "GardenError",
    "Headers",
    "HijackedReply",
    "IncompleteResponse",
    "Process",
    "ProcessError",
    "ProtocolError",
    "Response",
    "build_request",
    "check_hijack_head",
    "go_encode_query",
    "go_escape_path",
    "go_json",
    "go_process_spec",
    "go_request_target",
    "is_garden_error_object",
    "parse_response",
]
