from typing import Literal, Optional, Union

from pydantic import Field

from .base_model import BaseModel
from .enums import ErrorCode
from .fragments import CampaignFields


class ResumeCampaign(BaseModel):
    resume_campaign: Union[
        "ResumeCampaignResumeCampaignCampaign",
        "ResumeCampaignResumeCampaignValidationError",
        "ResumeCampaignResumeCampaignNotFoundError",
        "ResumeCampaignResumeCampaignConflictError",
        "ResumeCampaignResumeCampaignUnauthenticatedError",
        "ResumeCampaignResumeCampaignForbiddenError",
        "ResumeCampaignResumeCampaignUnavailableError",
    ] = Field(alias="resumeCampaign", discriminator="typename__")


class ResumeCampaignResumeCampaignCampaign(CampaignFields):
    typename__: Literal["Campaign"] = Field(alias="__typename")


class ResumeCampaignResumeCampaignValidationError(BaseModel):
    typename__: Literal["ValidationError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class ResumeCampaignResumeCampaignNotFoundError(BaseModel):
    typename__: Literal["NotFoundError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class ResumeCampaignResumeCampaignConflictError(BaseModel):
    typename__: Literal["ConflictError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class ResumeCampaignResumeCampaignUnauthenticatedError(BaseModel):
    typename__: Literal["UnauthenticatedError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class ResumeCampaignResumeCampaignForbiddenError(BaseModel):
    typename__: Literal["ForbiddenError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class ResumeCampaignResumeCampaignUnavailableError(BaseModel):
    typename__: Literal["UnavailableError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


ResumeCampaign.model_rebuild()
