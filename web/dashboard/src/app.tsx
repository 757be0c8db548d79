import { useState } from "preact/hooks";
import { session, signIn, signOut, errorText } from "./api";
import { route, onLinkClick, BASE } from "./router";
import { SandboxesPage } from "./pages/sandboxes";
import { Toasts } from "./toast";
import { lazyPage } from "./util";

// Every page but the sandbox list loads when first opened (the detail page
// carries xterm.js and uPlot), which keeps the list's first load small.
const SandboxPage = lazyPage(() => import("./pages/sandbox").then((m) => m.SandboxPage));
const TemplatesPage = lazyPage(() => import("./pages/templates").then((m) => m.TemplatesPage));
const TemplatePage = lazyPage(() => import("./pages/templates").then((m) => m.TemplatePage));
const SnapshotsPage = lazyPage(() => import("./pages/storage").then((m) => m.SnapshotsPage));
const VolumesPage = lazyPage(() => import("./pages/storage").then((m) => m.VolumesPage));
const KeysPage = lazyPage(() => import("./pages/admin").then((m) => m.KeysPage));
const TeamsPage = lazyPage(() => import("./pages/admin").then((m) => m.TeamsPage));
const UsagePage = lazyPage(() => import("./pages/admin").then((m) => m.UsagePage));

function SignIn() {
  const [key, setKey] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  async function submit(e: Event) {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      await signIn(key.trim());
      setKey("");
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }
  return (
    <main class="signin">
      <form class="card" onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">sbx</h1>
        <label for="apikey">API key</label>
        <input
          id="apikey"
          name="apikey"
          type="password"
          autocomplete="current-password"
          placeholder="e2b_…"
          value={key}
          onInput={(e) => setKey((e.target as HTMLInputElement).value)}
          required
          autofocus
        />
        <button type="submit" disabled={busy || !key.trim()}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <p class="hint">The key is exchanged for a session cookie; it is not stored in the browser.</p>
      </form>
    </main>
  );
}

const nav: [string, string, boolean][] = [
  ["", "Sandboxes", false],
  ["templates", "Templates", false],
  ["snapshots", "Snapshots", false],
  ["volumes", "Volumes", false],
  ["keys", "Keys", true],
  ["teams", "Teams", true],
  ["usage", "Usage", false],
];

function Page({ path }: { path: string }) {
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const s = session.value!;
  switch (parts[0] ?? "") {
    case "":
    case "sandboxes":
      return parts[1] ? <SandboxPage id={parts[1]} tab={parts[2] ?? ""} /> : <SandboxesPage />;
    case "templates":
      return parts[1] ? <TemplatePage name={parts[1]} /> : <TemplatesPage />;
    case "snapshots":
      return <SnapshotsPage />;
    case "volumes":
      return <VolumesPage />;
    case "keys":
      return s.role === "admin" ? <KeysPage /> : <NotAllowed />;
    case "teams":
      return s.role === "admin" && s.serverAdmin ? <TeamsPage /> : <NotAllowed />;
    case "usage":
      return <UsagePage />;
    default:
      return (
        <main id="main" class="page">
          <h1>Not found</h1>
          <p>
            There is no page <code>{path}</code>. <a href={BASE}>Back to the sandboxes</a>.
          </p>
        </main>
      );
  }
}

function NotAllowed() {
  return (
    <main id="main" class="page">
      <h1>Admins only</h1>
      <p>This page needs an admin key.</p>
    </main>
  );
}

export function App() {
  const s = session.value;
  if (s === undefined) return <p class="loading">Loading…</p>;
  if (s === null) return <SignIn />;
  const path = route.value;
  const top = path.split("/")[0] || "";
  return (
    <div class="shell" onClick={onLinkClick}>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href={BASE}>
          sbx
        </a>
        <nav aria-label="Main">
          <ul>
            {nav
              .filter(([p, , admin]) => !admin || (s.role === "admin" && (p !== "teams" || s.serverAdmin)))
              .map(([p, label]) => (
                <li key={p}>
                  <a href={BASE + p} aria-current={top === p || (p === "" && top === "sandboxes") ? "page" : undefined}>
                    {label}
                  </a>
                </li>
              ))}
          </ul>
        </nav>
        <div class="who">
          <span title={`key ${s.keyId}`}>
            {s.keyName || s.keyId} · {s.team} · {s.role}
          </span>
          <button type="button" class="secondary" onClick={() => void signOut()}>
            Sign out
          </button>
        </div>
      </header>
      <Page path={path} />
      <Toasts />
    </div>
  );
}
