"""`j1msky serve --certfile --keyfile`: HTTPS with TLS 1.3 as the minimum."""
from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers import config_for_tests


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1: (certfile, keyfile)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "j1msky.test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(certfile), str(keyfile)


def handshake(port: int, cafile: str, max_version: ssl.TLSVersion) -> str:
    context = ssl.create_default_context(cafile=cafile)
    context.maximum_version = max_version
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            return tls.version()


def test_https_with_tls_1_3_minimum(live_server_factory, certificate):
    certfile, keyfile = certificate
    server = live_server_factory(config_for_tests())
    key = server.create_key("agents:read")["key"]
    server.url = server.url.replace("http://", "https://")
    server.start(extra=("--certfile", certfile, "--keyfile", keyfile), verify=certfile)
    response = requests.get(server.url + "/api/agents", verify=certfile, timeout=5,
                            headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    assert handshake(server.port, certfile, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    with pytest.raises(ssl.SSLError):
        handshake(server.port, certfile, ssl.TLSVersion.TLSv1_2)
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url.replace("https://", "http://") + "/api/health", timeout=5)
