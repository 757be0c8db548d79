import { render } from "preact";
import "./style.css";
import { App } from "./app";
import { loadSession, session } from "./api";
import { subscribe } from "./stream";

// xterm.js and uPlot add <style> elements at run time. The page's
// Content-Security-Policy admits only styles from files and those carrying
// the per-response nonce the server writes into the csp-nonce meta tag, so
// every <style> this page creates gets that nonce; nothing else about the
// policy is relaxed (no 'unsafe-inline').
const nonce = document.querySelector<HTMLMetaElement>('meta[name="csp-nonce"]')?.content ?? "";
if (nonce && nonce !== "__CSP_NONCE__") {
  const create = Document.prototype.createElement;
  Document.prototype.createElement = function (this: Document, tag: string, opts?: ElementCreationOptions) {
    const el = create.call(this, tag, opts);
    if (tag.toLowerCase() === "style") el.setAttribute("nonce", nonce);
    return el;
  } as typeof Document.prototype.createElement;
}

// The sandbox stream opens alongside the session check rather than after
// it: on the list page that saves a round trip before the first rows. When
// there is no session it is closed again.
const early = location.pathname.replace(/\/+$/, "") === "/dashboard" ? subscribe() : null;
void loadSession().then(() => {
  if (early && !session.value) early();
});
render(<App />, document.getElementById("app")!);
