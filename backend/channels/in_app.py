"""In-app notifications. There is no outside provider: a delivery is stored in the user's
inbox (backend.services.inbox), then published live on the user's Redis channel
(backend.services.live), which the API's GraphQL subscriptions read."""
