from typing import Optional

from .base_model import BaseModel
from .fragments import TemplateFields


class GetTemplate(BaseModel):
    template: Optional["GetTemplateTemplate"]


GetTemplateTemplate = TemplateFields
GetTemplate.model_rebuild()
