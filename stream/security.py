"""CurveZMQ between hosts: key pairs per host, servers that admit only the graph's known hosts.

`python -m launch keys DIR --hosts laptop gpu` writes DIR/<host>.key (public) and
DIR/<host>.key_secret (secret) for each host. Copy the folder to every host (a host
only needs its own secret). The consumer side of a cross-host edge is the Curve server,
the producer the client; a ZAP authenticator on the server admits only clients whose
public key is in DIR, so a peer without the right keys can neither send nor receive.
"""
from __future__ import annotations

import threading
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

_auth_lock = threading.Lock()
_authenticators: dict[int, ThreadAuthenticator] = {}


def make_keys(directory: Path, hosts: list[str]) -> list[Path]:
    """Create a key pair per host (existing pairs are kept)."""
    directory.mkdir(parents=True, exist_ok=True)
    made = []
    for host in hosts:
        if not (directory / f"{host}.key_secret").exists():
            public, secret = zmq.auth.create_certificates(str(directory), host)
            Path(secret).chmod(0o600)
            made.append(Path(public))
    return made


def _load(directory: Path | None, host: str, secret: bool) -> tuple[bytes, bytes | None]:
    if directory is None:
        raise RuntimeError("a cross-host edge needs security: {keys: DIR} in the graph")
    path = directory / (f"{host}.key_secret" if secret else f"{host}.key")
    if not path.exists():
        raise RuntimeError(f"missing CurveZMQ key {path} (make keys with `python -m launch keys {directory} --hosts {host}`)")
    return zmq.auth.load_certificate(str(path))


def _ensure_authenticator(ctx: zmq.Context, directory: Path) -> None:
    with _auth_lock:
        if id(ctx) not in _authenticators:
            auth = ThreadAuthenticator(ctx)
            auth.start()
            auth.configure_curve(domain="*", location=str(directory))
            _authenticators[id(ctx)] = auth


def curve_server(sock: zmq.Socket, directory: Path | None, host: str) -> None:
    """Make `sock` a Curve server with `host`'s secret key, admitting only known client keys."""
    public, secret = _load(directory, host, secret=True)
    _ensure_authenticator(sock.context, directory)
    sock.curve_secretkey, sock.curve_publickey, sock.curve_server = secret, public, True


def curve_client(sock: zmq.Socket, directory: Path | None, host: str, server_host: str) -> None:
    """Make `sock` a Curve client of `server_host`, identified by `host`'s key pair."""
    public, secret = _load(directory, host, secret=True)
    server_public, _ = _load(directory, server_host, secret=False)
    sock.curve_secretkey, sock.curve_publickey, sock.curve_serverkey = secret, public, server_public


def curve_user_id(directory: Path | None, host: str) -> str:
    """The ZAP User-Id of messages sent with `host`'s key: who sent a message, not just that a key did."""
    public, _ = _load(directory, host, secret=False)
    return public.decode()


def missing_keys(directory: Path | None, host: str, peers: set[str]) -> list[str]:
    """The key files `host` needs to talk to `peers` that are not there (its own pair, each peer's public key)."""
    if directory is None:
        return ["security: {keys: DIR} in the graph"]
    needed = [directory / f"{host}.key", directory / f"{host}.key_secret", *(directory / f"{p}.key" for p in sorted(peers))]
    return [str(path) for path in needed if not path.is_file()]


def stop_authenticators() -> None:
    with _auth_lock:
        for auth in _authenticators.values():
            auth.stop()
        _authenticators.clear()
