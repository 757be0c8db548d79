import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { send, getJSON, q, errorText, type ListedSandbox, type Template, type Snapshot } from "../api";
import { sandboxes, streamState, subscribe } from "../stream";
import { BASE } from "../router";
import { fmtAge, useNow, useAsync, ErrorBox, stateClass } from "../util";
import { toast } from "../toast";

const ROW = 44; // px: every row is this tall, which keeps the list virtual
const STEP = 4; // rows the list scrolls before it renders again

/** sandboxAction runs one lifecycle call and reports it. */
export async function sandboxAction(id: string, action: string): Promise<void> {
  try {
    switch (action) {
      case "kill":
        await send("DELETE", `/sandboxes/${q(id)}`);
        toast(`Killed ${id}`);
        break;
      case "pause":
        await send("POST", `/sandboxes/${q(id)}/pause`, {});
        toast(`Paused ${id}`);
        break;
      case "resume":
        await send("POST", `/sandboxes/${q(id)}/resume`, {});
        toast(`Resumed ${id}`);
        break;
      case "snapshot": {
        const s = await send<Snapshot>("POST", `/sandboxes/${q(id)}/snapshots`, {});
        toast(`Snapshot ${s.snapshotID} of ${id} taken`);
        break;
      }
      case "fork": {
        const r = await send<{ sandbox?: { sandboxID: string }; error?: { message: string } }[]>(
          "POST",
          `/sandboxes/${q(id)}/fork`,
          { count: 1 },
        );
        for (const x of r) {
          if (x.sandbox) toast(`Forked ${id} into ${x.sandbox.sandboxID}`);
          else toast(`Fork of ${id} failed: ${x.error?.message ?? "unknown error"}`, true);
        }
        break;
      }
    }
  } catch (e) {
    toast(`${action} ${id}: ${errorText(e)}`, true);
  }
}

export function ActionButtons({ s, busy, run }: { s: ListedSandbox; busy: boolean; run: (a: string) => void }) {
  const b = (a: string, label: string, cls = "small") => (
    <button type="button" class={cls} disabled={busy} onClick={() => run(a)} aria-label={`${label} ${s.sandboxID}`}>
      {label}
    </button>
  );
  return (
    <>
      {s.state === "running" && b("pause", "Pause")}
      {s.state === "paused" && b("resume", "Resume")}
      {s.state === "running" && b("snapshot", "Snapshot")}
      {s.state === "running" && b("fork", "Fork")}
      {b("kill", "Kill", "small danger")}
    </>
  );
}

function CreateForm({ onDone }: { onDone: () => void }) {
  const templates = useAsync(() => getJSON<Template[]>("/templates"), []);
  const snaps = useAsync(() => getJSON<Snapshot[]>("/snapshots"), []);
  const [template, setTemplate] = useState("base");
  const [timeout, setTimeoutS] = useState("300");
  const [runtime, setRuntime] = useState("");
  const [meta, setMeta] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  async function submit(e: Event) {
    e.preventDefault();
    setError("");
    const metadata: Record<string, string> = {};
    for (const line of meta.split(/[\n,]/)) {
      const t = line.trim();
      if (!t) continue;
      const i = t.indexOf("=");
      if (i <= 0) {
        setError(`metadata "${t}" is not KEY=VALUE`);
        return;
      }
      metadata[t.slice(0, i).trim()] = t.slice(i + 1).trim();
    }
    const body: Record<string, unknown> = { templateID: template, metadata };
    if (timeout.trim()) body.timeout = Number(timeout);
    if (runtime) body.runtime = runtime;
    setBusy(true);
    try {
      const s = await send<{ sandboxID: string }>("POST", "/v2/sandboxes", body);
      toast(`Created ${s.sandboxID}`);
      onDone();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  }
  return (
    <form class="card create" onSubmit={submit} aria-label="New sandbox">
      <div class="row">
        <label>
          Template
          <select value={template} onChange={(e) => setTemplate((e.target as HTMLSelectElement).value)}>
            {(templates.data ?? [{ templateID: "base" } as Template]).map((t) => (
              <option key={t.templateID} value={t.templateID}>
                {t.templateID}
              </option>
            ))}
            {(snaps.data ?? []).map((s) => (
              <option key={s.snapshotID} value={s.snapshotID}>
                snapshot {s.names?.[0] ?? s.snapshotID}
              </option>
            ))}
          </select>
        </label>
        <label>
          Timeout (s)
          <input inputMode="numeric" value={timeout} onInput={(e) => setTimeoutS((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          Runtime
          <select value={runtime} onChange={(e) => setRuntime((e.target as HTMLSelectElement).value)}>
            <option value="">server default</option>
            <option value="runc">runc</option>
            <option value="runsc">runsc (gVisor)</option>
          </select>
        </label>
        <label class="grow">
          Metadata (KEY=VALUE, comma separated)
          <input value={meta} onInput={(e) => setMeta((e.target as HTMLInputElement).value)} />
        </label>
      </div>
      <div class="row">
        <button type="submit" disabled={busy}>
          {busy ? "Creating…" : "Create"}
        </button>
        <button type="button" class="secondary" onClick={onDone}>
          Cancel
        </button>
      </div>
      <ErrorBox error={error || templates.error} />
    </form>
  );
}

function uniq(list: ListedSandbox[], f: (s: ListedSandbox) => string): string[] {
  return [...new Set(list.map(f))].filter(Boolean).sort();
}

function Select({ label, value, set, options }: { label: string; value: string; set: (v: string) => void; options: string[] }) {
  return (
    <label>
      {label}
      <select value={value} onChange={(e) => set((e.target as HTMLSelectElement).value)}>
        <option value="">all</option>
        {options.map((o) => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </select>
    </label>
  );
}

export function SandboxesPage() {
  useEffect(subscribe, []);
  const now = useNow(1000);
  const [state, setState] = useState("");
  const [template, setTemplate] = useState("");
  const [runtime, setRuntime] = useState("");
  const [text, setText] = useState("");
  const [creating, setCreating] = useState(false);
  const [busy, setBusy] = useState<Set<string>>(new Set());
  const all = useMemo(() => [...sandboxes.value.values()], [sandboxes.value]);
  const rows = useMemo(() => {
    const t = text.trim().toLowerCase();
    return all
      .filter(
        (s) =>
          (!state || s.state === state) &&
          (!template || s.templateID === template) &&
          (!runtime || s.runtime === runtime) &&
          (!t ||
            s.sandboxID.includes(t) ||
            Object.entries(s.metadata ?? {}).some(([k, v]) => `${k}=${v}`.toLowerCase().includes(t))),
      )
      .sort((a, b) => Date.parse(b.startedAt) - Date.parse(a.startedAt) || a.sandboxID.localeCompare(b.sandboxID));
  }, [all, state, template, runtime, text]);

  // Virtual list: only the rows in view (and a few around) are in the DOM.
  const box = useRef<HTMLDivElement>(null);
  const [scroll, setScroll] = useState(0);
  const [height, setHeight] = useState(600);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setHeight(el.clientHeight));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);
  // scroll is the first row in view rounded down to a multiple of STEP:
  // the page renders again only when the window has moved that far, and
  // the overscan covers the rows in between.
  const first = Math.max(0, scroll - 8);
  const last = Math.min(rows.length, scroll + Math.ceil(height / ROW) + STEP + 8);
  const visible = rows.slice(first, last);

  async function run(id: string, action: string) {
    if (action === "kill" && !confirm(`Kill sandbox ${id}?`)) return;
    setBusy((b) => new Set(b).add(id));
    await sandboxAction(id, action);
    setBusy((b) => {
      const n = new Set(b);
      n.delete(id);
      return n;
    });
  }

  const options = useMemo(
    () => ({
      state: uniq(all, (s) => s.state),
      template: uniq(all, (s) => s.templateID),
      runtime: uniq(all, (s) => s.runtime),
    }),
    [all],
  );
  const live = streamState.value;
  return (
    <main id="main" class="page">
      <div class="page-head">
        <h1>Sandboxes</h1>
        <span class={`live live-${live}`} title="updates are pushed by the server">
          {live === "live" ? "live" : live}
        </span>
        <span class="count" aria-live="polite">
          {rows.length === all.length ? `${all.length}` : `${rows.length} of ${all.length}`}
        </span>
        <div class="actions">
          {!creating && (
            <button type="button" onClick={() => setCreating(true)}>
              New sandbox
            </button>
          )}
        </div>
      </div>
      {creating && <CreateForm onDone={() => setCreating(false)} />}
      <div class="filters" role="search">
        <Select label="State" value={state} set={setState} options={options.state} />
        <Select label="Template" value={template} set={setTemplate} options={options.template} />
        <Select label="Runtime" value={runtime} set={setRuntime} options={options.runtime} />
        <label class="grow">
          Search id or metadata
          <input type="search" value={text} onInput={(e) => setText((e.target as HTMLInputElement).value)} />
        </label>
      </div>
      <div class="vlist-head" role="presentation">
        <span class="c-id">Sandbox</span>
        <span class="c-state">State</span>
        <span class="c-tpl">Template</span>
        <span class="c-rt">Runtime</span>
        <span class="c-age">Age</span>
        <span class="c-res">CPU / memory</span>
        <span class="c-act">Actions</span>
      </div>
      <div
        class="vlist"
        ref={box}
        role="list"
        aria-label="Sandboxes"
        onScroll={(e) => setScroll(Math.floor((e.target as HTMLDivElement).scrollTop / ROW / STEP) * STEP)}
      >
        <div class="vlist-space" style={{ height: `${rows.length * ROW}px` }}>
          {visible.map((s, i) => (
            <div
              role="listitem"
              class="vrow"
              key={s.sandboxID}
              data-sandbox-id={s.sandboxID}
              style={{ transform: `translateY(${(first + i) * ROW}px)` }}
            >
              <span class="c-id">
                <a href={`${BASE}sandboxes/${q(s.sandboxID)}`}>{s.sandboxID}</a>
                <span class="meta">
                  {Object.entries(s.metadata ?? {})
                    .map(([k, v]) => `${k}=${v}`)
                    .join(" ")}
                </span>
              </span>
              <span class="c-state">
                <span class={stateClass(s.state)}>{s.state}</span>
              </span>
              <span class="c-tpl">{s.templateID}</span>
              <span class="c-rt">{s.runtime}</span>
              <span class="c-age">{fmtAge(s.startedAt, now)}</span>
              <span class="c-res">
                {s.cpuCount} · {s.memoryMB} MiB
              </span>
              <span class="c-act">
                <ActionButtons s={s} busy={busy.has(s.sandboxID)} run={(a) => void run(s.sandboxID, a)} />
              </span>
            </div>
          ))}
        </div>
        {rows.length === 0 && (
          <p class="empty">{live === "live" || all.length ? "No sandboxes match." : "Waiting for the server…"}</p>
        )}
      </div>
    </main>
  );
}
