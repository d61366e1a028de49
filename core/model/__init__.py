"""The shared object model: kinds, metadata, validation, defaulting, selectors, quantities
and ``Status`` errors. Objects are plain JSON-shaped dicts throughout; these modules read
and change them in place.

=====================================  ====================================================
module                                 what it holds
=====================================  ====================================================
:mod:`pilothouse.model.errors`         ``StatusError`` and its 4xx/5xx subclasses,
                                       ``FieldError``, ``FieldPath``
:mod:`pilothouse.model.kinds`          ``Kind``, ``KindRegistry``, ``builtin_registry()``
:mod:`pilothouse.model.meta`           accessors, ``prepare_for_create`` /
                                       ``prepare_for_update``, finalizers, owner
                                       references, graceful deletion
:mod:`pilothouse.model.validation`     ``validate(kind, obj)``, ``validate_update``,
                                       ``validate_object_meta``, name syntax checks
:mod:`pilothouse.model.defaults`       ``apply_defaults(kind, obj)``
:mod:`pilothouse.model.selectors`      ``LabelSelector``, ``FieldSelector``
:mod:`pilothouse.model.quantity`       ``Quantity`` (exact resource quantities)
=====================================  ====================================================

The API server's order for a write: decode → :func:`apply_defaults` → admission (mutate) →
:func:`~pilothouse.model.meta.prepare_for_create` or
:func:`~pilothouse.model.validation.validate_object_meta_update` +
:func:`~pilothouse.model.meta.prepare_for_update` → :func:`validate` /
:func:`validate_update` → admission (validate) → store.

Since 0.1.
"""

from pilothouse.model.defaults import apply_defaults, register_defaulter
from pilothouse.model.errors import (AlreadyExists, BadRequest, Conflict, Expired, FieldError,
                                     FieldErrorType, FieldPath, Forbidden, Gone, InternalError,
                                     Invalid, MethodNotAllowed, NotAcceptable, NotFound,
                                     RequestEntityTooLarge, ServiceUnavailable, StatusError,
                                     Timeout, TooManyRequests, Unauthorized,
                                     UnsupportedMediaType)
from pilothouse.model.kinds import Kind, KindRegistry, Subresource, UnknownKind, builtin_registry
from pilothouse.model.meta import prepare_for_create, prepare_for_update
from pilothouse.model.quantity import Quantity, QuantityError, QuantityFormat, parse_quantity
from pilothouse.model.selectors import (FieldSelector, LabelSelector, SelectorError,
                                        parse_field_selector, parse_label_selector)
from pilothouse.model.validation import (register_validator, validate, validate_object_meta,
                                         validate_object_meta_update, validate_update)

__all__ = [
    "AlreadyExists", "BadRequest", "Conflict", "Expired", "FieldError", "FieldErrorType",
    "FieldPath", "FieldSelector", "Forbidden", "Gone", "InternalError", "Invalid", "Kind",
    "KindRegistry", "LabelSelector", "MethodNotAllowed", "NotAcceptable", "NotFound",
    "Quantity", "QuantityError", "QuantityFormat", "RequestEntityTooLarge", "SelectorError",
    "ServiceUnavailable", "StatusError", "Subresource", "Timeout", "TooManyRequests",
    "Unauthorized", "UnknownKind", "UnsupportedMediaType", "apply_defaults",
    "builtin_registry", "parse_field_selector", "parse_label_selector", "parse_quantity",
    "prepare_for_create", "prepare_for_update", "register_defaulter", "register_validator",
    "validate", "validate_object_meta", "validate_object_meta_update", "validate_update",
]
