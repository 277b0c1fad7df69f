// The tabs GraphiQL opens with when the browser has none saved.

const QUERY = `# Herald's GraphQL API. Run with Ctrl-Enter; the Docs and Explorer buttons on the left
# show the schema. The Authorization header below decides what you may see.
query Inbox {
  unreadCount
  inbox(first: 10) {
    edges {
      node {
        id
        eventType
        title
        body
        createdAt
      }
    }
  }
}
`;

const SUBSCRIPTION = `# Your in-app notifications, live, over graphql-transport-ws. Start it, then send
# an event to your user (sendEvent with a service token) and watch it arrive.
subscription Notifications {
  notifications {
    __typename
    ... on Notification {
      id
      eventId
      eventType
      title
      body
      createdAt
    }
    ... on ReadStateChange {
      ids
      read
    }
  }
}
`;

export function defaultTabs(headers) {
  return [
    { query: QUERY, headers: headers ?? "" },
    { query: SUBSCRIPTION, headers: headers ?? "" },
  ];
}
