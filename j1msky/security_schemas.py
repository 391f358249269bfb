"""Request schemas of /security/ip-whitelist and /security/block-ip (marshmallow)."""
from __future__ import annotations

import ipaddress
import math

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from .ipguard import parse_ip
from .schemas import StrictBoolean

MAX_BLOCK_HOURS = 8760  # a year


class Network(fields.String):
    """An IP address or CIDR network, IPv4 or IPv6, kept as written."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            ipaddress.ip_network(text)
        except ValueError:
            try:
                loose = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ValidationError(f"'{text}' is not an IP address or CIDR network") from None
            raise ValidationError(f"'{text}' has host bits set; did you mean '{loose}'?") from None
        return text


class Address(fields.String):
    """One IPv4 or IPv6 address (not a network), in canonical form."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        ip = parse_ip(text)
        if ip is None:
            if "/" in text:
                raise ValidationError(f"'{text}' is a network; block a single IP address")
            raise ValidationError(f"'{text}' is not an IP address")
        return str(ip)


class Hours(fields.Field):
    """A number of hours: a JSON number (not a string or boolean), 0 < h <= a year."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise ValidationError("duration_hours must be a number of hours")
        if not 0 < value <= MAX_BLOCK_HOURS:
            raise ValidationError(
                f"duration_hours must be more than 0 and at most {MAX_BLOCK_HOURS}")
        return value


class Reason(fields.String):
    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not 1 <= len(text) <= 200:
            raise ValidationError("reason must be 1 to 200 characters")
        return text


class IPWhitelistRequest(Schema):
    """PUT /security/ip-whitelist: the fields sent replace those in config.json."""

    allowed_ips = fields.List(Network(), validate=validate.Length(
        max=1000, error="allowed_ips may hold at most 1000 entries"))
    enforce = StrictBoolean()
    log_violations = StrictBoolean()
    trusted_proxies = fields.List(Network(), validate=validate.Length(
        max=100, error="trusted_proxies may hold at most 100 entries"))

    @validates_schema
    def not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError("Send at least one of allowed_ips, enforce, log_violations,"
                                  " trusted_proxies")


class BlockIPRequest(Schema):
    """POST /security/block-ip; without duration_hours the block lasts until lifted."""

    ip = Address(required=True)
    reason = Reason(load_default="manual")
    duration_hours = Hours(load_default=None, allow_none=True)
