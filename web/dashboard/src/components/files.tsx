import { useState } from "preact/hooks";
import { getJSON, request, send, q, errorText, type FileEntry } from "../api";
import { fmtBytes, fmtTime, useAsync, ErrorBox } from "../util";
import { toast } from "../toast";

const EDIT_MAX = 1 << 20; // files up to this size open in the editor

function dirname(p: string): string {
  const i = p.replace(/\/+$/, "").lastIndexOf("/");
  if (i < 0) return "";
  return i === 0 ? "/" : p.slice(0, i);
}

function join(dir: string, name: string): string {
  if (dir === "") return name;
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

/** FileBrowser lists a directory of the sandbox, as its default user sees it. */
export function FileBrowser({ id }: { id: string }) {
  const base = `/dashboard/api/sandboxes/${q(id)}/files`;
  // "" is the default user's home.
  const [path, setPath] = useState("");
  const [pathInput, setPathInput] = useState("");
  const list = useAsync((sig) => getJSON<FileEntry[]>(`${base}?path=${q(path)}`, sig), [id, path]);
  const [editing, setEditing] = useState<{ path: string; text: string } | null>(null);
  const [dragging, setDragging] = useState(false);
  const [error, setError] = useState("");
  const [uploading, setUploading] = useState("");

  // The listing's entries carry absolute paths: the directory shown is
  // their parent, which makes ".." work from a relative start.
  const entries = list.data ?? [];
  const here = entries.length ? dirname(entries[0].path) : path;

  function go(p: string) {
    setPath(p);
    setPathInput(p);
    setEditing(null);
  }

  async function upload(files: FileList | File[]) {
    setError("");
    for (const f of Array.from(files)) {
      setUploading(f.name);
      try {
        await request("PUT", `${base}/content?path=${q(join(here, f.name))}`, {
          raw: f,
          headers: { "Content-Type": "application/octet-stream" },
        });
        toast(`Uploaded ${f.name}`);
      } catch (e) {
        setError(`upload of ${f.name}: ${errorText(e)}`);
      }
    }
    setUploading("");
    list.reload();
  }

  async function open(e: FileEntry) {
    setError("");
    if (e.size > EDIT_MAX) {
      setError(`${e.name} is ${fmtBytes(e.size)}: too large to edit here; download it instead`);
      return;
    }
    try {
      const res = await request("GET", `${base}/content?path=${q(e.path)}`);
      const buf = new Uint8Array(await res.arrayBuffer());
      let text: string;
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(buf);
      } catch {
        setError(`${e.name} is not UTF-8 text; download it instead`);
        return;
      }
      setEditing({ path: e.path, text });
    } catch (err) {
      setError(errorText(err));
    }
  }

  async function save() {
    if (!editing) return;
    try {
      await request("PUT", `${base}/content?path=${q(editing.path)}`, {
        raw: new TextEncoder().encode(editing.text),
        headers: { "Content-Type": "application/octet-stream" },
      });
      toast(`Saved ${editing.path}`);
      setEditing(null);
      list.reload();
    } catch (err) {
      setError(errorText(err));
    }
  }

  async function remove(e: FileEntry) {
    if (!confirm(`Delete ${e.path}${e.type === "dir" ? " and everything in it" : ""}?`)) return;
    try {
      await send("DELETE", `${base}?path=${q(e.path)}`);
      toast(`Deleted ${e.path}`);
      list.reload();
    } catch (err) {
      setError(errorText(err));
    }
  }

  async function mkdir() {
    const name = prompt("New folder name");
    if (!name) return;
    try {
      await send("POST", `${base}/dir?path=${q(join(here, name))}`);
      list.reload();
    } catch (err) {
      setError(errorText(err));
    }
  }

  return (
    <div
      class={dragging ? "files dragging" : "files"}
      onDragOver={(e) => {
        e.preventDefault();
        setDragging(true);
      }}
      onDragLeave={() => setDragging(false)}
      onDrop={(e) => {
        e.preventDefault();
        setDragging(false);
        if (e.dataTransfer?.files.length) void upload(e.dataTransfer.files);
      }}
    >
      <form
        class="row"
        onSubmit={(e) => {
          e.preventDefault();
          go(pathInput.trim());
        }}
      >
        <label class="grow">
          Path
          <input value={pathInput} placeholder="home" onInput={(e) => setPathInput((e.target as HTMLInputElement).value)} />
        </label>
        <button type="submit" class="secondary">
          Open
        </button>
        <button type="button" class="secondary" onClick={() => go(dirname(here))} disabled={here === "/" || here === ""}>
          Up
        </button>
        <button type="button" class="secondary" onClick={() => list.reload()}>
          Refresh
        </button>
        <button type="button" class="secondary" onClick={() => void mkdir()}>
          New folder
        </button>
        <label class="button">
          Upload…
          <input
            type="file"
            multiple
            class="visually-hidden"
            data-testid="upload"
            onChange={(e) => {
              const f = (e.target as HTMLInputElement).files;
              if (f?.length) void upload(f);
              (e.target as HTMLInputElement).value = "";
            }}
          />
        </label>
      </form>
      <p class="hint">
        {uploading ? `Uploading ${uploading}…` : `In ${here || "the home directory"}. Drop files here to upload them into this folder.`}
      </p>
      <ErrorBox error={error || list.error} />
      {editing && (
        <div class="editor card">
          <label>
            Editing {editing.path}
            <textarea
              rows={16}
              spellcheck={false}
              value={editing.text}
              onInput={(e) => setEditing({ ...editing, text: (e.target as HTMLTextAreaElement).value })}
            />
          </label>
          <div class="row">
            <button type="button" onClick={() => void save()}>
              Save
            </button>
            <button type="button" class="secondary" onClick={() => setEditing(null)}>
              Close
            </button>
          </div>
        </div>
      )}
      <table class="table files-table">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Size</th>
            <th scope="col" class="hide-narrow">Mode</th>
            <th scope="col" class="hide-narrow">Modified</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {entries
            .slice()
            .sort((a, b) => (a.type === "dir" ? 0 : 1) - (b.type === "dir" ? 0 : 1) || a.name.localeCompare(b.name))
            .map((e) => (
              <tr key={e.path} data-file-name={e.name}>
                <td class="file-name">
                  {e.type === "dir" ? (
                    <button type="button" class="link" onClick={() => go(e.path)}>
                      {e.name}/
                    </button>
                  ) : e.type === "file" ? (
                    <button type="button" class="link" onClick={() => void open(e)}>
                      {e.name}
                    </button>
                  ) : (
                    <span>{e.name} →</span>
                  )}
                </td>
                <td>{e.type === "dir" ? "–" : fmtBytes(e.size)}</td>
                <td class="hide-narrow mono">{e.mode}</td>
                <td class="hide-narrow">{fmtTime(e.modifiedTime)}</td>
                <td class="row-actions">
                  {e.type === "file" && (
                    <a class="button small secondary" href={`${base}/content?path=${q(e.path)}&download=1`} download={e.name}>
                      Download
                    </a>
                  )}
                  <button type="button" class="small danger" onClick={() => void remove(e)} aria-label={`Delete ${e.name}`}>
                    Delete
                  </button>
                </td>
              </tr>
            ))}
          {!list.loading && entries.length === 0 && !list.error && (
            <tr>
              <td colSpan={5} class="empty">
                Empty folder.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}
