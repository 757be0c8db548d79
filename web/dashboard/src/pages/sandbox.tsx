import { useEffect, useMemo, useState } from "preact/hooks";
import { getJSON, send, q, errorText, type SandboxDetail, type SandboxMetric, type Process, type SandboxEvent } from "../api";
import { sandboxes, subscribe } from "../stream";
import { BASE, navigate } from "../router";
import { fmtBytes, fmtTime, fmtAge, useNow, useAsync, ErrorBox, Section, KV, stateClass } from "../util";
import { Chart } from "../components/chart";
import { SandboxTerminal } from "../components/terminal";
import { FileBrowser } from "../components/files";
import { ActionButtons, sandboxAction } from "./sandboxes";

const tabs: [string, string][] = [
  ["", "Overview"],
  ["metrics", "Metrics"],
  ["processes", "Processes"],
  ["terminal", "Terminal"],
  ["files", "Files"],
  ["events", "Events"],
];

function Metrics({ id }: { id: string }) {
  const [data, setData] = useState<SandboxMetric[]>([]);
  const [error, setError] = useState("");
  useEffect(() => {
    let stop = false;
    let timer = 0;
    const load = async () => {
      try {
        const m = await getJSON<SandboxMetric[]>(`/sandboxes/${q(id)}/metrics`);
        if (!stop) {
          setData(m);
          setError("");
        }
      } catch (e) {
        if (!stop) setError(errorText(e));
      }
      // Samples are taken every few seconds on the server; reading them
      // as often keeps the charts current.
      if (!stop) timer = window.setTimeout(load, 5000);
    };
    void load();
    return () => {
      stop = true;
      clearTimeout(timer);
    };
  }, [id]);
  const x = useMemo(() => data.map((m) => m.timestampUnix), [data]);
  const cpu = useMemo(() => [data.map((m) => m.cpuUsedPct)], [data]);
  const mem = useMemo(() => [data.map((m) => m.memUsed), data.map((m) => m.memTotal)], [data]);
  const last = data[data.length - 1];
  return (
    <div class="charts">
      <ErrorBox error={error} />
      {last && (
        <p class="hint">
          Latest: CPU {last.cpuUsedPct.toFixed(1)}% of {last.cpuCount} · memory {fmtBytes(last.memUsed)} of {fmtBytes(last.memTotal)} · disk{" "}
          {fmtBytes(last.diskUsed)}
          {last.diskTotal ? ` of ${fmtBytes(last.diskTotal)}` : ""}
        </p>
      )}
      {!data.length && !error && <p class="hint">No samples yet: the server takes one every few seconds.</p>}
      <Chart title="CPU used (%)" x={x} ys={cpu} series={[{ label: "CPU %", color: "#2f7df6", fmt: (v) => `${v.toFixed(0)}%` }]} yRange={[0, 100]} />
      <Chart
        title="Memory"
        x={x}
        ys={mem}
        series={[
          { label: "used", color: "#16a34a", fmt: fmtBytes },
          { label: "limit", color: "#9ca3af", fmt: fmtBytes },
        ]}
      />
    </div>
  );
}

function Processes({ id }: { id: string }) {
  const list = useAsync((sig) => getJSON<Process[]>(`/dashboard/api/sandboxes/${q(id)}/processes`, sig), [id]);
  useEffect(() => {
    const t = setInterval(list.reload, 5000);
    return () => clearInterval(t);
  }, [list.reload]);
  return (
    <>
      <div class="row">
        <button type="button" class="secondary" onClick={list.reload}>
          Refresh
        </button>
      </div>
      <ErrorBox error={list.error} />
      <table class="table">
        <thead>
          <tr>
            <th scope="col">PID</th>
            <th scope="col">Command</th>
            <th scope="col" class="hide-narrow">Directory</th>
            <th scope="col" class="hide-narrow">Tag</th>
          </tr>
        </thead>
        <tbody>
          {(list.data ?? []).map((p) => (
            <tr key={p.pid}>
              <td class="mono">{p.pid}</td>
              <td class="mono wrap">{[p.cmd, ...(p.args ?? [])].join(" ")}</td>
              <td class="hide-narrow mono">{p.cwd ?? ""}</td>
              <td class="hide-narrow">{p.tag ?? ""}</td>
            </tr>
          ))}
          {list.data && list.data.length === 0 && (
            <tr>
              <td colSpan={4} class="empty">
                No processes started through the API.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </>
  );
}

function Events({ id }: { id: string }) {
  const list = useAsync((sig) => getJSON<SandboxEvent[]>(`/events/sandboxes/${q(id)}?limit=200`, sig), [id]);
  // A change pushed for this sandbox is likely an event: read them again.
  const s = sandboxes.value.get(id);
  useEffect(() => {
    if (s) list.reload();
  }, [s?.state, s?.endAt]);
  return (
    <>
      <ErrorBox error={list.error} />
      <ol class="events">
        {(list.data ?? []).map((e) => (
          <li key={e.id}>
            <time dateTime={e.timestamp}>{fmtTime(e.timestamp)}</time> <strong>{e.type.replace("sandbox.lifecycle.", "")}</strong>{" "}
            <span class="mono">{e.eventData ? JSON.stringify(e.eventData) : ""}</span>
          </li>
        ))}
        {list.data && list.data.length === 0 && <li class="empty">No events.</li>}
      </ol>
    </>
  );
}

function Egress({ d, reload }: { d: SandboxDetail; reload: () => void }) {
  const [allow, setAllow] = useState((d.network?.allowOut ?? []).join("\n"));
  const [deny, setDeny] = useState((d.network?.denyOut ?? []).join("\n"));
  const [internet, setInternet] = useState(d.allowInternetAccess !== false);
  const [error, setError] = useState("");
  const [saved, setSaved] = useState("");
  const lines = (s: string) =>
    s
      .split(/[\n,]/)
      .map((x) => x.trim())
      .filter(Boolean);
  async function save(e: Event) {
    e.preventDefault();
    setError("");
    setSaved("");
    try {
      await send("PUT", `/sandboxes/${q(d.sandboxID)}/network`, {
        allow_internet_access: internet,
        allowOut: lines(allow),
        denyOut: lines(deny),
      });
      setSaved("Saved: new connections obey the policy now.");
      reload();
    } catch (err) {
      setError(errorText(err));
    }
  }
  return (
    <form onSubmit={save} class="egress">
      <label class="check">
        <input type="checkbox" checked={internet} onChange={(e) => setInternet((e.target as HTMLInputElement).checked)} /> Internet access
      </label>
      <div class="row">
        <label class="grow">
          Allow out (one per line: address, CIDR, domain, *.domain, optional :port)
          <textarea rows={3} value={allow} onInput={(e) => setAllow((e.target as HTMLTextAreaElement).value)} />
        </label>
        <label class="grow">
          Deny out
          <textarea rows={3} value={deny} onInput={(e) => setDeny((e.target as HTMLTextAreaElement).value)} />
        </label>
      </div>
      <button type="submit" disabled={d.state !== "running"}>
        Replace policy
      </button>
      <ErrorBox error={error} />
      {saved && <p role="status">{saved}</p>}
    </form>
  );
}

function Preview({ d }: { d: SandboxDetail }) {
  const [port, setPort] = useState("8080");
  if (!d.domain) return <p class="hint">The server gives this sandbox no domain.</p>;
  const scheme = location.protocol;
  const url = /^\d{1,5}$/.test(port) ? `${scheme}//${port}-${d.sandboxID}.${d.domain}/` : "";
  return (
    <div class="row">
      <label>
        Port
        <input inputMode="numeric" value={port} onInput={(e) => setPort((e.target as HTMLInputElement).value)} />
      </label>
      {url && (
        <a href={url} target="_blank" rel="noopener noreferrer" class="mono">
          {url}
        </a>
      )}
      {d.network?.allowPublicTraffic === false && <span class="hint">Private: requests need the sandbox's traffic access token.</span>}
    </div>
  );
}

function Overview({ d, reload }: { d: SandboxDetail; reload: () => void }) {
  const now = useNow(1000);
  const end = d.endAt && !d.endAt.startsWith("0001-") ? Date.parse(d.endAt) : 0;
  return (
    <>
      <Section title="Sandbox">
        <KV
          rows={[
            ["State", <span class={stateClass(d.state)}>{d.state}{d.pauseKind ? ` (${d.pauseKind})` : ""}</span>],
            ["Template", d.templateID],
            ["Runtime", d.runtime],
            ["Started", `${fmtTime(d.startedAt)} (${fmtAge(d.startedAt, now)} ago)`],
            ["Ends", end ? `${fmtTime(d.endAt)} (in ${Math.max(0, Math.round((end - now) / 1000))} s)` : "no time limit"],
            ["CPU / memory / disk", `${d.cpuCount} · ${d.memoryMB} MiB · ${d.diskSizeMB ?? 0} MiB`],
            ["Lifecycle", d.lifecycle ? `on timeout ${d.lifecycle.onTimeout}${d.lifecycle.persistent ? ", persistent" : ""}${d.lifecycle.autoResume ? ", auto-resume" : ""}` : "–"],
            ["Metadata", Object.entries(d.metadata ?? {}).map(([k, v]) => <div key={k} class="mono">{`${k}=${v}`}</div>)],
            ["Volumes", (d.volumeMounts ?? []).map((v) => `${v.name} at ${v.path}`).join(", ") || "–"],
            ...(d.error ? ([["Error", d.error]] as [string, string][]) : []),
          ]}
        />
      </Section>
      <Section title="Egress policy">
        <Egress d={d} reload={reload} />
      </Section>
      <Section title="Preview URLs">
        <Preview d={d} />
      </Section>
    </>
  );
}

export function SandboxPage({ id, tab }: { id: string; tab: string }) {
  useEffect(subscribe, []);
  const detail = useAsync((sig) => getJSON<SandboxDetail>(`/sandboxes/${q(id)}`, sig), [id]);
  const live = sandboxes.value.get(id);
  // Read the detail again when the pushed state changes.
  useEffect(() => {
    if (live && detail.data && live.state !== detail.data.state) detail.reload();
  }, [live?.state]);
  const d = detail.data ? { ...detail.data, ...(live ?? {}) } : undefined;
  const [busy, setBusy] = useState(false);
  async function run(a: string) {
    if (a === "kill" && !confirm(`Kill sandbox ${id}?`)) return;
    setBusy(true);
    await sandboxAction(id, a);
    setBusy(false);
    if (a === "kill") navigate("");
    else detail.reload();
  }
  return (
    <main id="main" class="page">
      <p class="crumbs">
        <a href={BASE}>Sandboxes</a> /
      </p>
      <div class="page-head">
        <h1 class="mono">{id}</h1>
        {d && <span class={stateClass(d.state)}>{d.state}</span>}
        <div class="actions">{d && <ActionButtons s={d} busy={busy} run={(a) => void run(a)} />}</div>
      </div>
      {detail.error && !d && <ErrorBox error={detail.error} />}
      <nav class="tabs" aria-label="Sandbox">
        {tabs.map(([t, label]) => (
          <a key={t} href={`${BASE}sandboxes/${q(id)}${t ? "/" + t : ""}`} aria-current={tab === t ? "page" : undefined}>
            {label}
          </a>
        ))}
      </nav>
      {d && tab === "" && <Overview d={d} reload={detail.reload} />}
      {tab === "metrics" && <Metrics id={id} />}
      {tab === "processes" && <Processes id={id} />}
      {tab === "terminal" && (d?.state === "running" ? <SandboxTerminal id={id} /> : d ? <p class="hint">The terminal needs a running sandbox.</p> : null)}
      {tab === "files" && (d?.state === "running" ? <FileBrowser id={id} /> : d ? <p class="hint">Files need a running sandbox.</p> : null)}
      {tab === "events" && <Events id={id} />}
    </main>
  );
}
