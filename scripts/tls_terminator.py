"""A TLS-terminating front for the (TLS-less) test PostgreSQL that also speaks direct TLS, like Neon's proxy.

The PgBouncers we have (Debian's 1.18, and 1.24) answer only the SSLRequest way: a client with
`sslnegotiation=direct` opens with a TLS ClientHello, which they cannot read. Neon's proxy and PostgreSQL 17 accept
both. This front does too, the way PostgreSQL 17 does: an SSLRequest is answered 'S' and then TLS; a connection
that opens with a TLS handshake record is direct TLS, and must ask for the ALPN protocol "postgresql". Behind
the TLS, bytes are relayed unchanged to the server. One thread per connection; for tests and benchmarks only.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import threading

from app.dev.certificates import KeyPair

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
TLS_HANDSHAKE_RECORD = 0x16


class TlsTerminator:
    def __init__(self, upstream: tuple[str, int], tls: KeyPair) -> None:
        self.upstream = upstream
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(tls.cert, tls.key)
        self.context.set_alpn_protocols(["postgresql"])
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.direct_connections = 0
        self.negotiated_connections = 0
        self._closing = False

    def start(self) -> TlsTerminator:
        threading.Thread(target=self._accept, daemon=True, name="tls-terminator").start()
        return self

    def stop(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self.listener.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            first = client.recv(8, socket.MSG_PEEK)
            if first == SSL_REQUEST:
                client.recv(8)
                client.sendall(b"S")
                self.negotiated_connections += 1
            elif first[:1] == bytes([TLS_HANDSHAKE_RECORD]):
                self.direct_connections += 1
            else:
                client.close()  # plaintext: refused, as Neon refuses it
                return
            tls = self.context.wrap_socket(client, server_side=True)
            if first != SSL_REQUEST and tls.selected_alpn_protocol() != "postgresql":
                tls.close()  # PostgreSQL 17 refuses direct TLS without ALPN
                return
            with socket.create_connection(self.upstream) as server:
                self._relay(tls, server)
        except (OSError, ssl.SSLError):
            pass  # a refused handshake (the client did not trust us) or a hang-up: the client sees it
        finally:
            with contextlib.suppress(OSError):
                client.close()

    @staticmethod
    def _relay(tls: ssl.SSLSocket, server: socket.socket) -> None:
        while True:
            readable = [tls] if tls.pending() else select.select([tls, server], [], [], 30)[0]
            if not readable:
                return
            for source in readable:
                target = server if source is tls else tls
                data = source.recv(65536)
                if not data:
                    return
                target.sendall(data)
