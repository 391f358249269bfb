"""Webhook delivery connects to the address it checked (DNS rebinding), keeping the name
for Host and for TLS SNI and certificate checks.

Resolution goes through the delivery code's resolver seam (socket.getaddrinfo in
production); the name used is `localhost`, which the system resolver maps to loopback,
so a delivery that resolved again on its own would reach the loopback receiver."""
from __future__ import annotations

import datetime as dt
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from j1msky.services import webhooks
from tests.helpers import config_for_tests
from tests.webhook_receiver import WebhookReceiver

ALLOWED = "127.0.0.2"  # the only allowed network: stands in for a LAN receiver
CONFIG = config_for_tests(webhooks={"allowed_networks": [f"{ALLOWED}/32"],
                                    "deny_private_networks": False, "timeout_seconds": 2})
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Rebinding:
    """A resolver answering `first` once, then `then`: a DNS name with a short TTL whose
    owner switches it after the check."""

    def __init__(self, first: list[str], then: list[str]):
        self.answers = [first]
        self.then = then
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        return self.answers.pop() if self.answers else self.then


@pytest.fixture
def receivers():
    """(receiver on the allowed 127.0.0.2, receiver on 127.0.0.1), on one port."""
    with WebhookReceiver("127.0.0.1") as loopback:
        port = int(loopback.url.rsplit(":", 1)[1])
        with WebhookReceiver(ALLOWED, port) as allowed:
            yield allowed, loopback


def deliver(url: str, resolver) -> tuple[int | None, str | None]:
    return webhooks.post(url, SECRET, "evt_1", '{"event": "webhook.test"}', CONFIG, resolver)


def test_rebinding_to_loopback_after_the_check_reaches_only_the_checked_address(receivers):
    allowed, loopback = receivers
    port = int(allowed.url.rsplit(":", 1)[1])
    resolver = Rebinding(first=[ALLOWED], then=["127.0.0.1"])
    assert deliver(f"http://localhost:{port}/hook", resolver) == (200, None)
    assert resolver.calls == [("localhost", port)]  # resolved once, for check and connect
    [delivery] = allowed.deliveries()
    assert delivery["headers"]["host"] == f"localhost:{port}"
    assert delivery["path"] == "/hook"
    assert loopback.count() == 0


def test_a_refused_address_among_the_answers_refuses_the_delivery(receivers):
    allowed, loopback = receivers
    port = int(allowed.url.rsplit(":", 1)[1])
    status, error = deliver(f"http://localhost:{port}/hook",
                            Rebinding(first=[ALLOWED, "127.0.0.1"], then=[ALLOWED]))
    assert status is None
    assert error == ("destination refused: 'localhost' resolves to 127.0.0.1, a loopback or"
                     " link-local address (add it to webhooks.allowed_networks to allow it)")
    assert allowed.count() == 0 and loopback.count() == 0


def test_user_info_and_path_survive_the_pinning():
    target, host = webhooks.pinned("https://u:p@hooks.example:8443/a/b?x=1", "192.0.2.7")
    assert (target, host) == ("https://u:p@192.0.2.7:8443/a/b?x=1", "hooks.example:8443")
    target, host = webhooks.pinned("http://hooks.example/a", "2001:db8::5")
    assert (target, host) == ("http://[2001:db8::5]/a", "hooks.example")


# -- https: the name is kept for SNI and the certificate check -------------------------------

def certificate(tmp_path, name: str) -> tuple[str, str]:
    """A self-signed certificate for DNS name `name`: (certfile, keyfile)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(certfile), str(keyfile)


class TLSReceiver(WebhookReceiver):
    """The webhook receiver behind TLS; records the SNI name each handshake sent."""

    def __init__(self, host: str, certfile: str, keyfile: str):
        super().__init__(host)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certfile, keyfile)
        self.server_names: list[str | None] = []
        self.context.sni_callback = lambda sock, name, ctx: self.server_names.append(name)

    def start(self):
        super().start()  # nothing connects before the listening socket is wrapped
        self._server.socket = self.context.wrap_socket(self._server.socket, server_side=True)
        return self

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@pytest.mark.parametrize("cert_name, delivered", [("localhost", True), ("other.test", False)])
def test_https_delivery_checks_the_certificate_against_the_name(tmp_path, monkeypatch,
                                                                 cert_name, delivered):
    certfile, keyfile = certificate(tmp_path, cert_name)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certfile)  # how an operator trusts a private CA
    with TLSReceiver(ALLOWED, certfile, keyfile) as receiver:
        status, error = deliver(f"https://localhost:{receiver.port}/hook",
                                Rebinding(first=[ALLOWED], then=["127.0.0.1"]))
        assert receiver.server_names[:1] == ["localhost"]  # SNI names the host, not the IP
        if delivered:
            assert (status, error) == (200, None)
            assert receiver.deliveries()[0]["headers"]["host"] == f"localhost:{receiver.port}"
        else:
            assert status is None and error.startswith("SSLError")
            assert "localhost" in error and receiver.count() == 0
