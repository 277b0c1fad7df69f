from typing import Literal, Optional, Union

from pydantic import Field

from .base_model import BaseModel
from .enums import ErrorCode
from .fragments import (
    TemplateFields,
    TemplateFieldsContent,  # noqa: F401
)


class CreateTemplate(BaseModel):
    create_template: Union[
        "CreateTemplateCreateTemplateTemplate",
        "CreateTemplateCreateTemplateValidationError",
        "CreateTemplateCreateTemplateTemplateSyntaxError",
        "CreateTemplateCreateTemplateNotFoundError",
        "CreateTemplateCreateTemplateConflictError",
        "CreateTemplateCreateTemplateUnauthenticatedError",
        "CreateTemplateCreateTemplateForbiddenError",
        "CreateTemplateCreateTemplateUnavailableError",
    ] = Field(alias="createTemplate", discriminator="typename__")


class CreateTemplateCreateTemplateTemplate(TemplateFields):
    typename__: Literal["Template"] = Field(alias="__typename")


class CreateTemplateCreateTemplateValidationError(BaseModel):
    typename__: Literal["ValidationError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class CreateTemplateCreateTemplateTemplateSyntaxError(BaseModel):
    typename__: Literal["TemplateSyntaxError"] = Field(alias="__typename")
    line: Optional[int]
    code: ErrorCode
    message: str
    field: Optional[str]


class CreateTemplateCreateTemplateNotFoundError(BaseModel):
    typename__: Literal["NotFoundError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class CreateTemplateCreateTemplateConflictError(BaseModel):
    typename__: Literal["ConflictError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class CreateTemplateCreateTemplateUnauthenticatedError(BaseModel):
    typename__: Literal["UnauthenticatedError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class CreateTemplateCreateTemplateForbiddenError(BaseModel):
    typename__: Literal["ForbiddenError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


class CreateTemplateCreateTemplateUnavailableError(BaseModel):
    typename__: Literal["UnavailableError"] = Field(alias="__typename")
    code: ErrorCode
    message: str
    field: Optional[str]


CreateTemplate.model_rebuild()
