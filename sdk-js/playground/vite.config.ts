// Builds the playground into the gateway package, which serves it at /playground/.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));

export default defineConfig({
  root: here("."),
  base: "/playground/",
  esbuild: { jsx: "automatic" },
  resolve: {
    alias: [
      { find: "@sam2/sdk/react", replacement: here("../src/react/index.tsx") },
      { find: "@sam2/sdk/local", replacement: here("../src/local/index.ts") },
      { find: "@sam2/sdk", replacement: here("../src/index.ts") },
    ],
  },
  build: {
    outDir: here("../../services/gateway/src/sam2_gateway/playground"),
    emptyOutDir: true,
  },
});
