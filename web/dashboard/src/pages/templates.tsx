import { useRef, useState } from "preact/hooks";
import { getJSON, request, send, q, errorText, type Template, type Build } from "../api";
import { BASE, navigate } from "../router";
import { fmtBytes, fmtTime, useAsync, ErrorBox, Section, KV } from "../util";
import { toast } from "../toast";

interface LogLine {
  timestamp?: string;
  level?: string;
  step?: number;
  kind: string;
  message?: string;
  status?: string;
  exitCode?: number;
}

/** steps counts a Dockerfile's instructions, for the progress bar. */
function steps(dockerfile: string): number {
  return dockerfile
    .replace(/\\\r?\n/g, " ")
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#")).length;
}

// An empty tar archive: two zero blocks. The build's context when the
// Dockerfile copies nothing.
const emptyTar = () => new Blob([new Uint8Array(1024)], { type: "application/x-tar" });

function BuildForm({ done }: { done: () => void }) {
  const [name, setName] = useState("");
  const [dockerfile, setDockerfile] = useState("FROM base\nRUN echo hello > /hello.txt\n");
  const [context, setContext] = useState<File | null>(null);
  const [noCache, setNoCache] = useState(false);
  const [error, setError] = useState("");
  const [build, setBuild] = useState<Build | null>(null);
  const [log, setLog] = useState<LogLine[]>([]);
  const [step, setStep] = useState(0);
  const [final, setFinal] = useState<LogLine | null>(null);
  const total = steps(dockerfile);
  const pre = useRef<HTMLPreElement>(null);

  async function follow(b: Build) {
    const res = await request("GET", `/sbx/v1/templates/builds/${q(b.buildID)}/logs?follow=true`);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done: eof } = await reader.read();
      if (value) buf += value;
      let i: number;
      const batch: LogLine[] = [];
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (!line) continue;
        try {
          const l = JSON.parse(line) as LogLine;
          if (l.kind === "end") setFinal(l);
          else batch.push(l);
          if (l.step) setStep(l.step);
        } catch {
          batch.push({ kind: "output", message: line });
        }
      }
      if (batch.length) {
        setLog((old) => [...old, ...batch]);
        requestAnimationFrame(() => pre.current && (pre.current.scrollTop = pre.current.scrollHeight));
      }
      if (eof) break;
    }
  }

  async function submit(e: Event) {
    e.preventDefault();
    setError("");
    setLog([]);
    setFinal(null);
    setStep(0);
    const form = new FormData();
    form.append("dockerfile", dockerfile);
    form.append("context", context ?? emptyTar(), context?.name ?? "context.tar");
    try {
      const res = await request("POST", `/sbx/v1/templates/builds?name=${q(name.trim())}${noCache ? "&noCache=true" : ""}`, { raw: form });
      const b = (await res.json()) as Build;
      setBuild(b);
      await follow(b);
    } catch (err) {
      setError(errorText(err));
    }
  }
  const pct = final ? 100 : total ? Math.min(99, Math.round(((step - 1) / total) * 100)) : 0;
  return (
    <form class="card" onSubmit={submit} aria-label="Build a template">
      <div class="row">
        <label>
          Name
          <input value={name} required pattern="[a-z0-9][a-z0-9._\-]{0,62}" onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          Context (tar, optional)
          <input type="file" accept=".tar,.tgz,.tar.gz,application/x-tar,application/gzip" onChange={(e) => setContext((e.target as HTMLInputElement).files?.[0] ?? null)} />
        </label>
        <label class="check">
          <input type="checkbox" checked={noCache} onChange={(e) => setNoCache((e.target as HTMLInputElement).checked)} /> No cache
        </label>
      </div>
      <label>
        Dockerfile
        <textarea rows={8} spellcheck={false} class="mono" value={dockerfile} onInput={(e) => setDockerfile((e.target as HTMLTextAreaElement).value)} />
      </label>
      <div class="row">
        <button type="submit" disabled={!!build && !final}>
          Build
        </button>
        <button type="button" class="secondary" onClick={done}>
          Close
        </button>
      </div>
      <ErrorBox error={error} />
      {build && (
        <>
          <p role="status">
            Build {build.buildID} of {build.templateID}:{" "}
            {final ? final.status : `step ${step || "…"} of ${total}`}
            {final?.status === "error" && ` — step ${final.step}: ${final.message ?? ""}${final.exitCode !== undefined ? ` (exit ${final.exitCode})` : ""}`}
          </p>
          <progress max={100} value={pct} aria-label="Build progress" />
          <pre class="log" ref={pre} tabIndex={0} aria-label="Build log">
            {log.map((l) => `${l.kind === "step" ? "\n" : ""}${l.message ?? ""}`).join("\n")}
          </pre>
          {final?.status === "ready" && (
            <button type="button" onClick={() => navigate(`templates/${q(build.templateID)}`)}>
              Open {build.templateID}
            </button>
          )}
        </>
      )}
    </form>
  );
}

export function TemplatesPage() {
  const list = useAsync((sig) => getJSON<Template[]>("/templates", sig), []);
  const [building, setBuilding] = useState(false);
  return (
    <main id="main" class="page">
      <div class="page-head">
        <h1>Templates</h1>
        <div class="actions">
          {!building && (
            <button type="button" onClick={() => setBuilding(true)}>
              Build from a Dockerfile
            </button>
          )}
        </div>
      </div>
      {building && (
        <BuildForm
          done={() => {
            setBuilding(false);
            list.reload();
          }}
        />
      )}
      <ErrorBox error={list.error} />
      <table class="table">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">CPU / memory</th>
            <th scope="col" class="hide-narrow">Size</th>
            <th scope="col" class="hide-narrow">Created</th>
          </tr>
        </thead>
        <tbody>
          {(list.data ?? []).map((t) => (
            <tr key={t.templateID}>
              <td>
                <a href={`${BASE}templates/${q(t.templateID)}`}>{t.templateID}</a>
              </td>
              <td>
                {t.cpuCount} · {t.memoryMB} MiB
              </td>
              <td class="hide-narrow">{fmtBytes(t.sizeBytes)}</td>
              <td class="hide-narrow">{fmtTime(t.createdAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </main>
  );
}

interface TemplateDetail {
  templateID: string;
  createdAt: string;
  source: string;
  sizeBytes: number;
  diskBytes: number;
  layers?: { digest: string; sizeBytes: number }[];
  buildLayers?: string[];
  base?: string;
  defaultUser?: string;
  env?: Record<string, string>;
  workdir?: string;
  startCmd?: string[];
  readyCmd?: string;
  cpuCount: number;
  memoryMB: number;
  sandboxes: number;
}

export function TemplatePage({ name }: { name: string }) {
  const d = useAsync((sig) => getJSON<TemplateDetail>(`/sbx/v1/templates/${q(name)}`, sig), [name]);
  const [error, setError] = useState("");
  async function remove() {
    if (!confirm(`Delete template ${name}?`)) return;
    try {
      await send("DELETE", `/templates/${q(name)}`);
      toast(`Deleted ${name}`);
      navigate("templates");
    } catch (e) {
      setError(errorText(e));
    }
  }
  const t = d.data;
  return (
    <main id="main" class="page">
      <p class="crumbs">
        <a href={`${BASE}templates`}>Templates</a> /
      </p>
      <div class="page-head">
        <h1>{name}</h1>
        <div class="actions">
          <button type="button" class="danger" onClick={() => void remove()}>
            Delete
          </button>
        </div>
      </div>
      <ErrorBox error={error || d.error} />
      {t && (
        <Section title="Inspect">
          <KV
            rows={[
              ["Source", t.source],
              ["Created", fmtTime(t.createdAt)],
              ["Size", `${fmtBytes(t.sizeBytes)} (${fmtBytes(t.diskBytes)} on disk)`],
              ["Defaults", `${t.cpuCount} CPU · ${t.memoryMB} MiB`],
              ["User / workdir", `${t.defaultUser ?? "–"} · ${t.workdir ?? "–"}`],
              ["Start command", (t.startCmd ?? []).join(" ") || "–"],
              ["Ready check", t.readyCmd || "–"],
              ["Base", t.base || "–"],
              ["Layers", String((t.layers?.length ?? 0) + (t.buildLayers?.length ?? 0))],
              ["Sandboxes", String(t.sandboxes)],
              ["Environment", Object.entries(t.env ?? {}).map(([k, v]) => <div key={k} class="mono">{`${k}=${v}`}</div>)],
            ]}
          />
        </Section>
      )}
    </main>
  );
}
