// GraphQL Code Generator: the types of Herald's schema and of the client's operations (the same
// operations.graphql as the Python client), as typed documents. `make clients` runs it; a test
// runs it with --check and fails while the output is stale.
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: "../../schema.graphql",
  documents: "../python/operations.graphql",
  generates: {
    "src/generated/graphql.ts": {
      plugins: ["typescript-operations", "typed-document-node"],
      config: {
        scalars: { DateTime: "string", JSON: "unknown", ID: "string" },
        enumsAsTypes: true,
        useTypeImports: true,
        avoidOptionals: { field: true, inputValue: false, object: true },
        nonOptionalTypename: true,
      },
    },
  },
  hooks: {},
};

export default config;
