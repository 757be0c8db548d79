import { useState } from "preact/hooks";
import { getJSON, send, q, errorText, type Snapshot, type Volume } from "../api";
import { navigate } from "../router";
import { fmtBytes, fmtTime, useAsync, ErrorBox } from "../util";
import { toast } from "../toast";

export function SnapshotsPage() {
  const list = useAsync((sig) => getJSON<Snapshot[]>("/snapshots?limit=1000", sig), []);
  const [error, setError] = useState("");
  async function create(s: Snapshot) {
    setError("");
    try {
      const sb = await send<{ sandboxID: string }>("POST", "/v2/sandboxes", { templateID: s.snapshotID });
      toast(`Created ${sb.sandboxID} from ${s.snapshotID}`);
      navigate(`sandboxes/${q(sb.sandboxID)}`);
    } catch (e) {
      setError(errorText(e));
    }
  }
  async function remove(s: Snapshot) {
    if (!confirm(`Delete snapshot ${s.snapshotID}?`)) return;
    setError("");
    try {
      await send("DELETE", `/templates/${q(s.snapshotID)}`);
      toast(`Deleted ${s.snapshotID}`);
      list.reload();
    } catch (e) {
      setError(errorText(e));
    }
  }
  return (
    <main id="main" class="page">
      <div class="page-head">
        <h1>Snapshots</h1>
      </div>
      <ErrorBox error={error || list.error} />
      <table class="table">
        <thead>
          <tr>
            <th scope="col">Snapshot</th>
            <th scope="col" class="hide-narrow">From</th>
            <th scope="col">Kind</th>
            <th scope="col" class="hide-narrow">Size</th>
            <th scope="col" class="hide-narrow">Created</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {(list.data ?? []).map((s) => (
            <tr key={s.snapshotID}>
              <td class="mono">
                {s.snapshotID}
                {s.names?.[0] && s.names[0] !== s.snapshotID ? ` (${s.names[0]})` : ""}
              </td>
              <td class="hide-narrow mono">
                {s.sandboxID} · {s.templateID}
              </td>
              <td>{s.kind}</td>
              <td class="hide-narrow">{fmtBytes(s.sizeBytes)}</td>
              <td class="hide-narrow">{fmtTime(s.createdAt)}</td>
              <td class="row-actions">
                <button type="button" class="small" onClick={() => void create(s)}>
                  New sandbox
                </button>
                <button type="button" class="small danger" onClick={() => void remove(s)}>
                  Delete
                </button>
              </td>
            </tr>
          ))}
          {list.data && list.data.length === 0 && (
            <tr>
              <td colSpan={6} class="empty">
                No snapshots. Take one from a running sandbox.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </main>
  );
}

export function VolumesPage() {
  const list = useAsync((sig) => getJSON<Volume[]>("/volumes", sig), []);
  const [name, setName] = useState("");
  const [size, setSize] = useState("1024");
  const [error, setError] = useState("");
  async function create(e: Event) {
    e.preventDefault();
    setError("");
    try {
      const body: Record<string, unknown> = { name: name.trim() };
      if (size.trim()) body.sizeMB = Number(size);
      await send("POST", "/volumes", body);
      toast(`Created volume ${name}`);
      setName("");
      list.reload();
    } catch (err) {
      setError(errorText(err));
    }
  }
  async function remove(v: Volume) {
    if (!confirm(`Delete volume ${v.name} and its files?`)) return;
    setError("");
    try {
      await send("DELETE", `/volumes/${q(v.volumeID)}`);
      toast(`Deleted ${v.name}`);
      list.reload();
    } catch (err) {
      setError(errorText(err));
    }
  }
  return (
    <main id="main" class="page">
      <div class="page-head">
        <h1>Volumes</h1>
      </div>
      <form class="row card" onSubmit={create} aria-label="New volume">
        <label>
          Name
          <input value={name} required onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          Size (MiB)
          <input inputMode="numeric" value={size} onInput={(e) => setSize((e.target as HTMLInputElement).value)} />
        </label>
        <button type="submit">Create volume</button>
      </form>
      <ErrorBox error={error || list.error} />
      <table class="table">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col" class="hide-narrow">ID</th>
            <th scope="col">Size</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {(list.data ?? []).map((v) => (
            <tr key={v.volumeID}>
              <td>{v.name}</td>
              <td class="hide-narrow mono">{v.volumeID}</td>
              <td>{v.sizeMB ? `${v.sizeMB} MiB` : "–"}</td>
              <td class="row-actions">
                <button type="button" class="small danger" onClick={() => void remove(v)}>
                  Delete
                </button>
              </td>
            </tr>
          ))}
          {list.data && list.data.length === 0 && (
            <tr>
              <td colSpan={4} class="empty">
                No volumes.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </main>
  );
}
