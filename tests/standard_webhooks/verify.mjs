// Verifies requests Herald sent with the standardwebhooks npm package, as a Node receiver
// would. Reads {"secret": "whsec_...", "requests": [{"headers": {...}, "body": "<base64>"}]}
// on stdin and prints one result per request: {"verified": true, "payload": <the parsed body>}
// or {"verified": false, "error": "<the library's message>"}.
import { Webhook } from "standardwebhooks";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { secret, requests } = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const webhook = new Webhook(secret);
const results = requests.map(({ headers, body }) => {
  try {
    const payload = webhook.verify(Buffer.from(body, "base64"), headers);
    return { verified: true, payload };
  } catch (error) {
    return { verified: false, error: `${error.name}: ${error.message}` };
  }
});
process.stdout.write(JSON.stringify(results));
