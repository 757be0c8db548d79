// router.ts: client-side routes under /dashboard/ (the server answers every
// extension-less path there with index.html).
import { signal } from "@preact/signals";

export const BASE = "/dashboard/";

function current(): string {
  const p = location.pathname;
  return p.startsWith(BASE) ? p.slice(BASE.length) : "";
}

/** route is the path below /dashboard/, without a leading slash. */
export const route = signal(current());

export function navigate(to: string, replace = false): void {
  const url = BASE + to.replace(/^\//, "");
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  route.value = current();
  window.scrollTo(0, 0);
}

addEventListener("popstate", () => {
  route.value = current();
});

/** onLinkClick makes a plain <a href> navigate without a reload. */
export function onLinkClick(e: MouseEvent): void {
  const a = (e.target as Element).closest("a");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  if (a.target || a.hasAttribute("download")) return;
  const href = a.getAttribute("href");
  if (!href || !href.startsWith(BASE) || href.includes("/api/")) return;
  e.preventDefault();
  navigate(href.slice(BASE.length));
}
