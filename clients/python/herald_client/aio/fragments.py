from datetime import datetime
from typing import Optional

from pydantic import Field

from .base_model import BaseModel
from .enums import CampaignStatus, Channel


class CampaignFields(BaseModel):
    id: str
    name: str
    category: str
    template_slug: str = Field(alias="templateSlug")
    channels: list[Channel]
    status: CampaignStatus
    next_run_at: Optional[datetime] = Field(alias="nextRunAt")
    runs_started: int = Field(alias="runsStarted")
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime = Field(alias="updatedAt")


class TemplateFields(BaseModel):
    id: str
    slug: str
    name: str
    description: str
    version: int
    variables: list[str]
    content: list["TemplateFieldsContent"]
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime = Field(alias="updatedAt")


class TemplateFieldsContent(BaseModel):
    channel: Channel
    locale: str
    subject: Optional[str]
    title: Optional[str]
    body: Optional[str]
    html: Optional[str]


CampaignFields.model_rebuild()
TemplateFields.model_rebuild()
