from typing import Literal, Optional, Union

from pydantic import Field

from .base_model import BaseModel
from .enums import ErrorCode
from .fragments import CampaignFields


class CancelCampaign(BaseModel):
    cancel_campaign: Union[
        "CancelCampaignCancelCampaignCampaign",
        "CancelCampaignCancelCampaignValidationError",
        "CancelCampaignCancelCampaignNotFoundError",
        "CancelCampaignCancelCampaignConflictError",
        "CancelCampaignCancelCampaignUnauthenticatedError",
        "CancelCampaignCancelCampaignForbiddenError",
        "CancelCampaignCancelCampaignUnavailableError",
    ] = Field(alias="cancelCampaign", discriminator="typename__")


class CancelCampaignCancelCampaignCampaign(CampaignFields):
    typename__: Literal["Campaign"] = Field(alias="__typename")


class CancelCampaignCancelCampaignValidationError(BaseModel):
    typename__: Literal["ValidationError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class CancelCampaignCancelCampaignNotFoundError(BaseModel):
    typename__: Literal["NotFoundError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class CancelCampaignCancelCampaignConflictError(BaseModel):
    typename__: Literal["ConflictError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class CancelCampaignCancelCampaignUnauthenticatedError(BaseModel):
    typename__: Literal["UnauthenticatedError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class CancelCampaignCancelCampaignForbiddenError(BaseModel):
    typename__: Literal["ForbiddenError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class CancelCampaignCancelCampaignUnavailableError(BaseModel):
    typename__: Literal["UnavailableError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


CancelCampaign.model_rebuild()
