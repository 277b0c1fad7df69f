// Runs the graphql-http conformance audits against a GraphQL endpoint and prints the results
// as JSON: [{id, name, status}], status "ok", "warn" (a SHOULD failed) or "error" (a MUST failed).
import { auditServer } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs <graphql url>');
  process.exit(2);
}
const results = await auditServer({ url });
console.log(JSON.stringify(results.map((r) => ({ id: r.id, name: r.name, status: r.status, reason: r.reason ?? null }))));
