// stream.ts keeps the live sandbox list: one EventSource on
// /dashboard/api/sandboxes/stream (a snapshot, then upserts and removes as
// the server pushes them), shared by every page that shows sandboxes.
import { signal, effect } from "@preact/signals";
import type { ListedSandbox } from "./api";
import { loadSession, session } from "./api";

export const sandboxes = signal<Map<string, ListedSandbox>>(new Map());
export const streamState = signal<"connecting" | "live" | "reconnecting" | "closed">("connecting");

let es: EventSource | null = null;
let users = 0;

function open(): void {
  streamState.value = "connecting";
  es = new EventSource("/dashboard/api/sandboxes/stream");
  es.addEventListener("open", () => {
    streamState.value = "live";
  });
  es.addEventListener("snapshot", (e) => {
    const list = JSON.parse((e as MessageEvent).data) as ListedSandbox[];
    sandboxes.value = new Map(list.map((s) => [s.sandboxID, s]));
    streamState.value = "live";
  });
  es.addEventListener("upsert", (e) => {
    const s = JSON.parse((e as MessageEvent).data) as ListedSandbox;
    const m = new Map(sandboxes.value);
    m.set(s.sandboxID, s);
    sandboxes.value = m;
  });
  es.addEventListener("remove", (e) => {
    const { sandboxID } = JSON.parse((e as MessageEvent).data) as { sandboxID: string };
    if (!sandboxes.value.has(sandboxID)) return;
    const m = new Map(sandboxes.value);
    m.delete(sandboxID);
    sandboxes.value = m;
  });
  es.addEventListener("error", () => {
    if (!es) return;
    if (es.readyState === EventSource.CLOSED) {
      // The server refused the stream (the session ended?): ask, and
      // try again later if it still holds.
      streamState.value = "closed";
      es = null;
      void loadSession().then(() => {
        if (users > 0 && session.value) setTimeout(() => users > 0 && !es && session.value && open(), 3000);
      });
    } else {
      streamState.value = "reconnecting";
    }
  });
}

/** useStream: call subscribe() on mount and the function it answers on unmount. */
export function subscribe(): () => void {
  users++;
  if (!es) open();
  return () => {
    users--;
    if (users === 0 && es) {
      es.close();
      es = null;
    }
  };
}

// Signing out ends the stream; signing in again (a page subscribes) opens it.
effect(() => {
  if (session.value === null && es) {
    es.close();
    es = null;
    sandboxes.value = new Map();
    streamState.value = "closed";
  }
});

