"""The WSDL-driven operation table: loading, the subset tool, and binding operations to handlers."""
from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from services.app import WSDL_DIR
from services.asmx.access import anonymous, authenticated
from services.asmx.contract import ContractError, load_service
from services.asmx.registry import HandlerError, bind, load_services
from services.asmx.wsdl_serve import PublishedWsdl
from services.asmx.wsdl_subset import SubsetError, subset

SERVER_ADMIN_OPS = ["GetEdition", "ListSystemAdmins", "AddSystemAdmin", "SetSystemAdminPassword", "DeleteSystemAdmin",
                    "AddIPRestrictionToSystemAdmin", "RemoveIPRestrictionFromSystemAdmin", "GetSpoolMessageCount",
                    "AddFolderAutocleanRule", "DeleteFolderAutoCleanRule", "ListFolderAutoCleanRules",
                    "RequestStatus", "StopServices", "StartServices", "AddHostname", "DeleteHostname", "ListHostnames",
                    "AddServerPort", "DeleteServerPort", "ListServerPorts", "AssignPortToIP", "RemovePortFromIP",
                    "ListPortsAssignedToIP",
                    # address lists (server_lists)
                    "SetWhitelistEntry", "SetWhitelistEntry2", "GetWhitelistEntries", "SetBlacklistEntry",
                    "GetBlacklistEntries", "AddSmtpAuthenticationBypass", "DeleteSmtpAuthenticationBypass",
                    "GetSmtpAuthenticationBypasses", "AddSMTPBlockedSender", "GetSMTPBlockedSenders",
                    "AddGlobalTrustedSender", "DeleteGlobalTrustedSender", "GetGlobalTrustedSenders",
                    "AddForwardingBlacklistEntry", "DeleteForwardingBlacklistEntry", "ListForwardingBlacklistEntries",
                    # General Settings (server_settings)
                    "GetRequestedSystemSettings", "SetRequestedSystemSettings",
                    # outgoing gateways (server_gateways)
                    "AddGateway", "AddSmarterMailGateway", "UpdateGateway", "RemoveGateway", "GetGateway",
                    "ListGateways",
                    # incoming gateways and backup MX (server_incoming_gateways)
                    "AddIncomingGateway", "UpdateIncomingGateway", "RemoveIncomingGateway", "GetIncomingGateway",
                    "ListIncomingGateways",
                    # SpamAssassin servers (server_spamassassin)
                    "AddSpamAssassinServer", "DeleteSpamAssassinServer", "ListSpamAssassinServers",
                    # abuse detection and greylisting (server_abuse)
                    "AddAbuseDetectionRule", "AddDOSAbuseDetectionRule", "AddHarvestingAbuseDetectionRule",
                    "AddInternalSpammerNotificationAbuseDetectionRule", "DeleteAbuseDetectionRule",
                    "GetAbuseDetectionRules", "GetBouncesAbuseDetectionRules", "GetBruteForceAbuseDetectionRules",
                    "GetDOSAbuseDetectionRules", "GetHarvestingAbuseDetectionRules",
                    "GetInternalSpammerNotificationAbuseDetectionRules",
                    "AddGreylistingFilter", "DeleteGreylistingFilter", "ListGreylistingFilters"]
# Operations the contract names without a signature, defined by mailsrv in wsdl/defined/svcServerAdmin.wsdl
# (README, "Operations defined by mailsrv") and published beside the subset.
SERVER_ADMIN_DEFINED = WSDL_DIR / "defined" / "svcServerAdmin.wsdl"
SERVER_ADMIN_DEFINED_OPS = ["AddReservedDomainNames", "DeleteReservedDomainNames", "GetReservedDomainNames",
                            "DeleteSMTPBlockedSender", "GetBlockedAddresses", "UnblockAddress"]
# svcDomainAdmin: every operation of the contract's WSDL, plus the two it names without a signature
# (GenerateDKIMCert, GetDKIMCert), defined by mailsrv in wsdl/defined/svcDomainAdmin.wsdl.
DOMAIN_ADMIN_DEFINED = WSDL_DIR / "defined" / "svcDomainAdmin.wsdl"
DOMAIN_ADMIN_DEFINED_OPS = ["GenerateDKIMCert", "GetDKIMCert"]
FULL_SERVICES = ["svcUserAdmin", "svcAliasAdmin", "svcDomainAliasAdmin", "svcProductInfo",
                 "svcGlobalUpdate", "svcSpoolAdmin", "svcMailListAdmin", "svcSpamAdmin", "svcVirusAdmin"]


def service(name: str):
    return load_service((WSDL_DIR / f"{name}.wsdl").read_bytes())


def test_contract_files_are_in_the_repository_with_the_contracts_bytes(contract):
    """The full services are served from the contract's own files; no contract file was edited."""
    assert all(contract.wsdls[name] == WSDL_DIR / f"{name}.wsdl" for name in FULL_SERVICES)
    for path, digest in contract.sums.items():
        assert path.resolve().is_relative_to(WSDL_DIR.parent), path
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, path


def test_every_contract_wsdl_loads(contract):
    """Including those we serve only part of (svcServerAdmin) or not yet (svcMailListAdmin)."""
    paths = contract.wsdls.values()
    assert len(paths) == 11
    for path in paths:
        loaded = load_service(path.read_bytes())
        assert loaded.name == path.stem and loaded.operations and loaded.documentation


def test_operation_table_reads_types_arrays_and_bindings():
    users = service("svcUserAdmin")
    window = users.operations["GetLastLoginTimes"]
    assert [p.name for p in window.params] == ["AuthUserName", "AuthPassword", "EmailAddress", "DateStart", "DateEnd"]
    start = window.params[3]
    assert (start.type, start.simple, start.min_occurs, start.nillable) == ("dateTime", True, 1, True)
    assert window.http_verbs == frozenset()  # SOAP only: nullable parameters have no GET/POST binding
    assert users.operations["RemoveFromMigrationQueue"].result is None  # void
    status = users.operations["GetMigrationStatus"]
    assert (status.result.type, status.http_result_element) == ("ArrayOfStatusResults", "ArrayOfStatusResults")
    assert users.types["ArrayOfStatusResults"].item.name == "StatusResults"
    assert users.types["StatusResults"].fields[0].type == "guid"
    add = service("svcAliasAdmin").operations["AddAlias"]
    assert add.soap_action == "http://tempuri.org/AddAlias" and add.http_verbs == {"GET", "POST"}
    assert add.params[-1].type == "ArrayOfString" and add.documentation.startswith("Create an alias")
    assert service("svcProductInfo").lookup("getproductinfo").name == "GetProductInfo"


def test_unsupported_schema_constructs_are_refused_at_load():
    text = (WSDL_DIR / "svcProductInfo.wsdl").read_text()
    with pytest.raises(ContractError, match="unsupported type"):
        load_service(text.replace('type="s:string"', 'type="s:double"', 1).encode())
    with pytest.raises(ContractError, match="only xsd:sequence"):
        load_service(text.replace("<s:sequence>", "<s:choice>", 1).replace("</s:sequence>", "</s:choice>", 1).encode())


def test_server_admin_wsdl_is_the_subset_tool_output(contract):
    reference = contract.wsdls["svcServerAdmin"].read_bytes()
    published = subset(reference, SERVER_ADMIN_OPS, SERVER_ADMIN_DEFINED.read_bytes())
    assert published == (WSDL_DIR / "svcServerAdmin.wsdl").read_bytes()
    assert sorted(service("svcServerAdmin").operations) == sorted(SERVER_ADMIN_OPS + SERVER_ADMIN_DEFINED_OPS)
    defined = set(re.findall(rb'<wsdl:operation name="(\w+)">', SERVER_ADMIN_DEFINED.read_bytes()))
    assert defined == {op.encode() for op in SERVER_ADMIN_DEFINED_OPS}


def test_domain_admin_wsdl_is_the_contracts_with_the_defined_operations(contract):
    """svcDomainAdmin: the subset tool's output for every contract operation plus the defined ones,
    and against the contract nothing but what the defined operations add."""
    reference = contract.wsdls["svcDomainAdmin"]
    everything = list(load_service(reference.read_bytes()).operations)
    published = subset(reference.read_bytes(), everything, DOMAIN_ADMIN_DEFINED.read_bytes())
    assert published == (WSDL_DIR / "svcDomainAdmin.wsdl").read_bytes()
    assert sorted(service("svcDomainAdmin").operations) == sorted(everything + DOMAIN_ADMIN_DEFINED_OPS)
    out = subprocess.run([sys.executable, str(contract.compare), str(reference), str(WSDL_DIR / "svcDomainAdmin.wsdl")],
                         capture_output=True, text=True).stdout.splitlines()[:-1]
    assert out and all(line.startswith("extra ") and "DKIMCert" in line for line in out), "\n".join(out)


def _compare(contract, candidate: Path) -> list[str]:
    out = subprocess.run([sys.executable, str(contract.compare), str(contract.wsdls["svcServerAdmin"]),
                          str(candidate)], capture_output=True, text=True)
    return out.stdout.splitlines()[:-1]


def test_the_published_wsdl_is_the_reference_plus_the_operations_we_define(contract):
    """Every operation of the reference is served, so against the full reference the published WSDL
    differs only by exactly the components of the operations we define: nothing of the reference
    was changed or left out."""
    lines = _compare(contract, WSDL_DIR / "svcServerAdmin.wsdl")
    added = [line for line in lines if line.startswith("extra ")]
    assert added and added == lines, "\n".join(lines)[-2000:]
    # What we add is what the defined WSDL has that the reference lacks, all of it and nothing else.
    assert added == [line for line in _compare(contract, SERVER_ADMIN_DEFINED) if line.startswith("extra ")]
    assert all(any(op in line for op in SERVER_ADMIN_DEFINED_OPS) or "DomainListResult" in line
               or "BlockedAddress" in line for line in added)


def test_subset_tool_adds_defined_operations_and_refuses_redefining_the_contract(contract):
    reference = contract.wsdls["svcServerAdmin"]
    run = [sys.executable, "-m", "services.asmx.wsdl_subset", "--add", str(SERVER_ADMIN_DEFINED), str(reference)]
    done = subprocess.run([*run, "GetEdition"], capture_output=True, cwd=WSDL_DIR.parent)
    assert done.returncode == 0
    assert sorted(load_service(done.stdout).operations) == sorted(["GetEdition", *SERVER_ADMIN_DEFINED_OPS])
    clash = SERVER_ADMIN_DEFINED.read_bytes().replace(b"GetReservedDomainNames", b"GetEdition")
    with pytest.raises(SubsetError, match="already defines GetEdition"):
        subset(reference.read_bytes(), ["GetEdition"], clash)


def test_subset_tool_command_line(contract):
    reference = contract.wsdls["svcServerAdmin"]
    run = [sys.executable, "-m", "services.asmx.wsdl_subset", str(reference)]
    done = subprocess.run([*run, "GetEdition"], capture_output=True, cwd=WSDL_DIR.parent)
    assert done.returncode == 0 and sorted(load_service(done.stdout).operations) == ["GetEdition"]
    assert b"EditionResult" in done.stdout and b"SystemAdminListResult" not in done.stdout
    refused = subprocess.run([*run, "NoSuchOperation"], capture_output=True, text=True, cwd=WSDL_DIR.parent)
    assert refused.returncode == 1 and "NoSuchOperation" in refused.stderr
    with pytest.raises(SubsetError):
        subset(reference.read_bytes(), ["GetEdition", "Nope"])


def test_every_served_operation_is_bound_to_real_handler_code():
    services = load_services(WSDL_DIR)
    assert set(services) == {*FULL_SERVICES, "svcDomainAdmin", "svcServerAdmin"}
    for bound in services.values():
        assert set(bound.handlers) == set(bound.contract.operations)
        for name, handler in bound.handlers.items():
            assert handler.__name__ == name and handler.__module__.startswith("services.asmx.ops.")
    # Two services share an operation name; each has its own handler.
    alias, domain_alias = services["svcAliasAdmin"], services["svcDomainAliasAdmin"]
    assert alias.handlers["GetAliases"] is not domain_alias.handlers["GetAliases"]


def _module(**functions) -> types.ModuleType:
    module = types.ModuleType("fake_ops")
    module.SERVICE = "svcProductInfo"
    for name, function in functions.items():
        setattr(module, name, function)
    return module


def test_binding_refuses_missing_handlers_and_wrong_signatures():
    contract, wsdl = service("svcProductInfo"), PublishedWsdl((WSDL_DIR / "svcProductInfo.wsdl").read_bytes())

    @authenticated()
    def two(call, actor): ...
    @authenticated()
    def key(call, actor, Key): ...
    @authenticated()
    def activate(call, actor, **params): ...
    @authenticated()
    def misspelt(call, actor, key): ...
    @authenticated()
    def credentials_too(call, actor, AuthUserName, AuthPassword): ...
    @anonymous
    def no_actor(call, AuthUserName, AuthPassword): ...
    def undeclared(call, actor): ...
    @authenticated("authUsername", "authPassword")
    def other_spelling(call, actor): ...

    complete = dict(GetProductInfo=two, GetLicenseInfo=two, SetLicenseKey=key, ActivateLicenseKey=activate)
    bound = bind(contract, [_module(**complete)], wsdl)
    assert set(bound.handlers) == set(complete)
    assert bound.access["SetLicenseKey"].credentials == ("AuthUserName", "AuthPassword")
    anonymous_info = bind(contract, [_module(**{**complete, "GetProductInfo": no_actor})], wsdl)
    assert anonymous_info.access["GetProductInfo"].credentials is None
    with pytest.raises(HandlerError, match="svcProductInfo.SetLicenseKey has no handler"):
        bind(contract, [_module(**{**complete, "SetLicenseKey": None})], wsdl)
    for wrong in (misspelt, two):
        with pytest.raises(HandlerError, match="SetLicenseKey: handler parameters disagree"):
            bind(contract, [_module(**{**complete, "SetLicenseKey": wrong})], wsdl)
    # The credentials go to the dispatcher's login, not to the handler.
    with pytest.raises(HandlerError, match=r"GetProductInfo: .* disagree .*unexpected \['AuthUserName'"):
        bind(contract, [_module(**{**complete, "GetProductInfo": credentials_too})], wsdl)
    with pytest.raises(HandlerError, match="GetProductInfo: the handler declares no access"):
        bind(contract, [_module(**{**complete, "GetProductInfo": undeclared})], wsdl)
    with pytest.raises(HandlerError, match="GetProductInfo: the WSDL has no parameter authUsername, authPassword"):
        bind(contract, [_module(**{**complete, "GetProductInfo": other_spelling})], wsdl)
    with pytest.raises(HandlerError, match="no module"):
        bind(contract, [], wsdl)
    # A service split into modules by subject: each operation in exactly one of them.
    split = bind(contract, [_module(GetProductInfo=two, GetLicenseInfo=two),
                            _module(SetLicenseKey=key, ActivateLicenseKey=activate)], wsdl)
    assert split.handlers["SetLicenseKey"] is key
    with pytest.raises(HandlerError, match="SetLicenseKey has several handlers"):
        bind(contract, [_module(**complete), _module(SetLicenseKey=misspelt)], wsdl)
