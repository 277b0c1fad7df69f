from typing import Literal, Optional, Union

from pydantic import Field

from .base_model import BaseModel
from .enums import ErrorCode
from .fragments import CampaignFields


class CreateCampaign(BaseModel):
    create_campaign: Union[
        "CreateCampaignCreateCampaignCampaign",
        "CreateCampaignCreateCampaignValidationError",
        "CreateCampaignCreateCampaignNotFoundError",
        "CreateCampaignCreateCampaignConflictError",
        "CreateCampaignCreateCampaignUnauthenticatedError",
        "CreateCampaignCreateCampaignForbiddenError",
        "CreateCampaignCreateCampaignUnavailableError",
    ] = Field(alias="createCampaign", discriminator="typename__")


class CreateCampaignCreateCampaignCampaign(CampaignFields):
    typename__: Literal["Campaign"] = Field(alias="__typename")


class CreateCampaignCreateCampaignValidationError(BaseModel):
    typename__: Literal["ValidationError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class CreateCampaignCreateCampaignNotFoundError(BaseModel):
    typename__: Literal["NotFoundError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class CreateCampaignCreateCampaignConflictError(BaseModel):
    typename__: Literal["ConflictError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class CreateCampaignCreateCampaignUnauthenticatedError(BaseModel):
    typename__: Literal["UnauthenticatedError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class CreateCampaignCreateCampaignForbiddenError(BaseModel):
    typename__: Literal["ForbiddenError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class CreateCampaignCreateCampaignUnavailableError(BaseModel):
    typename__: Literal["UnavailableError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


CreateCampaign.model_rebuild()
