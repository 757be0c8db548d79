import { useMemo, useState } from "preact/hooks";
import { getJSON, send, q, errorText, session, type Key, type TeamInfo, type UsageReport } from "../api";
import { fmtTime, fmtBytes, useAsync, ErrorBox, Section } from "../util";
import { Chart } from "../components/chart";
import { toast } from "../toast";

export function KeysPage() {
  const list = useAsync((sig) => getJSON<Key[]>("/sbx/v1/keys", sig), []);
  const [name, setName] = useState("");
  const [team, setTeam] = useState("");
  const [role, setRole] = useState("member");
  const [created, setCreated] = useState<Key | null>(null);
  const [error, setError] = useState("");
  async function create(e: Event) {
    e.preventDefault();
    setError("");
    try {
      const body: Record<string, string> = { role };
      if (name.trim()) body.name = name.trim();
      if (team.trim()) body.team = team.trim();
      setCreated(await send<Key>("POST", "/sbx/v1/keys", body));
      setName("");
      list.reload();
    } catch (err) {
      setError(errorText(err));
    }
  }
  async function remove(k: Key) {
    if (!confirm(`Delete key ${k.name || k.id}? Everything using it is refused from then on.`)) return;
    setError("");
    try {
      await send("DELETE", `/sbx/v1/keys/${q(k.id)}`);
      toast(`Deleted key ${k.id}`);
      list.reload();
    } catch (err) {
      setError(errorText(err));
    }
  }
  return (
    <main id="main" class="page">
      <div class="page-head">
        <h1>API keys</h1>
      </div>
      <form class="row card" onSubmit={create} aria-label="New key">
        <label>
          Name
          <input value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          Team (id or name)
          <input value={team} placeholder="default" onInput={(e) => setTeam((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          Role
          <select value={role} onChange={(e) => setRole((e.target as HTMLSelectElement).value)}>
            <option value="member">member</option>
            <option value="admin">admin</option>
          </select>
        </label>
        <button type="submit">Create key</button>
      </form>
      {created?.key && (
        <div class="card notice" role="status">
          <p>
            New key <strong>{created.name || created.id}</strong>. Copy it now: it is not shown again.
          </p>
          <input class="mono" readOnly value={created.key} aria-label="New API key" onFocus={(e) => (e.target as HTMLInputElement).select()} />
          <button type="button" class="small secondary" onClick={() => void navigator.clipboard?.writeText(created.key!)}>
            Copy
          </button>
        </div>
      )}
      <ErrorBox error={error || list.error} />
      <table class="table">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col" class="hide-narrow">Prefix</th>
            <th scope="col">Team</th>
            <th scope="col">Role</th>
            <th scope="col" class="hide-narrow">Created</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {(list.data ?? []).map((k) => (
            <tr key={k.id}>
              <td>
                {k.name || "–"}
                {k.id === session.value?.keyId && " (this session)"}
              </td>
              <td class="hide-narrow mono">{k.prefix}…</td>
              <td>{k.team}</td>
              <td>{k.admin ? "admin" : "member"}</td>
              <td class="hide-narrow">{fmtTime(k.createdAt)}</td>
              <td class="row-actions">
                <button type="button" class="small danger" onClick={() => void remove(k)} aria-label={`Delete key ${k.name || k.id}`}>
                  Delete
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </main>
  );
}

export function TeamsPage() {
  const list = useAsync((sig) => getJSON<TeamInfo[]>("/sbx/v1/teams", sig), []);
  const [f, setF] = useState({ name: "", maxSandboxes: "", maxCpus: "", maxMemoryMB: "" });
  const [error, setError] = useState("");
  const field = (k: keyof typeof f, label: string) => (
    <label>
      {label}
      <input value={f[k]} inputMode={k === "name" ? undefined : "numeric"} onInput={(e) => setF({ ...f, [k]: (e.target as HTMLInputElement).value })} />
    </label>
  );
  async function create(e: Event) {
    e.preventDefault();
    setError("");
    try {
      await send("POST", "/sbx/v1/teams", {
        name: f.name.trim(),
        maxSandboxes: Number(f.maxSandboxes || 0),
        maxCpus: Number(f.maxCpus || 0),
        maxMemoryMB: Number(f.maxMemoryMB || 0),
      });
      toast(`Created team ${f.name}`);
      setF({ name: "", maxSandboxes: "", maxCpus: "", maxMemoryMB: "" });
      list.reload();
    } catch (err) {
      setError(errorText(err));
    }
  }
  async function remove(t: TeamInfo) {
    if (!confirm(`Remove team ${t.name}?`)) return;
    setError("");
    try {
      await send("DELETE", `/sbx/v1/teams/${q(t.id)}`);
      list.reload();
    } catch (err) {
      setError(errorText(err));
    }
  }
  const lim = (n: number) => (n ? String(n) : "none");
  return (
    <main id="main" class="page">
      <div class="page-head">
        <h1>Teams</h1>
      </div>
      <form class="row card" onSubmit={create} aria-label="New team">
        {field("name", "Name")}
        {field("maxSandboxes", "Max sandboxes")}
        {field("maxCpus", "Max vCPUs")}
        {field("maxMemoryMB", "Max memory (MiB)")}
        <button type="submit">Create team</button>
      </form>
      <ErrorBox error={error || list.error} />
      <table class="table">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col" class="hide-narrow">ID</th>
            <th scope="col">Limits (sandboxes · vCPUs · MiB)</th>
            <th scope="col" class="hide-narrow">Created</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {(list.data ?? []).map((t) => (
            <tr key={t.id}>
              <td>{t.name}</td>
              <td class="hide-narrow mono">{t.id}</td>
              <td>
                {lim(t.maxSandboxes)} · {lim(t.maxCpus)} · {lim(t.maxMemoryMB)}
              </td>
              <td class="hide-narrow">{fmtTime(t.createdAt)}</td>
              <td class="row-actions">
                {t.id !== "default" && (
                  <button type="button" class="small danger" onClick={() => void remove(t)}>
                    Remove
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </main>
  );
}

const colors = ["#2f7df6", "#16a34a", "#e11d48", "#f59e0b", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];

export function UsagePage() {
  const s = session.value!;
  const [days, setDays] = useState(14);
  const since = useMemo(() => new Date(Date.now() - (days - 1) * 86400e3).toISOString().slice(0, 10), [days]);
  const teams = useAsync(
    async (sig) =>
      s.role === "admin" && s.serverAdmin ? (await getJSON<TeamInfo[]>("/sbx/v1/teams", sig)).map((t) => t.id) : [s.team],
    [],
  );
  const reports = useAsync(
    async (sig) => {
      const ids = teams.data ?? [];
      return Promise.all(ids.map((t) => getJSON<UsageReport>(`/sbx/v1/usage?by=day&since=${since}&team=${q(t)}`, sig)));
    },
    [teams.data, since],
  );
  // One x point per UTC day, one series per team.
  const chart = useMemo(() => {
    const x: number[] = [];
    const start = Date.parse(since + "T00:00:00Z");
    for (let i = 0; i < days; i++) x.push((start + i * 86400e3) / 1000);
    const ys = (reports.data ?? []).map((r) => {
      const by = new Map(r.records.map((rec) => [rec.day, rec]));
      return x.map((t) => {
        const d = new Date(t * 1000).toISOString().slice(0, 10);
        return (by.get(d)?.vcpuSeconds ?? 0) / 3600;
      });
    });
    return { x, ys };
  }, [reports.data, since, days]);
  const series = (reports.data ?? []).map((r, i) => ({ label: r.teamID, color: colors[i % colors.length], fmt: (v: number) => (v === 0 ? "0" : v >= 10 ? v.toFixed(0) : v.toPrecision(2)) }));
  return (
    <main id="main" class="page">
      <div class="page-head">
        <h1>Usage</h1>
        <label>
          Days
          <select value={String(days)} onChange={(e) => setDays(Number((e.target as HTMLSelectElement).value))}>
            {[7, 14, 30, 90].map((d) => (
              <option key={d} value={d}>
                {d}
              </option>
            ))}
          </select>
        </label>
      </div>
      <ErrorBox error={teams.error || reports.error} />
      {series.length > 0 && (
        <Section title="vCPU hours per team and day">
          <Chart key={series.map((x) => x.label).join()} title="vCPU hours" x={chart.x} ys={chart.ys} series={series} bars />
        </Section>
      )}
      {(reports.data ?? []).map((r) => (
        <Section key={r.teamID} title={`Team ${r.teamID}`}>
          <table class="table">
            <thead>
              <tr>
                <th scope="col">Day</th>
                <th scope="col">Run (h)</th>
                <th scope="col">vCPU h</th>
                <th scope="col" class="hide-narrow">CPU h</th>
                <th scope="col" class="hide-narrow">Memory GiB·h</th>
                <th scope="col" class="hide-narrow">Disk GiB·h</th>
                <th scope="col">Egress</th>
              </tr>
            </thead>
            <tbody>
              {[...r.records, { ...r.total, day: "total" }].map((x) => (
                <tr key={x.day}>
                  <td>{x.day}</td>
                  <td>{(x.runSeconds / 3600).toFixed(2)}</td>
                  <td>{(x.vcpuSeconds / 3600).toFixed(2)}</td>
                  <td class="hide-narrow">{(x.cpuSeconds / 3600).toFixed(2)}</td>
                  <td class="hide-narrow">{(x.memoryGiBSeconds / 3600).toFixed(2)}</td>
                  <td class="hide-narrow">{x.diskGiBHours.toFixed(2)}</td>
                  <td>{fmtBytes(x.egressBytes)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </Section>
      ))}
    </main>
  );
}
