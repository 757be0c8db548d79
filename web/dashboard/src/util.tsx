// util.tsx: formatting and the small pieces every page uses.
import { useEffect, useState, useCallback } from "preact/hooks";
import type { ComponentChildren, FunctionComponent } from "preact";
import { errorText } from "./api";

export function fmtBytes(n: number | undefined): string {
  if (n === undefined || n === null || !isFinite(n)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

export function fmtAge(since: string, now: number): string {
  const t = Date.parse(since);
  if (!isFinite(t)) return "–";
  let s = Math.max(0, Math.floor((now - t) / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  s = Math.floor(h / 24);
  return `${s}d`;
}

export function fmtTime(t: string | undefined): string {
  if (!t || t.startsWith("0001-")) return "–";
  const d = new Date(t);
  return isNaN(d.getTime()) ? t : d.toLocaleString();
}

/** now is a clock that ticks every period ms, for ages and countdowns. */
export function useNow(period = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const id = setInterval(() => setNow(Date.now()), period);
    return () => clearInterval(id);
  }, [period]);
  return now;
}

export interface Async<T> {
  data: T | undefined;
  error: string;
  loading: boolean;
  reload: () => void;
}

/** useAsync loads fn() when deps change and on reload(). */
export function useAsync<T>(fn: (sig: AbortSignal) => Promise<T>, deps: unknown[]): Async<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState("");
  const [loading, setLoading] = useState(true);
  const [n, setN] = useState(0);
  useEffect(() => {
    const ac = new AbortController();
    setLoading(true);
    fn(ac.signal).then(
      (d) => {
        if (ac.signal.aborted) return;
        setData(d);
        setError("");
        setLoading(false);
      },
      (e) => {
        if (ac.signal.aborted) return;
        setError(errorText(e));
        setLoading(false);
      },
    );
    return () => ac.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, n]);
  const reload = useCallback(() => setN((x) => x + 1), []);
  return { data, error, loading, reload };
}

/** useAction wraps a click handler: busy while it runs, its error shown. */
export function useAction(): [boolean, string, (fn: () => Promise<unknown>) => Promise<void>, (e: string) => void] {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const run = useCallback(async (fn: () => Promise<unknown>) => {
    setBusy(true);
    setError("");
    try {
      await fn();
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  }, []);
  return [busy, error, run, setError];
}

export function ErrorBox({ error }: { error: string }) {
  if (!error) return null;
  return (
    <p class="error" role="alert">
      {error}
    </p>
  );
}

export function Section({ title, children, actions }: { title: string; children: ComponentChildren; actions?: ComponentChildren }) {
  return (
    <section class="card">
      <header class="card-head">
        <h2>{title}</h2>
        {actions && <div class="actions">{actions}</div>}
      </header>
      {children}
    </section>
  );
}

export function KV({ rows }: { rows: [string, ComponentChildren][] }) {
  return (
    <dl class="kv">
      {rows.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}

export function stateClass(state: string): string {
  return `state state-${state.replace(/[^a-z]/g, "")}`;
}

/** lazyPage loads a page's module on first use. */
export function lazyPage<P extends object>(load: () => Promise<FunctionComponent<P>>): FunctionComponent<P> {
  let loaded: FunctionComponent<P> | null = null;
  let pending: Promise<void> | null = null;
  let failed = "";
  return function Lazy(props: P) {
    const [, set] = useState(0);
    if (!loaded && !pending)
      pending = load().then(
        (c) => {
          loaded = c;
        },
        (e) => {
          failed = errorText(e);
        },
      );
    useEffect(() => {
      let live = true;
      // Whether or not the module arrived between the render and this
      // effect (a cached chunk can), render again once it has: checking
      // `loaded` here instead left such a page on "Loading…" for good.
      void pending!.then(() => live && set((n) => n + 1));
      return () => {
        live = false;
      };
    }, []);
    if (loaded) {
      const C = loaded;
      return <C {...props} />;
    }
    return failed ? <ErrorBox error={`the page failed to load: ${failed}`} /> : <p class="loading">Loading…</p>;
  };
}
