// Builds the harness around the seed's ProfileStatusTracker into a directory given by the test
// (PROFILE_STATUS_BUILD_DIR), served same-origin with the API. esbuild compiles the TSX as React's
// classic runtime (React.createElement), which the component's own `import React` provides.
import { defineConfig } from "vite";

export default defineConfig({
  logLevel: "warn",
  build: {
    outDir: process.env.PROFILE_STATUS_BUILD_DIR || "dist",
    emptyOutDir: true,
    minify: false, // readable stack traces if the component ever throws
  },
});
