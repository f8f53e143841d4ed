"""TLS to the database, checked the way the pasted URL asks: libpq's parameters, given to asyncpg as an SSLContext.

asyncpg, left to itself, looks for `~/.postgresql/root.crt` for `sslmode=verify-*` (no Lambda has one) and
has no channel binding at all. So the URL's TLS parameters become a `TlsPolicy` here, and the policy builds the
`ssl.SSLContext` asyncpg is given:

- `verify-ca` / `verify-full` check the server against `sslrootcert=<file>` or else the system trust store
  (OpenSSL's default paths, so `SSL_CERT_FILE` / `SSL_CERT_DIR` apply);
- `sslrootcert=system` is `verify-full` with the system store; a weaker `sslmode` beside it is an error (libpq 16);
- `channel_binding=require` becomes `verify-full`: a man in the middle cannot complete SCRAM-SHA-256-PLUS under
  libpq, and cannot present a trusted certificate for the host here, which is the same protection;
- `require` alone encrypts without checking, as libpq does.

Nothing here touches the disk at import. The context (which loads the trust store, ~ms) is built on the first
connection and kept for the process.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import ssl
from typing import NamedTuple

logger = logging.getLogger("app.tls")

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# Modes in which asyncpg never checks the server: it handles them itself (prefer/allow fall back to plaintext).
UNCHECKED_MODES = frozenset({"disable", "allow", "prefer"})
VERIFYING_MODES = frozenset({"verify-ca", "verify-full"})
CHANNEL_BINDINGS = ("disable", "prefer", "require")
SSL_NEGOTIATIONS = ("postgres", "direct")
# What PostgreSQL 17 requires of a direct TLS connection (and what libpq 17 sends on every TLS connection).
ALPN_PROTOCOL = "postgresql"
# The URL parameters this module owns.
TLS_PARAMETERS = frozenset({"sslmode", "ssl", "sslrootcert", "channel_binding", "sslnegotiation"})


class TlsParameterError(ValueError):
    """A TLS parameter that cannot be honoured. The message names the parameter, never the URL."""


class TlsPolicy(NamedTuple):  # immutable like a frozen dataclass, and half its cost to define at import
    """What the URL asks of TLS, resolved. `sslmode` None: the URL said nothing (asyncpg's default, `prefer`)."""

    sslmode: str | None = None
    root_cert: str | None = None  # a CA file; None with a verifying mode: the system trust store
    direct: bool = False  # sslnegotiation=direct: TLS from the first byte, no SSLRequest round trip
    channel_binding: bool = False  # channel_binding=require, honoured by verify-full (see the module's doc)

    @property
    def verifies(self) -> bool:
        return self.sslmode in VERIFYING_MODES

    @property
    def encrypts(self) -> bool:
        """TLS or no connection at all (what production requires for a remote host)."""
        return self.sslmode in {"require", *VERIFYING_MODES}

    def asyncpg_args(self) -> dict[str, object]:
        """The `ssl` and `direct_tls` arguments of `asyncpg.connect`."""
        args: dict[str, object] = {}
        if self.sslmode is None:
            pass
        elif self.sslmode in UNCHECKED_MODES:
            args["ssl"] = self.sslmode
        else:
            args["ssl"] = client_context(self)
        if self.direct:
            args["direct_tls"] = True
        return args

    def libpq_params(self) -> dict[str, str]:
        """The same policy for libpq tools (pg_dump, pg_restore, psql), as connection parameters.

        libpq looks for `~/.postgresql/root.crt` where this app uses the system store, and libpq before 16 does
        not know `sslrootcert=system`: so the system store is named by its CA bundle file when there is one.
        libpq does channel binding itself, so `channel_binding=require` is passed on as well.
        """
        params: dict[str, str] = {}
        if self.sslmode is not None:
            params["sslmode"] = self.sslmode
        if self.verifies:
            params["sslrootcert"] = self.root_cert or system_ca_file() or "system"
        if self.channel_binding:
            params["channel_binding"] = "require"
        if self.direct:
            params["sslnegotiation"] = "direct"
        return params

    def describe(self) -> str:
        """For log lines: what is checked, never a secret."""
        if not self.encrypts:
            return f"sslmode={self.sslmode or 'prefer (default)'}: the server is not checked"
        if not self.verifies:
            return "sslmode=require: encrypted, the server is not checked"
        store = f"the CA file {self.root_cert}" if self.root_cert else "the system trust store"
        what = "certificate chain and host name" if self.sslmode == "verify-full" else "certificate chain"
        return f"sslmode={self.sslmode}: the server's {what} checked against {store}"


def _value(params: dict[str, str], key: str, allowed: tuple[str, ...]) -> str | None:
    value = params.get(key)
    if value is not None and value not in allowed:
        raise TlsParameterError(f"{key}={value!r} is not one of {', '.join(allowed)}")
    return value


def _check_readable_certificates(path: str) -> None:
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 20)
    except OSError as error:
        raise TlsParameterError(f"sslrootcert={path!r} cannot be read ({error.strerror or error})") from None
    if b"-----BEGIN CERTIFICATE-----" not in head:
        raise TlsParameterError(f"sslrootcert={path!r} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")


def policy_from_params(params: dict[str, str]) -> TlsPolicy:
    """Resolve the URL's TLS parameters (libpq's names) into a policy; TlsParameterError if they contradict."""
    raw_mode = params.get("sslmode", params.get("ssl"))
    sslmode = {"true": "require", "false": "disable"}.get(raw_mode or "", raw_mode)
    if sslmode is not None and sslmode not in SSLMODES:
        raise TlsParameterError(f"sslmode={sslmode!r} is not one of {', '.join(SSLMODES)}")
    binding = _value(params, "channel_binding", CHANNEL_BINDINGS)
    negotiation = _value(params, "sslnegotiation", SSL_NEGOTIATIONS)
    root_cert = params.get("sslrootcert") or None

    if root_cert == "system":
        if sslmode not in (None, "verify-full"):
            raise TlsParameterError(
                f"sslrootcert=system needs sslmode=verify-full; sslmode={sslmode} would not check the host name "
                "(libpq 16 refuses it too)"
            )
        sslmode, root_cert = "verify-full", None
    elif root_cert is not None:
        _check_readable_certificates(root_cert)
        if sslmode in UNCHECKED_MODES:
            raise TlsParameterError(
                f"sslrootcert is given but sslmode={sslmode} never checks the server: use sslmode=verify-full "
                "(or verify-ca)"
            )
        if sslmode in (None, "require"):
            sslmode = "verify-ca"  # libpq: with a root certificate, require checks the chain

    if binding == "require":
        if sslmode == "disable":
            raise TlsParameterError("channel_binding=require needs TLS, but sslmode=disable turns it off")
        sslmode = "verify-full"
    if negotiation == "direct" and sslmode not in {"require", *VERIFYING_MODES}:
        raise TlsParameterError(
            f"sslnegotiation=direct needs sslmode=require or stronger (got {sslmode or 'none'}; libpq 17 refuses "
            "it too)"
        )
    return TlsPolicy(sslmode, root_cert, negotiation == "direct", binding == "require")


def is_loopback(host: str) -> bool:
    """A host whose traffic never leaves the machine (a Unix socket directory counts)."""
    if host.startswith("/") or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def system_ca_file() -> str | None:
    """OpenSSL's default CA bundle file (SSL_CERT_FILE if set), if it exists."""
    cafile = ssl.get_default_verify_paths().cafile
    return cafile if cafile and os.path.isfile(cafile) else None


def client_context(policy: TlsPolicy) -> ssl.SSLContext:
    """The process's context for `policy`. Keyed by SSL_CERT_FILE / SSL_CERT_DIR too, which OpenSSL reads
    when the system store is loaded, so a changed trust store is never served from a stale context."""
    return _build_context(policy, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.cache
def _build_context(policy: TlsPolicy, _cert_file: str | None, _cert_dir: str | None) -> ssl.SSLContext:
    if policy.verifies:
        # cafile given: that file only, as libpq's sslrootcert; else OpenSSL's default paths.
        context = ssl.create_default_context(cafile=policy.root_cert)
        context.check_hostname = policy.sslmode == "verify-full"
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols([ALPN_PROTOCOL])
    if policy.channel_binding:
        logger.info(
            "database TLS: channel_binding=require asked for; asyncpg cannot bind channels, so the server's "
            "certificate chain and host name are verified against %s instead",
            f"the CA file {policy.root_cert}" if policy.root_cert else "the system trust store",
        )
    return context
