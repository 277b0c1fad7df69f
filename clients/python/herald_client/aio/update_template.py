from typing import Literal, Optional, Union

from pydantic import Field

from .base_model import BaseModel
from .enums import ErrorCode
from .fragments import (
    TemplateFields,
    TemplateFieldsContent,  # noqa: F401
)


class UpdateTemplate(BaseModel):
    update_template: Union[
        "UpdateTemplateUpdateTemplateTemplate",
        "UpdateTemplateUpdateTemplateValidationError",
        "UpdateTemplateUpdateTemplateTemplateSyntaxError",
        "UpdateTemplateUpdateTemplateNotFoundError",
        "UpdateTemplateUpdateTemplateConflictError",
        "UpdateTemplateUpdateTemplateUnauthenticatedError",
        "UpdateTemplateUpdateTemplateForbiddenError",
        "UpdateTemplateUpdateTemplateUnavailableError",
    ] = Field(alias="updateTemplate", discriminator="typename__")


class UpdateTemplateUpdateTemplateTemplate(TemplateFields):
    typename__: Literal["Template"] = Field(alias="__typename")


class UpdateTemplateUpdateTemplateValidationError(BaseModel):
    typename__: Literal["ValidationError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class UpdateTemplateUpdateTemplateTemplateSyntaxError(BaseModel):
    typename__: Literal["TemplateSyntaxError"] = Field(alias="__typename")
    line: Optional[int]
    code: ErrorCode
    message: str
    field: Optional[str]


class UpdateTemplateUpdateTemplateNotFoundError(BaseModel):
    typename__: Literal["NotFoundError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class UpdateTemplateUpdateTemplateConflictError(BaseModel):
    typename__: Literal["ConflictError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class UpdateTemplateUpdateTemplateUnauthenticatedError(BaseModel):
    typename__: Literal["UnauthenticatedError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class UpdateTemplateUpdateTemplateForbiddenError(BaseModel):
    typename__: Literal["ForbiddenError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class UpdateTemplateUpdateTemplateUnavailableError(BaseModel):
    typename__: Literal["UnavailableError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


UpdateTemplate.model_rebuild()
