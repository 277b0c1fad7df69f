from typing import Any

from .async_base_client import AsyncBaseClient
from .cancel_campaign import CancelCampaign
from .create_campaign import CreateCampaign
from .create_template import CreateTemplate
from .get_campaign import GetCampaign
from .get_template import GetTemplate
from .input_types import (
    CampaignInput,
    CreateTemplateInput,
    EventInput,
    UpdateTemplateInput,
)
from .pause_campaign import PauseCampaign
from .resume_campaign import ResumeCampaign
from .send_event import SendEvent
from .send_events import SendEvents
from .update_template import UpdateTemplate


def gql(q: str) -> str:
    return q


class Client(AsyncBaseClient):
    async def send_event(self, input: EventInput, **kwargs: Any) -> SendEvent:
        query = gql("""
            mutation SendEvent($input: EventInput!) {
              sendEvent(input: $input) {
                ...EventResultFields
              }
            }

            fragment ErrorFields on Error {
              code
              message
              field
              ... on RateLimitedError {
                retryAfterSeconds
              }
            }

            fragment EventResultFields on SendEventResult {
              __typename
              ... on EventAccepted {
                eventId
                duplicate
                scheduledFor
              }
              ...ErrorFields
            }
            """)
        variables: dict[str, object] = {"input": input}
        response = await self.execute(
            query=query, operation_name="SendEvent", variables=variables, **kwargs
        )
        data = self.get_data(response)
        return SendEvent.model_validate(data)

    async def send_events(self, inputs: list[EventInput], **kwargs: Any) -> SendEvents:
        query = gql("""
            mutation SendEvents($inputs: [EventInput!]!) {
              sendEvents(inputs: $inputs) {
                __typename
                ... on EventBatch {
                  accepted
                  results {
                    ...EventResultFields
                  }
                }
                ...ErrorFields
              }
            }

            fragment ErrorFields on Error {
              code
              message
              field
              ... on RateLimitedError {
                retryAfterSeconds
              }
            }

            fragment EventResultFields on SendEventResult {
              __typename
              ... on EventAccepted {
                eventId
                duplicate
                scheduledFor
              }
              ...ErrorFields
            }
            """)
        variables: dict[str, object] = {"inputs": inputs}
        response = await self.execute(
            query=query, operation_name="SendEvents", variables=variables, **kwargs
        )
        data = self.get_data(response)
        return SendEvents.model_validate(data)

    async def create_template(
        self, input: CreateTemplateInput, **kwargs: Any
    ) -> CreateTemplate:
        query = gql("""
            mutation CreateTemplate($input: CreateTemplateInput!) {
              createTemplate(input: $input) {
                __typename
                ... on Template {
                  ...TemplateFields
                }
                ... on TemplateSyntaxError {
                  line
                }
                ...ErrorFields
              }
            }

            fragment ErrorFields on Error {
              code
              message
              field
              ... on RateLimitedError {
                retryAfterSeconds
              }
            }

            fragment TemplateFields on Template {
              id
              slug
              name
              description
              version
              variables
              content {
                channel
                locale
                subject
                title
                body
                html
              }
              createdAt
              updatedAt
            }
            """)
        variables: dict[str, object] = {"input": input}
        response = await self.execute(
            query=query, operation_name="CreateTemplate", variables=variables, **kwargs
        )
        data = self.get_data(response)
        return CreateTemplate.model_validate(data)

    async def update_template(
        self, slug: str, input: UpdateTemplateInput, **kwargs: Any
    ) -> UpdateTemplate:
        query = gql("""
            mutation UpdateTemplate($slug: String!, $input: UpdateTemplateInput!) {
              updateTemplate(slug: $slug, input: $input) {
                __typename
                ... on Template {
                  ...TemplateFields
                }
                ... on TemplateSyntaxError {
                  line
                }
                ...ErrorFields
              }
            }

            fragment ErrorFields on Error {
              code
              message
              field
              ... on RateLimitedError {
                retryAfterSeconds
              }
            }

            fragment TemplateFields on Template {
              id
              slug
              name
              description
              version
              variables
              content {
                channel
                locale
                subject
                title
                body
                html
              }
              createdAt
              updatedAt
            }
            """)
        variables: dict[str, object] = {"slug": slug, "input": input}
        response = await self.execute(
            query=query, operation_name="UpdateTemplate", variables=variables, **kwargs
        )
        data = self.get_data(response)
        return UpdateTemplate.model_validate(data)

    async def get_template(self, slug: str, **kwargs: Any) -> GetTemplate:
        query = gql("""
            query GetTemplate($slug: String!) {
              template(slug: $slug) {
                ...TemplateFields
              }
            }

            fragment TemplateFields on Template {
              id
              slug
              name
              description
              version
              variables
              content {
                channel
                locale
                subject
                title
                body
                html
              }
              createdAt
              updatedAt
            }
            """)
        variables: dict[str, object] = {"slug": slug}
        response = await self.execute(
            query=query, operation_name="GetTemplate", variables=variables, **kwargs
        )
        data = self.get_data(response)
        return GetTemplate.model_validate(data)

    async def create_campaign(
        self, input: CampaignInput, **kwargs: Any
    ) -> CreateCampaign:
        query = gql("""
            mutation CreateCampaign($input: CampaignInput!) {
              createCampaign(input: $input) {
                __typename
                ... on Campaign {
                  ...CampaignFields
                }
                ...ErrorFields
              }
            }

            fragment CampaignFields on Campaign {
              id
              name
              category
              templateSlug
              channels
              status
              nextRunAt
              runsStarted
              createdAt
              updatedAt
            }

            fragment ErrorFields on Error {
              code
              message
              field
              ... on RateLimitedError {
                retryAfterSeconds
              }
            }
            """)
        variables: dict[str, object] = {"input": input}
        response = await self.execute(
            query=query, operation_name="CreateCampaign", variables=variables, **kwargs
        )
        data = self.get_data(response)
        return CreateCampaign.model_validate(data)

    async def pause_campaign(self, id: str, **kwargs: Any) -> PauseCampaign:
        query = gql("""
            mutation PauseCampaign($id: ID!) {
              pauseCampaign(id: $id) {
                __typename
                ... on Campaign {
                  ...CampaignFields
                }
                ...ErrorFields
              }
            }

            fragment CampaignFields on Campaign {
              id
              name
              category
              templateSlug
              channels
              status
              nextRunAt
              runsStarted
              createdAt
              updatedAt
            }

            fragment ErrorFields on Error {
              code
              message
              field
              ... on RateLimitedError {
                retryAfterSeconds
              }
            }
            """)
        variables: dict[str, object] = {"id": id}
        response = await self.execute(
            query=query, operation_name="PauseCampaign", variables=variables, **kwargs
        )
        data = self.get_data(response)
        return PauseCampaign.model_validate(data)

    async def resume_campaign(self, id: str, **kwargs: Any) -> ResumeCampaign:
        query = gql("""
            mutation ResumeCampaign($id: ID!) {
              resumeCampaign(id: $id) {
                __typename
                ... on Campaign {
                  ...CampaignFields
                }
                ...ErrorFields
              }
            }

            fragment CampaignFields on Campaign {
              id
              name
              category
              templateSlug
              channels
              status
              nextRunAt
              runsStarted
              createdAt
              updatedAt
            }

            fragment ErrorFields on Error {
              code
              message
              field
              ... on RateLimitedError {
                retryAfterSeconds
              }
            }
            """)
        variables: dict[str, object] = {"id": id}
        response = await self.execute(
            query=query, operation_name="ResumeCampaign", variables=variables, **kwargs
        )
        data = self.get_data(response)
        return ResumeCampaign.model_validate(data)

    async def cancel_campaign(self, id: str, **kwargs: Any) -> CancelCampaign:
        query = gql("""
            mutation CancelCampaign($id: ID!) {
              cancelCampaign(id: $id) {
                __typename
                ... on Campaign {
                  ...CampaignFields
                }
                ...ErrorFields
              }
            }

            fragment CampaignFields on Campaign {
              id
              name
              category
              templateSlug
              channels
              status
              nextRunAt
              runsStarted
              createdAt
              updatedAt
            }

            fragment ErrorFields on Error {
              code
              message
              field
              ... on RateLimitedError {
                retryAfterSeconds
              }
            }
            """)
        variables: dict[str, object] = {"id": id}
        response = await self.execute(
            query=query, operation_name="CancelCampaign", variables=variables, **kwargs
        )
        data = self.get_data(response)
        return CancelCampaign.model_validate(data)

    async def get_campaign(self, id: str, **kwargs: Any) -> GetCampaign:
        query = gql("""
            query GetCampaign($id: ID!) {
              campaign(id: $id) {
                ...CampaignFields
              }
            }

            fragment CampaignFields on Campaign {
              id
              name
              category
              templateSlug
              channels
              status
              nextRunAt
              runsStarted
              createdAt
              updatedAt
            }
            """)
        variables: dict[str, object] = {"id": id}
        response = await self.execute(
            query=query, operation_name="GetCampaign", variables=variables, **kwargs
        )
        data = self.get_data(response)
        return GetCampaign.model_validate(data)
