"""Refuse every network connection that leaves this machine (the tests and smoke notebooks run offline)."""
import ipaddress
import socket

_LOCAL_FAMILIES = {getattr(socket, "AF_UNIX", None)}


class NetworkBlocked(RuntimeError):
    """Raised when code tries to reach a non-loopback address while the guard is on."""


def _is_loopback(address) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost would need DNS: refuse


def block_network() -> None:
    """Patch `socket.socket.connect` so that only loopback and Unix sockets can connect."""
    if getattr(socket.socket.connect, "_lconv_guard", False):
        return
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def check(sock, address):
        if sock.family not in _LOCAL_FAMILIES and not _is_loopback(address):
            raise NetworkBlocked(
                f"network access to {address!r} is blocked: the workbook runs offline "
                "(install data with `make data`, or unset LCONV_NO_NETWORK)"
            )

    def connect(sock, address):
        check(sock, address)
        return original_connect(sock, address)

    def connect_ex(sock, address):
        check(sock, address)
        return original_connect_ex(sock, address)

    connect._lconv_guard = True
    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
