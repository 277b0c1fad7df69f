// Builds GraphiQL into ../backend/graphiql_assets/, which the API serves from its own origin:
// index.html at GET /graphql, everything else under /graphiql/assets/.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/graphiql/",
  build: {
    outDir: "../backend/graphiql_assets",
    emptyOutDir: true,
    // Our own assets as files, not data: URLs (GraphiQL's stylesheet embeds its fonts anyway).
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 8000,
    rollupOptions: {
      onwarn(warning, warn) {
        // React's "use client" markers mean nothing in a browser-only bundle.
        if (warning.code === "MODULE_LEVEL_DIRECTIVE") return;
        warn(warning);
      },
    },
  },
  worker: { format: "es" },
});
