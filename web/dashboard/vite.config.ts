import { defineConfig, type Plugin } from "vite";
import { readdirSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";

// The build goes into internal/dashboard/dist, which the Go server embeds.
// dist/README.md is committed (so the embed compiles without a build) and
// must survive every build, so Vite's emptyOutDir is replaced by a clean
// that keeps it and dist's .gitignore.
const outDir = fileURLToPath(new URL("../../internal/dashboard/dist", import.meta.url));
const keep = new Set(["README.md", ".gitignore"]);

function cleanDist(): Plugin {
  return {
    name: "sbx-clean-dist",
    apply: "build",
    buildStart() {
      let names: string[] = [];
      try {
        names = readdirSync(outDir);
      } catch {
        return;
      }
      for (const n of names) {
        if (!keep.has(n)) rmSync(join(outDir, n), { recursive: true, force: true });
      }
    },
  };
}

export default defineConfig({
  base: "/dashboard/",
  plugins: [cleanDist()],
  oxc: {
    jsx: { runtime: "automatic", importSource: "preact" },
  },
  build: {
    outDir,
    emptyOutDir: false,
    target: "es2022",
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
  },
});
