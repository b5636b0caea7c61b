"""The stable result-code table every SOAP result carries (README, "Result codes").

Engine operations raise MailsrvError; the ASMX layer turns it into Result=false with the code and
message. Codes are part of the public contract: never renumber, only add.
"""
from __future__ import annotations

from enum import IntEnum


class ResultCode(IntEnum):
    OK = 0
    LOGIN_FAILED = -1
    SETUP_REQUIRED = -2
    LOGIN_LOCKED = -3
    PERMISSION_DENIED = -5
    PASSWORD_RULES = -21
    INVALID_DOMAIN_NAME = -10
    INVALID_USER_NAME = -11
    INVALID_ADDRESS = -12
    VALUE_OUT_OF_RANGE = -13
    INVALID_PATH = -14
    INVALID_SETTING = -15
    INVALID_ARGUMENT = -16
    DOMAIN_NOT_FOUND = -30
    USER_NOT_FOUND = -31
    ALIAS_NOT_FOUND = -32
    DOMAIN_ALIAS_NOT_FOUND = -33
    ADMIN_NOT_FOUND = -34
    GROUP_NOT_FOUND = -35
    ITEM_NOT_FOUND = -36
    DOMAIN_EXISTS = -40
    USER_EXISTS = -41
    ALIAS_EXISTS = -42
    DOMAIN_ALIAS_EXISTS = -43
    ADMIN_EXISTS = -44
    NAME_IN_USE = -45
    LIMIT_REACHED = -50
    NOT_SUPPORTED = -60
    PROTECTED_OBJECT = -61
    DNS_CHECK_FAILED = -62
    STORAGE_ERROR = -70
    ADDRESS_LIST_OVERLAP = -85
    FORWARDING_BLACKLISTED = -86
    DOMAIN_NAME_RESERVED = -87
    JOB_RUNNING = -95
    SERVICE_NOT_STOPPABLE = -90
    UNKNOWN_SERVICE = -91
    PORT_IN_USE = -92
    GATEWAY_DOMAIN_CONFLICT = -105  # a domain another incoming gateway forwards, or one hosted here
    LIST_NOT_FOUND = -125
    LIST_EXISTS = -126
    ABUSE_KIND_UNKNOWN = -155  # an abuseDetectionType that is none of the rule kinds
    ABUSE_SERVICE_UNKNOWN = -156
    ABUSE_ACTION_UNKNOWN = -157
    NOT_BLOCKED = -158  # UnblockAddress of an address abuse detection does not block
    GREYLIST_FILTER_UNSUPPORTED = -159  # a greylisting filter type we cannot match (country)
    INVALID_SPAMASSASSIN_SERVER = -160  # no name, or an address or port that cannot be one
    SPAMASSASSIN_SERVER_EXISTS = -161
    SPAMASSASSIN_SERVER_NOT_FOUND = -162


class MailsrvError(Exception):
    """A refusal with a stable code and a message meant for the caller."""

    def __init__(self, code: ResultCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
