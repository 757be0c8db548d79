import { useEffect, useRef, useState } from "preact/hooks";
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import "@xterm/xterm/css/xterm.css";
import { q } from "../api";

type Status = "connecting" | "connected" | "reconnecting" | "exited" | "failed";

/**
 * SandboxTerminal is xterm.js over the terminal WebSocket: binary frames
 * carry bytes both ways, text frames carry JSON control messages. A dropped
 * connection re-attaches to the same shell (session=S), which replays its
 * recent output.
 */
export function SandboxTerminal({ id }: { id: string }) {
  const box = useRef<HTMLDivElement>(null);
  const [status, setStatus] = useState<Status>("connecting");
  const [detail, setDetail] = useState("");
  const ctl = useRef<{ reconnect: () => void; copy: () => void; paste: () => void } | null>(null);

  useEffect(() => {
    const term = new Terminal({
      cursorBlink: true,
      fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
      fontSize: 14,
      lineHeight: 1.15,
      scrollback: 5000,
      allowProposedApi: false,
    });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(box.current!);
    fit.fit();
    term.focus();

    const enc = new TextEncoder();
    let ws: WebSocket | null = null;
    let sessionID = "";
    let closed = false;
    let exited = false;
    let tries = 0;
    let timer = 0;

    const sendBytes = (s: string) => {
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(enc.encode(s));
    };
    const sendResize = () => {
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows }));
    };

    function connect() {
      if (closed) return;
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      let url = `${proto}//${location.host}/dashboard/api/sandboxes/${q(id)}/terminal?cols=${term.cols}&rows=${term.rows}`;
      if (sessionID) url += `&session=${q(sessionID)}`;
      const sock = new WebSocket(url);
      sock.binaryType = "arraybuffer";
      ws = sock;
      setStatus(sessionID ? "reconnecting" : "connecting");
      sock.onopen = () => {
        tries = 0;
        setStatus("connected");
        setDetail("");
        sendResize();
      };
      sock.onmessage = (ev) => {
        if (typeof ev.data === "string") {
          let msg: { type?: string; id?: string; code?: number };
          try {
            msg = JSON.parse(ev.data);
          } catch {
            return;
          }
          if (msg.type === "session" && msg.id) {
            // On a re-attach the server replays the shell's recent output:
            // start from a clean screen so that it is not shown twice.
            if (sessionID) term.reset();
            sessionID = msg.id;
          } else if (msg.type === "exit") {
            exited = true;
            setStatus("exited");
            setDetail(`the shell exited with code ${msg.code ?? "?"}`);
            term.write(`\r\n[the shell exited with code ${msg.code ?? "?"}]\r\n`);
          }
        } else {
          term.write(new Uint8Array(ev.data as ArrayBuffer));
        }
      };
      sock.onclose = (ev) => {
        if (ws !== sock) return;
        ws = null;
        if (closed || exited) return;
        tries++;
        if (tries > 8) {
          setStatus("failed");
          setDetail(ev.reason || "the connection closed");
          return;
        }
        setStatus("reconnecting");
        setDetail(ev.reason || "connection lost");
        timer = window.setTimeout(connect, Math.min(5000, 250 * 2 ** tries));
      };
    }

    term.onData(sendBytes);
    term.onBinary((s) => {
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff));
    });
    term.onResize(sendResize);

    const copy = () => {
      const sel = term.getSelection();
      if (sel) void navigator.clipboard?.writeText(sel);
    };
    const paste = () => {
      void navigator.clipboard?.readText().then((t) => t && term.paste(t), () => undefined);
    };
    // Ctrl+Shift+C / Ctrl+Shift+V copy and paste, as in desktop terminals
    // (plain Ctrl+C must stay an interrupt for the shell).
    let escArmed = false;
    term.attachCustomKeyEventHandler((e) => {
      // Escape then Tab moves the focus out of the terminal, so that the
      // page stays usable from the keyboard alone.
      if (e.type === "keydown" && e.key === "Tab" && escArmed) {
        escArmed = false;
        return false;
      }
      if (e.type === "keydown") escArmed = e.key === "Escape";
      if (e.type === "keydown" && e.ctrlKey && e.shiftKey && (e.key === "C" || e.key === "c")) {
        copy();
        return false;
      }
      if (e.type === "keydown" && e.ctrlKey && e.shiftKey && (e.key === "V" || e.key === "v")) {
        paste();
        return false;
      }
      return true;
    });
    ctl.current = {
      reconnect: () => {
        exited = false;
        tries = 0;
        clearTimeout(timer);
        if (ws) {
          const old = ws;
          ws = null;
          old.close();
        }
        connect();
      },
      copy,
      paste,
    };

    const ro = new ResizeObserver(() => {
      try {
        fit.fit();
      } catch {
        /* not laid out yet */
      }
    });
    ro.observe(box.current!);
    connect();
    return () => {
      closed = true;
      clearTimeout(timer);
      ro.disconnect();
      ws?.close();
      term.dispose();
    };
  }, [id]);

  return (
    <div class="terminal-wrap">
      <div class="row terminal-bar">
        <span class={`live live-${status === "connected" ? "live" : status}`} data-terminal-status={status}>
          {status}
        </span>
        {detail && <span class="hint">{detail}</span>}
        <div class="actions">
          <button type="button" class="small secondary" onClick={() => ctl.current?.copy()} title="Ctrl+Shift+C">
            Copy
          </button>
          <button type="button" class="small secondary" onClick={() => ctl.current?.paste()} title="Ctrl+Shift+V">
            Paste
          </button>
          <button type="button" class="small secondary" onClick={() => ctl.current?.reconnect()}>
            Reconnect
          </button>
        </div>
      </div>
      <div class="terminal" ref={box} aria-label="Terminal" />
      <p class="hint">Ctrl+Shift+C copies the selection, Ctrl+Shift+V pastes. Tab stays in the terminal; Escape then Tab leaves it.</p>
    </div>
  );
}
