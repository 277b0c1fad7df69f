from typing import Optional

from .base_model import BaseModel
from .fragments import CampaignFields


class GetCampaign(BaseModel):
    campaign: Optional["GetCampaignCampaign"]


GetCampaignCampaign = CampaignFields
GetCampaign.model_rebuild()
