"""The GraphQL schema: Strawberry types, inputs, errors; query, mutation, subscription roots."""
