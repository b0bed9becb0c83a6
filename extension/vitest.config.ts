import { defineConfig } from "vitest/config";

// Unit tests run in node; the DOM-driven tests opt into jsdom with a
// `// @vitest-environment jsdom` comment at the top of their file.
export default defineConfig({
  test: {
    include: ["src/**/__tests__/**/*.test.ts"],
    environment: "node",
  },
});
