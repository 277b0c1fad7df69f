from typing import Literal, Optional, Union

from pydantic import Field

from .base_model import BaseModel
from .enums import ErrorCode
from .fragments import CampaignFields


class PauseCampaign(BaseModel):
    pause_campaign: Union[
        "PauseCampaignPauseCampaignCampaign",
        "PauseCampaignPauseCampaignValidationError",
        "PauseCampaignPauseCampaignNotFoundError",
        "PauseCampaignPauseCampaignConflictError",
        "PauseCampaignPauseCampaignUnauthenticatedError",
        "PauseCampaignPauseCampaignForbiddenError",
        "PauseCampaignPauseCampaignUnavailableError",
    ] = Field(alias="pauseCampaign", discriminator="typename__")


class PauseCampaignPauseCampaignCampaign(CampaignFields):
    typename__: Literal["Campaign"] = Field(alias="__typename")


class PauseCampaignPauseCampaignValidationError(BaseModel):
    typename__: Literal["ValidationError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class PauseCampaignPauseCampaignNotFoundError(BaseModel):
    typename__: Literal["NotFoundError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class PauseCampaignPauseCampaignConflictError(BaseModel):
    typename__: Literal["ConflictError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class PauseCampaignPauseCampaignUnauthenticatedError(BaseModel):
    typename__: Literal["UnauthenticatedError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class PauseCampaignPauseCampaignForbiddenError(BaseModel):
    typename__: Literal["ForbiddenError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class PauseCampaignPauseCampaignUnavailableError(BaseModel):
    typename__: Literal["UnavailableError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


PauseCampaign.model_rebuild()
