"""The shared object model: kinds, metadata, validation, defaulting, selectors, quantities
and ``Status`` errors. Objects are plain JSON-shaped dicts throughout; these modules read
and change them in place.

Submodules: :mod:`~pilothouse.model.errors`, :mod:`~pilothouse.model.kinds`,
:mod:`~pilothouse.model.quantity`.
"""

from pilothouse.model.errors import (AlreadyExists, BadRequest, Conflict, Expired, FieldError,
                                     FieldErrorType, FieldPath, Forbidden, Gone, InternalError,
                                     Invalid, MethodNotAllowed, NotAcceptable, NotFound,
                                     RequestEntityTooLarge, ServiceUnavailable, StatusError,
                                     Timeout, TooManyRequests, Unauthorized,
                                     UnsupportedMediaType)
from pilothouse.model.kinds import Kind, KindRegistry, Subresource, UnknownKind, builtin_registry
from pilothouse.model.quantity import Quantity, QuantityError, QuantityFormat, parse_quantity

__all__ = [
    "AlreadyExists", "BadRequest", "Conflict", "Expired", "FieldError", "FieldErrorType",
    "FieldPath", "Forbidden", "Gone", "InternalError", "Invalid", "Kind", "KindRegistry",
    "MethodNotAllowed", "NotAcceptable", "NotFound", "Quantity", "QuantityError",
    "QuantityFormat", "RequestEntityTooLarge", "ServiceUnavailable", "StatusError",
    "Subresource", "Timeout", "TooManyRequests", "Unauthorized", "UnknownKind",
    "UnsupportedMediaType", "builtin_registry", "parse_quantity",
]
