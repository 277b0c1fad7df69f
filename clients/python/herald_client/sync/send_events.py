from datetime import datetime
from typing import Annotated, Literal, Optional, Union

from pydantic import Field

from .base_model import BaseModel
from .enums import ErrorCode


class SendEvents(BaseModel):
    send_events: Union[
        "SendEventsSendEventsEventBatch",
        "SendEventsSendEventsValidationError",
        "SendEventsSendEventsUnauthenticatedError",
        "SendEventsSendEventsForbiddenError",
        "SendEventsSendEventsUnavailableError",
        "SendEventsSendEventsRateLimitedError",
    ] = Field(alias="sendEvents", discriminator="typename__")


class SendEventsSendEventsEventBatch(BaseModel):
    typename__: Literal["EventBatch"] = Field(alias="__typename")
    accepted: int
    results: list[
        Annotated[
            Union[
                "SendEventsSendEventsEventBatchResultsEventAccepted",
                "SendEventsSendEventsEventBatchResultsValidationError",
                "SendEventsSendEventsEventBatchResultsNotFoundError",
                "SendEventsSendEventsEventBatchResultsUnavailableError",
                "SendEventsSendEventsEventBatchResultsUnauthenticatedError",
                "SendEventsSendEventsEventBatchResultsForbiddenError",
                "SendEventsSendEventsEventBatchResultsRateLimitedError",
            ],
            Field(discriminator="typename__"),
        ]
    ]


class SendEventsSendEventsEventBatchResultsEventAccepted(BaseModel):
    typename__: Literal["EventAccepted"] = Field(alias="__typename")
    event_id: str = Field(alias="eventId")
    duplicate: bool
    scheduled_for: Optional[datetime] = Field(alias="scheduledFor")


class SendEventsSendEventsEventBatchResultsValidationError(BaseModel):
    typename__: Literal["ValidationError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class SendEventsSendEventsEventBatchResultsNotFoundError(BaseModel):
    typename__: Literal["NotFoundError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class SendEventsSendEventsEventBatchResultsUnavailableError(BaseModel):
    typename__: Literal["UnavailableError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class SendEventsSendEventsEventBatchResultsUnauthenticatedError(BaseModel):
    typename__: Literal["UnauthenticatedError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class SendEventsSendEventsEventBatchResultsForbiddenError(BaseModel):
    typename__: Literal["ForbiddenError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class SendEventsSendEventsEventBatchResultsRateLimitedError(BaseModel):
    typename__: Literal["RateLimitedError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]
    retry_after_seconds: float = Field(alias="retryAfterSeconds")


class SendEventsSendEventsValidationError(BaseModel):
    typename__: Literal["ValidationError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class SendEventsSendEventsUnauthenticatedError(BaseModel):
    typename__: Literal["UnauthenticatedError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class SendEventsSendEventsForbiddenError(BaseModel):
    typename__: Literal["ForbiddenError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class SendEventsSendEventsUnavailableError(BaseModel):
    typename__: Literal["UnavailableError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class SendEventsSendEventsRateLimitedError(BaseModel):
    typename__: Literal["RateLimitedError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]
    retry_after_seconds: float = Field(alias="retryAfterSeconds")


SendEvents.model_rebuild()
SendEventsSendEventsEventBatch.model_rebuild()
