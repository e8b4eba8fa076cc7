"""Typed errors, mapped to OpenAI-style HTTP error bodies in one place.

    ConscienceError                      500 internal_error
     ├── InvalidRequest                  400 invalid_request_error
     │    ├── UnknownFramework           400 (lists the available frameworks)
     │    ├── UnknownModel               404 model_not_found
     │    └── ContextLengthExceeded      400 context_length_exceeded
     ├── AuthenticationFailed            401 authentication_error
     ├── PermissionDenied                403 permission_error
     ├── PayloadTooLarge                 413 invalid_request_error
     ├── ReviewFailed                    503 conscience_error (fail_closed with no safe answer)
     ├── ReviewOutputInvalid             502 (internal: the failure policy handles it)
     └── EngineUnavailable               503 service_unavailable

Pipeline code raises these; ``app.server`` turns them into responses. Nothing returns
error values.
"""

from __future__ import annotations


class ConscienceError(Exception):
    """Base class: every error the server answers with a body of its own."""

    status_code = 500
    error_type = "internal_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def body(self) -> dict:
        """The OpenAI error body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(ConscienceError):
    """The request is malformed or asks for something impossible."""

    status_code = 400
    error_type = "invalid_request_error"


class UnknownFramework(InvalidRequest):
    """The request names a framework the server does not have."""

    code = "unknown_framework"

    def __init__(self, name: str, available: list[str]):
        super().__init__(
            f"Unknown framework {name!r}. Available: {', '.join(sorted(available))}.",
            param="conscience.framework",
        )


class UnknownModel(InvalidRequest):
    """The request names a model the server does not serve."""

    status_code = 404
    code = "model_not_found"


class ContextLengthExceeded(InvalidRequest):
    """Prompt plus requested completion do not fit the model's context."""

    code = "context_length_exceeded"


class AuthenticationFailed(ConscienceError):
    """API keys are configured and the request's key is missing or wrong."""

    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(ConscienceError):
    """The request asks for something the operator forbids (e.g. mode ``off``)."""

    status_code = 403
    error_type = "permission_error"


class PayloadTooLarge(ConscienceError):
    """The request body is larger than ``max_body_bytes``."""

    status_code = 413
    error_type = "invalid_request_error"
    code = "payload_too_large"


class ReviewFailed(ConscienceError):
    """The review failed under ``fail_closed`` and no safe answer is configured."""

    status_code = 503
    error_type = "conscience_error"
    code = "review_failed"


class EngineUnavailable(ConscienceError):
    """The inference engine failed or is not ready."""

    status_code = 503
    error_type = "service_unavailable"
    code = "engine_unavailable"


class ReviewOutputInvalid(ConscienceError):
    """The judge's output matched none of the verdict labels (handled by the failure policy)."""

    status_code = 502
    error_type = "conscience_error"
    code = "review_output_invalid"
