// The inbox demo: sign in as one of the auth-service stand-in's demo users (development
// only), then hand <herald-inbox> a function returning that user's token.
const authUrl = document.body.dataset.authUrl;
const dev = `${authUrl}/api/v1/auth/dev`;
const inbox = document.getElementById("inbox");
const select = document.getElementById("user");
const problem = document.getElementById("problem");

function show(message) {
  problem.textContent = message;
  problem.hidden = !message;
}

async function demoToken(userId) {
  const response = await fetch(`${dev}/token`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user_id: userId }),
  });
  if (!response.ok) throw new Error(`the stand-in refused a token for ${userId}`);
  return (await response.json()).access_token;
}

// A token provider as an app would write one: a cached token, renewed before it gets old.
function tokenProvider(userId) {
  let token = null;
  let fetchedAt = 0;
  return async () => {
    if (token === null || Date.now() - fetchedAt > 10 * 60 * 1000) {
      token = await demoToken(userId);
      fetchedAt = Date.now();
    }
    return token;
  };
}

async function listUsers() {
  const response = await fetch(`${dev}/users`);
  const users = (await response.json()).filter((u) => u.roles.includes("user"));
  for (const user of users) {
    const option = document.createElement("option");
    option.value = user.id;
    option.textContent = `${user.first_name} ${user.last_name} (${user.id})`;
    select.append(option);
  }
  document.body.dataset.ready = "true";
}

document.getElementById("sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  const userId = select.value;
  inbox.tokenProvider = tokenProvider(userId);
  inbox.hidden = false;
  document.getElementById("who").textContent = select.selectedOptions[0].textContent;
  document.getElementById("signed-in").hidden = false;
  document.body.dataset.user = userId;
});

document.getElementById("send").addEventListener("click", async () => {
  const sent = document.getElementById("sent");
  sent.textContent = "Sending…";
  try {
    const response = await fetch("/graphql", {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Authorization: `Bearer ${await demoToken("demo-service")}`,
      },
      body: JSON.stringify({
        query: `mutation($input: EventInput!) { sendEvent(input: $input) { __typename
          ... on Error { message } } }`,
        variables: {
          input: { type: "user_registered", userIds: [document.body.dataset.user], channels: ["IN_APP"] },
        },
      }),
    });
    const result = (await response.json()).data?.sendEvent;
    sent.textContent = result?.__typename === "EventAccepted" ? "Sent." : `Refused: ${result?.message}`;
  } catch (error) {
    sent.textContent = `Not sent: ${error.message}`;
  }
});

listUsers().catch(() => show(`The auth-service stand-in does not answer at ${authUrl}: run herald dev.`));
