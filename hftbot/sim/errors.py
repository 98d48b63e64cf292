"""The venue's refusals: `ApiError` with Binance's code, message and HTTP status, and the request
parameter readers that raise them.

Every message is Binance's own wording (docs/sim.md lists the codes). The most common one,
-1102 "Mandatory parameter '<name>' was not sent, was empty/null, or malformed.", is built in one
place (`mandatory`) for every parameter that is missing or cannot be read.

Pure: no I/O, no venue state.
"""

from __future__ import annotations

from decimal import Decimal


class ApiError(Exception):
    """A request the venue refuses: Binance error code, message and HTTP status."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.status = status


class UnknownStatus(Exception):
    """Fault injection: the request executed, but the caller hears 503 'unknown'."""


UNKNOWN_MSG = "Unknown error, please check your request or try again later."


def http_status(code: int) -> int:
    """The HTTP status Binance answers an error code with."""
    if code in (-1003, -1015):
        return 429
    if code in (-2014, -2015):
        return 401
    return 400


def api_error(code: int, msg: str) -> ApiError:
    """An `ApiError` with the HTTP status that goes with its code."""
    return ApiError(code, msg, http_status(code))


def mandatory(name: str) -> ApiError:
    """-1102 for a parameter that is missing, empty or cannot be read."""
    return api_error(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def int_param(params: dict, name: str, default: int | None) -> int | None:
    """An integer parameter; `default` when absent or empty, -1102 when not an integer."""
    v = params.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except (TypeError, ValueError):
        raise mandatory(name) from None


def check_symbol(params: dict, symbol: str, required: bool = True) -> str | None:
    """The request's `symbol` (-1102 when required and missing, -1121 when not the venue's)."""
    sym = params.get("symbol")
    if not sym:
        if required:
            raise mandatory("symbol")
        return None
    if sym.upper() != symbol:
        raise api_error(-1121, "Invalid symbol.")
    return sym


def param_str(v: object) -> str:
    """A WS API JSON parameter as the string a REST query would carry (`true`, `5`, `0.1`)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def dec(x: Decimal, places: int) -> str:
    """A Decimal as a fixed-point string with exactly `places` decimals."""
    return f"{x.quantize(Decimal(1).scaleb(-places)):f}"
