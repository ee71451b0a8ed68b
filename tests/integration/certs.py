"""Throwaway certificates for the TLS tests, made with the `openssl` CLI.

A `CertFactory` owns one directory and one test CA; `issue` signs a server
certificate for some DNS names (and IP addresses) with a serial of the
caller's choice, so that a test can tell which certificate a server showed.
Keys are EC P-256: fast to make, accepted by wsgate's ECDHE-ECDSA suites
and by TLS 1.3. Nothing here is meant to be secure.
"""

import itertools
import ssl
import subprocess
from pathlib import Path

OPENSSL = "openssl"
DAYS = "2"


def _run(*args):
    subprocess.run([OPENSSL, *map(str, args)], check=True, capture_output=True, timeout=30)


class Pair:
    """A certificate file and its key file, with what went into them."""

    def __init__(self, cert, key, cn, serial, names):
        self.cert, self.key = Path(cert), Path(key)
        self.cn, self.serial, self.names = cn, serial, names

    @property
    def spec(self):
        """CERT:KEY, as --tls-sni-certs takes it."""
        return f"{self.cert}:{self.key}"

    def __repr__(self):
        return f"Pair(cn={self.cn!r}, serial={self.serial:X}, names={self.names})"


class CertFactory:
    def __init__(self, directory, ca_name="wsgate test CA"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._serials = itertools.count(0x1000)
        self.ca = self._make_ca(ca_name)

    def _path(self, stem, ext):
        return self.dir / f"{stem}.{ext}"

    def _make_ca(self, name):
        stem = "ca-" + "".join(c if c.isalnum() else "-" for c in name)
        cert, key = self._path(stem, "pem"), self._path(stem, "key")
        serial = next(self._serials)
        _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", cert, "-days", DAYS, "-subj", f"/CN={name}",
             "-set_serial", serial,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash")
        return Pair(cert, key, name, serial, [])

    def other_ca(self, name="unrelated test CA"):
        """A second CA that signed nothing the servers show."""
        return self._make_ca(name).cert

    def issue(self, stem, cn, dns=(), ips=(), serial=None):
        """Signs a server certificate with CN `cn` and SANs `dns`, `ips`
        into STEM.pem and STEM.key (overwriting them). Returns a Pair."""
        serial = serial if serial is not None else next(self._serials)
        cert, key, csr, ext = (self._path(stem, e) for e in ("pem", "key", "csr", "ext"))
        sans = [f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips]
        lines = ["basicConstraints=critical,CA:FALSE",
                 "keyUsage=critical,digitalSignature,keyEncipherment",
                 "extendedKeyUsage=serverAuth",
                 "subjectKeyIdentifier=hash",
                 "authorityKeyIdentifier=keyid:always"]
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        ext.write_text("\n".join(lines) + "\n")
        _run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={cn}")
        _run("x509", "-req", "-in", csr, "-CA", self.ca.cert, "-CAkey", self.ca.key,
             "-set_serial", serial, "-days", DAYS, "-extfile", ext, "-out", cert)
        key.chmod(0o600)
        return Pair(cert, key, cn, serial, list(dns) + list(ips))


# ---- reading what a server showed ---------------------------------------


def client_context(ca, check_hostname=False, alpn=None, minimum=None, maximum=None):
    """A client context that trusts `ca` and requires a valid chain. With
    check_hostname=False the name is not checked, so that a test can look
    at whichever certificate the server chose."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(ca))
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if minimum:
        ctx.minimum_version = minimum
    if maximum:
        ctx.maximum_version = maximum
    return ctx


def subject_cn(peercert):
    for rdn in peercert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


def san_dns(peercert):
    return sorted(v for k, v in peercert.get("subjectAltName", ()) if k == "DNS")


def serial_of(peercert):
    return int(peercert["serialNumber"], 16)
