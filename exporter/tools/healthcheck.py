"""Liveness probe of a running exporter, for a container's HEALTHCHECK.

A container engine runs the probe inside the container, knowing nothing of the exporter's
listen address, TLS or basic auth. So it reads the address the way the exporter does
(flag, environment, config file, default) and counts as alive any answer that only the
exporter's own code can give: `/-/healthy` answering 200, a 401 from basic auth, a 429 from
the rate limit, or a TLS handshake answered (a server certificate, or a TLS alert asking for a
client certificate). A TCP connect alone proves nothing: the kernel accepts connections for a
process that is stuck. Credentials are never needed, so none are stored in the image.
"""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass

from exporter.settings import config

# Answers that come from the exporter's request handler, whatever the web config asks of clients.
ALIVE_STATUSES = {
    200: "/-/healthy answered",
    401: "alive, basic auth required",
    429: "alive, rate limited",
}


@dataclass(frozen=True)
class Verdict:
    alive: bool
    reason: str


def probe_address(listen: str) -> tuple[str, int]:
    """Where to connect to reach an exporter listening on `listen`: the host it binds, or
    loopback when it binds every address."""
    host, port = config.split_listen_address(listen)
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, port


def _ask(conn: http.client.HTTPConnection) -> Verdict:
    conn.request("GET", "/-/healthy", headers={"User-Agent": "wolkvox-exporter-healthcheck"})
    status = conn.getresponse().status
    if status in ALIVE_STATUSES:
        return Verdict(True, f"{ALIVE_STATUSES[status]} (HTTP {status})")
    return Verdict(False, f"/-/healthy answered HTTP {status}")


def check(listen: str, timeout: float = 4.0) -> Verdict:
    """Plain HTTP first; a server that hangs up on it may be speaking TLS, so then TLS."""
    host, port = probe_address(listen)
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    plain = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        return _ask(plain)
    except TimeoutError:
        return Verdict(False, f"no answer from {where} within {timeout:g}s")
    except ConnectionRefusedError:
        return Verdict(False, f"nothing listens on {where}")
    except (http.client.HTTPException, ConnectionError):
        pass  # hung up on plain HTTP: try TLS
    except OSError as exc:
        return Verdict(False, f"cannot reach {where}: {exc.strerror or exc}")
    finally:
        plain.close()

    # The probe checks that the process answers, not who it is: no certificate is verified.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    tls = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    try:
        try:
            tls.connect()  # the TLS handshake
        except ssl.SSLError as exc:
            if "ALERT" in (exc.reason or "").upper():
                return Verdict(True, f"alive, TLS answered with an alert ({exc.reason})")
            return Verdict(False, f"TLS with {where} failed: {exc.reason or exc}")
        except TimeoutError:
            return Verdict(False, f"no TLS answer from {where} within {timeout:g}s")
        except OSError as exc:
            return Verdict(False, f"{where} hung up on plain HTTP and on TLS: {exc}")
        try:
            return _ask(tls)
        except (http.client.HTTPException, OSError) as exc:
            # The handshake was answered by the exporter itself; a server that wants a client
            # certificate (TLS 1.3) or one with other SANs refuses only the request.
            reason = exc.reason if isinstance(exc, ssl.SSLError) else type(exc).__name__
            return Verdict(True, f"alive, TLS answered, then the request was refused ({reason})")
    finally:
        tls.close()
