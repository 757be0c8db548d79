// A web server for the preview (port proxy) tests, run inside a sandbox with
// the template's node:
//
//   node preview-server.js HOST PORT [h1|h2c|tls]
//
// h1 (the default) is an HTTP/1.1 server:
//   GET /hello         "proto=1.1 host=H path=P traffic=T xfp=X"
//   GET /sse           a server-sent event stream; each POST /emit?data=D
//                      sends "data: D" to every open stream, POST /end ends
//                      them. Nothing is sent but what /emit asks for, so a
//                      client that reads event N before asking for N+1 proves
//                      events are not buffered on the way.
//   GET /bytes?n=N     N bytes (Content-Length set), for throughput
//   Upgrade: websocket an echo WebSocket (text and binary messages; close)
// h2c is an HTTP/2 server without TLS (prior knowledge): every request gets
// "proto=2.0 host=H path=P" and a trailer "x-trailer: done".
//
// tls speaks TLS (certificate /tmp/tls-cert.pem, key /tmp/tls-key.pem) and,
// by ALPN, HTTP/2 ("proto=2.0 host=H path=P tls=true") or the h1 server
// above (its /hello then ends in "tls=true"; WebSocket upgrades too).
//
// It prints "ready" once listening.
'use strict'
const http = require('http')
const http2 = require('http2')
const crypto = require('crypto')

const [host, port, mode = 'h1'] = process.argv.slice(2)

if (mode === 'h2c') {
  const srv = http2.createServer((req, res) => {
    res.setHeader('content-type', 'text/plain')
    res.addTrailers({ 'x-trailer': 'done' })
    res.end(`proto=${req.httpVersion} host=${req.headers[':authority']} path=${req.url}`)
  })
  if (mode === 'tls') {
  const tls = require('tls')
  const fs = require('fs')
  const h2 = http2.createServer((req, res) => {
    res.setHeader('content-type', 'text/plain')
    res.end(`proto=${req.httpVersion} host=${req.headers[':authority']} path=${req.url} tls=${!!req.stream.session.socket.encrypted}`)
  })
  const opts = { key: fs.readFileSync('/tmp/tls-key.pem'), cert: fs.readFileSync('/tmp/tls-cert.pem'), ALPNProtocols: ['h2', 'http/1.1'] }
  tls.createServer(opts, (s) => (s.alpnProtocol === 'h2' ? h2 : srv).emit('connection', s))
    .listen(Number(port), host, () => console.log('ready'))
} else {
  srv.listen(Number(port), host, () => console.log('ready'))
}
  return
}

const streams = new Set()
const chunk = Buffer.alloc(1 << 20, 'x')

const srv = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x')
  if (url.pathname === '/hello') {
    const h = req.headers
    let body = `proto=${req.httpVersion} host=${h.host} path=${req.url} traffic=${h['e2b-traffic-access-token']} xfp=${h['x-forwarded-proto']}`
    if (mode === 'tls') body += ` tls=${!!req.socket.encrypted}`
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) })
    res.end(body)
    return
  }
  if (url.pathname === '/sse') {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    res.flushHeaders()
    streams.add(res)
    req.on('close', () => streams.delete(res))
    return
  }
  if (url.pathname === '/emit' && req.method === 'POST') {
    for (const s of streams) s.write(`data: ${url.searchParams.get('data')}\n\n`)
    res.end(`sent to ${streams.size}`)
    return
  }
  if (url.pathname === '/end' && req.method === 'POST') {
    for (const s of streams) s.end()
    res.end('ended')
    return
  }
  if (url.pathname === '/bytes') {
    let left = Number(url.searchParams.get('n'))
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': left })
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length)
        left -= n
        if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return res.once('drain', pump)
      }
      res.end()
    }
    pump()
    return
  }
  res.writeHead(404)
  res.end('not found')
})

// A WebSocket echo server (RFC 6455), enough for the tests: text, binary,
// ping and close frames, any length.
srv.on('upgrade', (req, sock, head) => {
  if ((req.headers.upgrade || '').toLowerCase() !== 'websocket') return sock.destroy()
  const accept = crypto.createHash('sha1').update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64')
  sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`)
  let buf = Buffer.from(head)
  const frame = (op, payload) => {
    const n = payload.length
    const hdr = n < 126 ? Buffer.from([0x80 | op, n]) : n < 65536 ? Buffer.from([0x80 | op, 126, n >> 8, n & 255]) : Buffer.concat([Buffer.from([0x80 | op, 127]), (() => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b })()])
    sock.write(Buffer.concat([hdr, payload]))
  }
  const parse = () => {
    for (;;) {
      if (buf.length < 2) return
      const op = buf[0] & 0x0f
      let len = buf[1] & 0x7f
      let off = 2
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4 }
      else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10 }
      const masked = buf[1] & 0x80
      if (buf.length < off + (masked ? 4 : 0) + len) return
      let payload = buf.subarray(off + (masked ? 4 : 0), off + (masked ? 4 : 0) + len)
      if (masked) {
        const mask = buf.subarray(off, off + 4)
        payload = Buffer.from(payload.map((b, i) => b ^ mask[i & 3]))
      }
      buf = buf.subarray(off + (masked ? 4 : 0) + len)
      if (op === 0x8) { frame(0x8, payload); sock.end(); return }
      if (op === 0x9) { frame(0xa, payload); continue }
      frame(op, payload)
    }
  }
  sock.on('data', (d) => { buf = Buffer.concat([buf, d]); parse() })
  sock.on('error', () => {})
  parse()
})

if (mode === 'tls') {
  const tls = require('tls')
  const fs = require('fs')
  const h2 = http2.createServer((req, res) => {
    res.setHeader('content-type', 'text/plain')
    res.end(`proto=${req.httpVersion} host=${req.headers[':authority']} path=${req.url} tls=${!!req.stream.session.socket.encrypted}`)
  })
  const opts = { key: fs.readFileSync('/tmp/tls-key.pem'), cert: fs.readFileSync('/tmp/tls-cert.pem'), ALPNProtocols: ['h2', 'http/1.1'] }
  tls.createServer(opts, (s) => (s.alpnProtocol === 'h2' ? h2 : srv).emit('connection', s))
    .listen(Number(port), host, () => console.log('ready'))
} else {
  srv.listen(Number(port), host, () => console.log('ready'))
}
