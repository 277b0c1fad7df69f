from datetime import datetime
from typing import Literal, Optional, Union

from pydantic import Field

from .base_model import BaseModel
from .enums import ErrorCode


class SendEvent(BaseModel):
    send_event: Union[
        "SendEventSendEventEventAccepted",
        "SendEventSendEventValidationError",
        "SendEventSendEventNotFoundError",
        "SendEventSendEventUnavailableError",
        "SendEventSendEventUnauthenticatedError",
        "SendEventSendEventForbiddenError",
        "SendEventSendEventRateLimitedError",
    ] = Field(alias="sendEvent", discriminator="typename__")


class SendEventSendEventEventAccepted(BaseModel):
    typename__: Literal["EventAccepted"] = Field(alias="__typename")
    event_id: str = Field(alias="eventId")
    duplicate: bool
    scheduled_for: Optional[datetime] = Field(alias="scheduledFor")


class SendEventSendEventValidationError(BaseModel):
    typename__: Literal["ValidationError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class SendEventSendEventNotFoundError(BaseModel):
    typename__: Literal["NotFoundError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class SendEventSendEventUnavailableError(BaseModel):
    typename__: Literal["UnavailableError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class SendEventSendEventUnauthenticatedError(BaseModel):
    typename__: Literal["UnauthenticatedError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class SendEventSendEventForbiddenError(BaseModel):
    typename__: Literal["ForbiddenError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class SendEventSendEventRateLimitedError(BaseModel):
    typename__: Literal["RateLimitedError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]
    retry_after_seconds: float = Field(alias="retryAfterSeconds")


SendEvent.model_rebuild()
