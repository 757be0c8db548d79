// api.ts is the dashboard's one way to the server: same-origin fetches that
// carry the session cookie, the CSRF token on every state-changing call, and
// errors turned into readable messages from the E2B error shape.
import { signal } from "@preact/signals";

export interface Session {
  keyId: string;
  keyName: string;
  team: string;
  role: "admin" | "member";
  serverAdmin: boolean;
  csrfToken: string;
  expiresAt: string;
}

/** The signed-in session; null when signed out, undefined while unknown. */
export const session = signal<Session | null | undefined>(undefined);

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** errorText turns anything thrown into a sentence for the page. */
export function errorText(e: unknown): string {
  if (e instanceof ApiError) return `${e.message} (HTTP ${e.status})`;
  if (e instanceof Error) return e.message;
  return String(e);
}

async function readError(res: Response): Promise<ApiError> {
  let msg = res.statusText || "request failed";
  try {
    const text = await res.text();
    try {
      const body = JSON.parse(text);
      if (body && typeof body.message === "string" && body.message) msg = body.message;
    } catch {
      if (text.trim()) msg = text.trim().slice(0, 300);
    }
  } catch {
    /* keep statusText */
  }
  return new ApiError(res.status, msg);
}

export interface RequestOptions {
  body?: unknown;
  raw?: BodyInit;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** request sends one API call and answers the response, or throws ApiError. */
export async function request(method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { ...opts.headers };
  let body: BodyInit | undefined = opts.raw;
  if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(opts.body);
  }
  if (method !== "GET" && method !== "HEAD") {
    const s = session.value;
    if (s) headers["X-CSRF-Token"] = s.csrfToken;
  }
  let res: Response;
  try {
    res = await fetch(path, { method, headers, body, credentials: "same-origin", signal: opts.signal });
  } catch (e) {
    if (e instanceof DOMException && e.name === "AbortError") throw e;
    throw new Error("the server cannot be reached");
  }
  if (!res.ok) {
    const err = await readError(res);
    // A session that ended (signed out elsewhere, expired, key revoked)
    // sends the user back to the sign-in form.
    if (res.status === 401 && path !== "/dashboard/api/session") session.value = null;
    throw err;
  }
  return res;
}

export async function getJSON<T>(path: string, sig?: AbortSignal): Promise<T> {
  const res = await request("GET", path, { signal: sig });
  return (await res.json()) as T;
}

export async function send<T = void>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await request(method, path, { body });
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export const q = encodeURIComponent;

export async function loadSession(): Promise<void> {
  try {
    session.value = await getJSON<Session>("/dashboard/api/session");
  } catch {
    session.value = null;
  }
}

export async function signIn(apiKey: string): Promise<void> {
  const res = await request("POST", "/dashboard/api/session", { body: { apiKey } });
  session.value = (await res.json()) as Session;
}

export async function signOut(): Promise<void> {
  try {
    await request("DELETE", "/dashboard/api/session");
  } finally {
    session.value = null;
  }
}

// Wire types, as docs/api.md describes them.
export interface ListedSandbox {
  sandboxID: string;
  templateID: string;
  alias?: string;
  startedAt: string;
  endAt: string;
  cpuCount: number;
  memoryMB: number;
  diskSizeMB?: number;
  metadata: Record<string, string>;
  state: string;
  runtime: string;
  pauseKind?: string;
  volumeMounts?: { name: string; path: string }[];
}

export interface SandboxDetail extends ListedSandbox {
  envdAccessToken?: string;
  domain?: string | null;
  lifecycle?: { autoResume: boolean; onTimeout: string; persistent: boolean; idlePause?: number };
  allowInternetAccess?: boolean | null;
  network?: { allowPublicTraffic?: boolean; allowOut?: string[]; denyOut?: string[] };
  error?: string;
}

export interface SandboxMetric {
  timestampUnix: number;
  cpuCount: number;
  cpuUsedPct: number;
  memUsed: number;
  memTotal: number;
  diskUsed: number;
  diskTotal: number;
}

export interface Template {
  templateID: string;
  cpuCount: number;
  memoryMB: number;
  diskSizeMB?: number;
  sizeBytes?: number;
  createdAt: string;
  updatedAt?: string;
  buildStatus?: string;
}

export interface Snapshot {
  snapshotID: string;
  names: string[];
  sandboxID: string;
  templateID: string;
  kind: string;
  createdAt: string;
  sizeBytes: number;
}

export interface Volume {
  volumeID: string;
  name: string;
  sizeMB?: number;
}

export interface Key {
  id: string;
  name: string;
  prefix: string;
  admin: boolean;
  createdAt: string;
  team: string;
  key?: string;
}

export interface TeamInfo {
  id: string;
  name: string;
  maxSandboxes: number;
  maxCpus: number;
  maxMemoryMB: number;
  createdAt: string;
}

export interface SandboxEvent {
  id: string;
  type: string;
  eventData?: Record<string, unknown>;
  timestamp: string;
}

export interface FileEntry {
  name: string;
  path: string;
  type: "file" | "dir" | "symlink";
  size: number;
  mode: string;
  modifiedTime: string;
}

export interface Process {
  pid: number;
  cmd: string;
  args?: string[];
  cwd?: string;
  tag?: string;
}

export interface UsageFigures {
  runSeconds: number;
  vcpuSeconds: number;
  cpuSeconds: number;
  memoryGiBSeconds: number;
  memoryUsedGiBSeconds: number;
  diskGiBHours: number;
  egressBytes: number;
  pausedGiBHours: number;
}

export interface UsageReport {
  teamID: string;
  total: UsageFigures;
  records: (UsageFigures & { day?: string; sandboxID?: string })[];
}

export interface Build {
  buildID: string;
  templateID: string;
  status: string;
  error?: string;
  step?: number;
  exitCode?: number;
}
