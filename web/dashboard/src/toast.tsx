import { signal } from "@preact/signals";

interface Toast {
  id: number;
  text: string;
  error: boolean;
}

const toasts = signal<Toast[]>([]);
let next = 1;

export function toast(text: string, error = false): void {
  const t = { id: next++, text, error };
  toasts.value = [...toasts.value, t];
  setTimeout(() => {
    toasts.value = toasts.value.filter((x) => x.id !== t.id);
  }, error ? 10000 : 5000);
}

export function Toasts() {
  return (
    <div class="toasts" role="status" aria-live="polite">
      {toasts.value.map((t) => (
        <p key={t.id} class={t.error ? "toast error" : "toast"}>
          {t.text}
        </p>
      ))}
    </div>
  );
}
