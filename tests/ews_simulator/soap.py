"""SOAP envelope handling for the EWS simulator: parsing requests, building responses and faults.

Only what the simulated operations need: the EWS namespaces, the ``ServerVersionInfo`` header,
response-message envelopes and the fault shapes that Exchange sends (schema validation, invalid
request, server busy with ``BackOffMilliseconds``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from lxml import etree

SOAPNS = "http://schemas.xmlsoap.org/soap/envelope/"
MNS = "http://schemas.microsoft.com/exchange/services/2006/messages"
TNS = "http://schemas.microsoft.com/exchange/services/2006/types"
ENS = "http://schemas.microsoft.com/exchange/services/2006/errors"
NSMAP = {"s": SOAPNS, "m": MNS, "t": TNS}

# The API versions a simulated Exchange 2016 accepts in RequestServerVersion.
API_VERSIONS = (
    "Exchange2007",
    "Exchange2007_SP1",
    "Exchange2010",
    "Exchange2010_SP1",
    "Exchange2010_SP2",
    "Exchange2013",
    "Exchange2013_SP1",
    "Exchange2015",
    "Exchange2016",
)
SERVER_BUILD = (15, 1, 2507, 6)  # Exchange Server 2016 CU23

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, huge_tree=True, remove_blank_text=True
)


def m(tag: str) -> str:
    return f"{{{MNS}}}{tag}"


def t(tag: str) -> str:
    return f"{{{TNS}}}{tag}"


class SoapFault(Exception):
    """A request-level failure, answered with a SOAP fault (HTTP 500), like Exchange does.

    :param code: the EWS response code, e.g. ``ErrorSchemaValidation``.
    :param values: ``t:Value`` entries of the fault's ``MessageXml`` (e.g. ``BackOffMilliseconds``).
    """

    def __init__(self, code: str, message: str, values: dict[str, str] | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.values = values or {}


class ResponseError(Exception):
    """A failure of one response message (one item or folder of a request), not of the request."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class SoapRequest:
    """A parsed EWS request: the operation element and the header values the simulator honours."""

    operation: str
    body: etree._Element
    api_version: str
    impersonated: str | None
    headers: dict[str, str] = field(default_factory=dict)


def parse_request(data: bytes) -> SoapRequest:
    """Parse and validate a SOAP envelope; raise :class:`SoapFault` for malformed requests."""
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        raise SoapFault(
            "ErrorSchemaValidation",
            "The request failed schema validation: the request is not well-formed XML.",
            {"LineNumber": str(line), "LinePosition": str(column), "Violation": str(exc.msg)},
        ) from None
    if root.tag != f"{{{SOAPNS}}}Envelope":
        raise SoapFault(
            "ErrorSchemaValidation", "The request failed schema validation: no SOAP Envelope."
        )
    body = root.find(f"{{{SOAPNS}}}Body")
    if body is None or len(body) != 1:
        raise SoapFault(
            "ErrorInvalidRequest", "The request is invalid: the SOAP Body must hold one operation."
        )
    operation_elem = body[0]
    if etree.QName(operation_elem).namespace != MNS:
        raise SoapFault(
            "ErrorSchemaValidation",
            "The request failed schema validation: the operation is not in the messages namespace.",
        )
    api_version = "Exchange2007_SP1"
    impersonated = None
    header = root.find(f"{{{SOAPNS}}}Header")
    if header is not None:
        version_elem = header.find(t("RequestServerVersion"))
        if version_elem is not None:
            api_version = version_elem.get("Version", "")
            if api_version not in API_VERSIONS:
                raise SoapFault(
                    "ErrorInvalidServerVersion", "The specified server version is invalid."
                )
        impersonation = header.find(t("ExchangeImpersonation"))
        if impersonation is not None:
            sid = impersonation.find(t("ConnectingSID"))
            values = [c.text for c in (sid if sid is not None else []) if c.text]
            if not values:
                raise SoapFault(
                    "ErrorSchemaValidation",
                    "The request failed schema validation: ExchangeImpersonation needs a ConnectingSID.",
                )
            impersonated = values[0].strip()
    return SoapRequest(
        operation=etree.QName(operation_elem).localname,
        body=operation_elem,
        api_version=api_version,
        impersonated=impersonated,
    )


def _envelope(api_version: str | None) -> tuple[etree._Element, etree._Element]:
    envelope = etree.Element(f"{{{SOAPNS}}}Envelope", nsmap=NSMAP)
    if api_version:
        header = etree.SubElement(envelope, f"{{{SOAPNS}}}Header")
        major, minor, build, revision = SERVER_BUILD
        etree.SubElement(
            header,
            t("ServerVersionInfo"),
            MajorVersion=str(major),
            MinorVersion=str(minor),
            MajorBuildNumber=str(build),
            MinorBuildNumber=str(revision),
            Version=api_version,
        )
    body = etree.SubElement(envelope, f"{{{SOAPNS}}}Body")
    return envelope, body


def response_document(operation: str, messages: list[etree._Element], api_version: str) -> bytes:
    """The envelope of a successful operation: ``<m:{Op}Response><m:ResponseMessages>...``."""
    envelope, body = _envelope(api_version)
    response = etree.SubElement(body, m(f"{operation}Response"))
    container = etree.SubElement(response, m("ResponseMessages"))
    container.extend(messages)
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


def fault_document(fault: SoapFault, api_version: str | None = None) -> bytes:
    """A SOAP fault in the shape Exchange sends (``detail`` holds the EWS code and MessageXml)."""
    envelope, body = _envelope(api_version)
    fault_elem = etree.SubElement(body, f"{{{SOAPNS}}}Fault")
    code = etree.SubElement(fault_elem, "faultcode", nsmap={"a": TNS})
    code.text = f"a:{fault.code}"
    etree.SubElement(fault_elem, "faultstring").text = fault.message
    detail = etree.SubElement(fault_elem, "detail")
    etree.SubElement(detail, f"{{{ENS}}}ResponseCode", nsmap={"e": ENS}).text = fault.code
    etree.SubElement(detail, f"{{{ENS}}}Message", nsmap={"e": ENS}).text = fault.message
    if fault.values:
        message_xml = etree.SubElement(detail, t("MessageXml"))
        for name, value in fault.values.items():
            if (
                fault.code == "ErrorSchemaValidation"
            ):  # LineNumber, LinePosition, Violation elements
                etree.SubElement(message_xml, t(name)).text = value
            else:
                etree.SubElement(message_xml, t("Value"), Name=name).text = value
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


def response_message(operation: str, error: ResponseError | None = None) -> etree._Element:
    """An ``<m:{Op}ResponseMessage>``: success, or the error's class, text and code."""
    elem = etree.Element(m(f"{operation}ResponseMessage"))
    if error is None:
        elem.set("ResponseClass", "Success")
        etree.SubElement(elem, m("ResponseCode")).text = "NoError"
    else:
        elem.set("ResponseClass", "Error")
        etree.SubElement(elem, m("MessageText")).text = error.message
        etree.SubElement(elem, m("ResponseCode")).text = error.code
        etree.SubElement(elem, m("DescriptiveLinkKey")).text = "0"
    return elem


# -- value conversions ----------------------------------------------------------------------


def parse_bool(text: str | None, where: str) -> bool:
    value = (text or "").strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise SoapFault(
        "ErrorSchemaValidation", f"The request failed schema validation: {where} is not a boolean."
    )


def format_bool(value: bool) -> str:
    return "true" if value else "false"


def parse_datetime(text: str | None, where: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat((text or "").strip().replace("Z", "+00:00"))
    except ValueError:
        raise SoapFault(
            "ErrorSchemaValidation",
            f"The request failed schema validation: {where} is not a dateTime.",
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def format_datetime(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_int(text: str | None, where: str) -> int:
    try:
        return int((text or "").strip())
    except ValueError:
        raise SoapFault(
            "ErrorSchemaValidation",
            f"The request failed schema validation: {where} is not an integer.",
        ) from None


def require(parent: etree._Element, tag: str, what: str) -> etree._Element:
    """The child ``tag`` of ``parent``, or a schema-validation fault naming ``what``."""
    child = parent.find(tag)
    if child is None:
        raise SoapFault(
            "ErrorSchemaValidation", f"The request failed schema validation: {what} is missing."
        )
    return child
