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

// xterm.js's DOM renderer colours a selected cell (and true-colour text)
// by setAttribute("style", …), which the dashboard's CSP (style-src
// without 'unsafe-inline') blocks, leaving the selection unpainted and a
// violation per cell. Setting the same declarations through the CSSOM is
// not inline style to CSP, so the build rewrites that one method; a
// release of xterm.js without it fails the build here, not silently.
const xtermAddStyle = '_addStyle(t,e){t.setAttribute("style",`${t.getAttribute("style")||""}${e};`)}';
function xtermCSP(): Plugin {
  return {
    name: "sbx-xterm-csp",
    transform(code, id) {
      if (!/[\\/]@xterm[\\/]xterm[\\/]lib[\\/]xterm\.mjs$/.test(id)) return null;
      if (!code.includes(xtermAddStyle)) this.error(`xterm.js no longer has ${xtermAddStyle}: check its DOM renderer against the CSP`);
      return { code: code.replace(xtermAddStyle, "_addStyle(t,e){t.style.cssText+=`${e};`}"), map: null };
    },
  };
}

export default defineConfig({
  base: "/dashboard/",
  plugins: [cleanDist(), xtermCSP()],
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
